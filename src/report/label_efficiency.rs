//! The report's label-efficiency section: the few-label curves `selfsup eval
//! --labels-per-class` saved in the run folder ([`SavedCurve`]), top-1 against labelled images
//! per class on a log axis, the encoder against a random-init encoder, kNN and the linear
//! probe, each point the mean over the draws with a bar of ± one standard deviation.

use super::charts::{class_colour, drawing, register_font, FONT};
use super::page::{Fact, Figure, Section};
use crate::eval::few_labels::SavedCurve;
use image::RgbImage;
use plotters::prelude::*;
use std::path::Path;

/// One series of the chart: (labels per class, mean %, sd %) points.
struct Series {
    label: String,
    points: Vec<(f64, f64, f64)>,
}

fn who(c: &SavedCurve) -> &'static str {
    match c.random_init {
        true => "random init",
        false => "encoder",
    }
}

/// The chart's series: kNN and the linear probe of each saved curve, in percent.
fn series(curves: &[SavedCurve]) -> Vec<Series> {
    let mut out = Vec::new();
    for c in curves {
        for (linear, name) in [(false, "kNN"), (true, "linear probe")] {
            let points = c
                .points
                .iter()
                .map(|p| {
                    let (m, sd) = p.mean_sd(linear);
                    (p.labels_per_class as f64, 100.0 * m, 100.0 * sd)
                })
                .collect();
            out.push(Series {
                label: format!("{}, {name}", who(c)),
                points,
            });
        }
    }
    out
}

/// The section and its facts, or None when the run folder holds no saved curve.
pub fn section(run_dir: &Path) -> anyhow::Result<Option<(Section, Vec<Fact>)>> {
    let curves = SavedCurve::load_all(run_dir)?;
    let Some(first) = curves.first() else {
        return Ok(None);
    };
    let mut s = Section::new("Label efficiency");
    let draws = first.points.first().map_or(0, |p| p.draws.len());
    s.text = format!(
        "Test top-1 of kNN and of the linear probe given N labelled training images per class \
         (a log axis), on {} test images of {}: each point is the mean over {draws} \
         class-balanced draws, its bar ± one standard deviation. Measured by `selfsup eval --run \
         RUN --labels-per-class 1,5,10,100` (and with `--random-init`, the baseline).",
        first.test_images, first.data
    );
    let series = series(&curves);
    let img = log_x_chart(&series, (560, 340))?;
    s.figures.push(Figure::new(
        "label_efficiency",
        "top-1 against labels per class",
        img,
    ));
    let facts = series
        .iter()
        .map(|l| {
            let points: Vec<String> = l
                .points
                .iter()
                .map(|&(n, m, sd)| format!("{m:.1} ± {sd:.1} % at {n}"))
                .collect();
            Fact::new(
                &format!("few labels: {}", l.label),
                &format!("{} per class", points.join(", ")),
            )
        })
        .collect();
    Ok(Some((s, facts)))
}

/// Lines through the means on a log-x chart, a dot at each mean and a bar of ± sd.
fn log_x_chart(series: &[Series], (w, h): (u32, u32)) -> anyhow::Result<RgbImage> {
    register_font();
    let all = || series.iter().flat_map(|l| l.points.iter());
    let x_max = all().map(|p| p.0).fold(1.0, f64::max);
    let x_min = all().map(|p| p.0).fold(x_max, f64::min);
    let y_max = all().map(|p| p.1 + p.2).fold(1.0, f64::max);
    let mut buf = vec![255u8; (w * h * 3) as usize];
    {
        let root = BitMapBackend::with_buffer(&mut buf, (w, h)).into_drawing_area();
        root.fill(&WHITE).map_err(drawing)?;
        let mut chart = ChartBuilder::on(&root)
            .caption("top-1 against labels per class", (FONT, 17))
            .margin(10)
            .x_label_area_size(38)
            .y_label_area_size(52)
            .build_cartesian_2d((x_min / 1.5..x_max * 1.5).log_scale(), 0.0..y_max * 1.08)
            .map_err(drawing)?;
        chart
            .configure_mesh()
            .x_desc("labelled images per class (log)")
            .y_desc("test top-1 (%)")
            .x_label_formatter(&|v| format!("{v}"))
            .label_style((FONT, 12))
            .axis_desc_style((FONT, 13))
            .light_line_style(RGBColor(235, 235, 235))
            .draw()
            .map_err(drawing)?;
        for (i, l) in series.iter().enumerate() {
            let colour = class_colour(i);
            let means: Vec<(f64, f64)> = l.points.iter().map(|p| (p.0, p.1)).collect();
            let bars = l.points.iter().map(move |&(n, m, sd)| {
                PathElement::new(vec![(n, m - sd), (n, m + sd)], colour.stroke_width(1))
            });
            chart.draw_series(bars).map_err(drawing)?;
            chart
                .draw_series(means.iter().map(|&p| Circle::new(p, 3, colour.filled())))
                .map_err(drawing)?;
            chart
                .draw_series(LineSeries::new(means, colour.stroke_width(2)))
                .map_err(drawing)?
                .label(l.label.as_str())
                .legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 18, y)], colour.stroke_width(2))
                });
        }
        super::charts::legend(&mut chart, SeriesLabelPosition::UpperLeft)?;
        root.present().map_err(drawing)?;
    }
    Ok(RgbImage::from_raw(w, h, buf).expect("w·h·3 bytes"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::eval::few_labels::FewLabels;

    #[test]
    fn saved_curves_become_a_log_axis_chart_and_facts_with_their_spread() {
        let dir = tempfile::tempdir().unwrap();
        assert!(
            section(dir.path()).unwrap().is_none(),
            "no curve, no section"
        );
        let curve = |random_init: bool, base: f64| SavedCurve {
            random_init,
            data: "data/cifar10".into(),
            test_images: 10000,
            points: [1, 5, 10, 100]
                .iter()
                .map(|&n| FewLabels {
                    labels_per_class: n,
                    draws: vec![(base + 0.01 * n as f64, 0.5), (base, 0.5)],
                })
                .collect(),
        };
        curve(false, 0.2).save(dir.path()).unwrap();
        curve(true, 0.1).save(dir.path()).unwrap();
        let (s, facts) = section(dir.path()).unwrap().unwrap();
        assert_eq!(s.figures.len(), 1);
        assert!(
            s.text.contains("10000 test images of data/cifar10")
                && s.text.contains("2 class-balanced draws")
        );
        let names: Vec<&str> = facts.iter().map(|f| f.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "few labels: encoder, kNN",
                "few labels: encoder, linear probe",
                "few labels: random init, kNN",
                "few labels: random init, linear probe"
            ]
        );
        // encoder kNN at 1 label: draws 21 % and 20 % → 20.5 ± 0.7 %
        assert!(
            facts[0].value.starts_with("20.5 ± 0.7 % at 1,"),
            "{}",
            facts[0].value
        );
        assert!(
            facts[1].value.contains("50.0 ± 0.0 % at 100 per class"),
            "{}",
            facts[1].value
        );
        // the chart is drawn: not one colour
        let png = &s.figures[0].png;
        let img = image::load_from_memory(png).unwrap().to_rgb8();
        let colours: std::collections::HashSet<_> = img.pixels().map(|p| p.0).collect();
        assert!(colours.len() > 20, "{}", colours.len());
    }
}
