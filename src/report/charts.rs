//! The report's figures drawn with plotters into an RGB buffer: line charts, a scatter plot
//! coloured by class, a histogram. Text is DejaVu Sans compiled into the binary (the `dejavu`
//! crate), so a machine without fonts draws the same pictures.

use image::RgbImage;
use plotters::prelude::*;
use std::sync::Once;

/// The font family every figure names.
pub(super) const FONT: &str = "sans-serif";

/// Registers DejaVu Sans as [`FONT`], once per process.
pub(super) fn register_font() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        plotters::style::register_font(FONT, FontStyle::Normal, dejavu::sans::regular())
            .unwrap_or_else(|_| panic!("the compiled-in DejaVu Sans is a valid font"));
    });
}

pub(super) fn drawing<E: std::fmt::Display>(e: E) -> anyhow::Error {
    anyhow::anyhow!("drawing a figure: {e}")
}

/// Colours of classes 0..9 (matplotlib's tab10, the colours readers know); later classes cycle
/// through plotters' 99-colour palette.
pub fn class_colour(c: usize) -> RGBColor {
    const TAB10: [(u8, u8, u8); 10] = [
        (31, 119, 180),
        (255, 127, 14),
        (44, 160, 44),
        (214, 39, 40),
        (148, 103, 189),
        (140, 86, 75),
        (227, 119, 194),
        (127, 127, 127),
        (188, 189, 34),
        (23, 190, 207),
    ];
    match TAB10.get(c) {
        Some(&(r, g, b)) => RGBColor(r, g, b),
        None => {
            let (r, g, b) = Palette99::pick(c).rgb();
            RGBColor(r, g, b)
        }
    }
}

/// `[lo, hi]` of the finite values with 5 % room on each side (a constant gets ±1).
fn span(values: impl Iterator<Item = f64>) -> (f64, f64) {
    let (lo, hi) = values
        .filter(|v| v.is_finite())
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), v| {
            (a.min(v), b.max(v))
        });
    if !lo.is_finite() {
        return (0.0, 1.0);
    }
    if hi - lo < 1e-12 * lo.abs().max(1.0) {
        return (lo - 1.0, hi + 1.0);
    }
    let pad = 0.05 * (hi - lo);
    (lo - pad, hi + pad)
}

/// A tick label with about three significant digits: `4500`, `0.21`, `2.4e-8`.
pub fn tick(v: &f64) -> String {
    let a = v.abs();
    if a == 0.0 || !a.is_finite() {
        return format!("{v}");
    }
    if !(1e-3..1e6).contains(&a) {
        return format!("{v:.1e}");
    }
    let decimals = (2 - a.log10().floor() as i32).max(0) as usize;
    let s = format!("{v:.decimals$}");
    match s.contains('.') {
        true => s.trim_end_matches('0').trim_end_matches('.').to_string(),
        false => s,
    }
}

/// The legend of `chart`'s labelled series, in every figure's style, at `at`.
pub(super) fn legend<'a, X: Ranged, Y: Ranged>(
    chart: &mut ChartContext<'a, BitMapBackend<'a>, Cartesian2d<X, Y>>,
    at: SeriesLabelPosition,
) -> anyhow::Result<()> {
    chart
        .configure_series_labels()
        .label_font((FONT, 12))
        .background_style(WHITE.mix(0.85))
        .border_style(RGBColor(180, 180, 180))
        .position(at)
        .draw()
        .map_err(drawing)
}

/// One line of a chart.
pub struct Line {
    pub label: String,
    pub points: Vec<(f64, f64)>,
}

/// A line chart of `lines` (a legend when there are several).
pub fn line_chart(
    title: &str,
    x_label: &str,
    y_label: &str,
    lines: &[Line],
    (w, h): (u32, u32),
) -> anyhow::Result<RgbImage> {
    register_font();
    let mut buf = vec![255u8; (w * h * 3) as usize];
    {
        let root = BitMapBackend::with_buffer(&mut buf, (w, h)).into_drawing_area();
        root.fill(&WHITE).map_err(drawing)?;
        let all = || lines.iter().flat_map(|l| l.points.iter());
        let (x0, x1) = span(all().map(|p| p.0));
        let (y0, y1) = span(all().map(|p| p.1));
        let mut chart = ChartBuilder::on(&root)
            .caption(title, (FONT, 17))
            .margin(10)
            .x_label_area_size(38)
            .y_label_area_size(62)
            .build_cartesian_2d(x0..x1, y0..y1)
            .map_err(drawing)?;
        chart
            .configure_mesh()
            .x_desc(x_label)
            .y_desc(y_label)
            .x_labels(6)
            .y_labels(6)
            .x_label_formatter(&tick)
            .y_label_formatter(&tick)
            .label_style((FONT, 12))
            .axis_desc_style((FONT, 13))
            .light_line_style(RGBColor(235, 235, 235))
            .draw()
            .map_err(drawing)?;
        for (i, line) in lines.iter().enumerate() {
            let colour = class_colour(i);
            let pts: Vec<(f64, f64)> = line
                .points
                .iter()
                .copied()
                .filter(|p| p.0.is_finite() && p.1.is_finite())
                .collect();
            let drawn = match pts.len() {
                // a single point is a dot, not an invisible line
                1 => chart
                    .draw_series(pts.iter().map(|&p| Circle::new(p, 4, colour.filled())))
                    .map_err(drawing)?,
                _ => chart
                    .draw_series(LineSeries::new(pts, colour.stroke_width(2)))
                    .map_err(drawing)?,
            };
            drawn.label(line.label.as_str()).legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 18, y)], colour.stroke_width(2))
            });
        }
        if lines.len() > 1 {
            legend(&mut chart, SeriesLabelPosition::UpperRight)?;
        }
        root.present().map_err(drawing)?;
    }
    Ok(RgbImage::from_raw(w, h, buf).expect("w·h·3 bytes"))
}

/// A scatter plot of 2-D points coloured by `classes` (with a legend of `class_names`), or
/// all in one colour when there are no classes.
pub fn scatter(
    title: &str,
    points: &[[f32; 2]],
    classes: Option<&[usize]>,
    class_names: &[String],
    (w, h): (u32, u32),
) -> anyhow::Result<RgbImage> {
    register_font();
    let mut buf = vec![255u8; (w * h * 3) as usize];
    {
        let root = BitMapBackend::with_buffer(&mut buf, (w, h)).into_drawing_area();
        root.fill(&WHITE).map_err(drawing)?;
        let (x0, x1) = span(points.iter().map(|p| p[0] as f64));
        let (y0, y1) = span(points.iter().map(|p| p[1] as f64));
        let mut chart = ChartBuilder::on(&root)
            .caption(title, (FONT, 17))
            .margin(10)
            .build_cartesian_2d(x0..x1, y0..y1)
            .map_err(drawing)?;
        let radius = if points.len() > 3000 { 2 } else { 3 };
        let class_of = |i: usize| classes.map_or(0, |c| c[i]);
        let shown = classes.map_or(1, |c| c.iter().max().map_or(1, |m| m + 1));
        for c in 0..shown {
            let colour = class_colour(c);
            let series = chart
                .draw_series(
                    points
                        .iter()
                        .enumerate()
                        .filter(|&(i, _)| class_of(i) == c)
                        .map(|(_, p)| {
                            Circle::new(
                                (p[0] as f64, p[1] as f64),
                                radius,
                                colour.mix(0.75).filled(),
                            )
                        }),
                )
                .map_err(drawing)?;
            if let Some(name) = class_names.get(c) {
                series
                    .label(name.as_str())
                    .legend(move |(x, y)| Circle::new((x + 6, y), 4, colour.filled()));
            }
        }
        if classes.is_some() && !class_names.is_empty() && class_names.len() <= 20 {
            legend(&mut chart, SeriesLabelPosition::UpperRight)?;
        }
        root.present().map_err(drawing)?;
    }
    Ok(RgbImage::from_raw(w, h, buf).expect("w·h·3 bytes"))
}

/// A histogram of `values` in `bins` equal bins.
pub fn histogram(
    title: &str,
    x_label: &str,
    values: &[f64],
    bins: usize,
    (w, h): (u32, u32),
) -> anyhow::Result<RgbImage> {
    register_font();
    let bins = bins.max(1);
    let (lo, hi) = span(values.iter().copied());
    let width = (hi - lo) / bins as f64;
    let mut counts = vec![0u32; bins];
    for &v in values.iter().filter(|v| v.is_finite()) {
        counts[(((v - lo) / width) as usize).min(bins - 1)] += 1;
    }
    let top = *counts.iter().max().unwrap_or(&1) as f64 * 1.05 + 1.0;
    let mut buf = vec![255u8; (w * h * 3) as usize];
    {
        let root = BitMapBackend::with_buffer(&mut buf, (w, h)).into_drawing_area();
        root.fill(&WHITE).map_err(drawing)?;
        let mut chart = ChartBuilder::on(&root)
            .caption(title, (FONT, 17))
            .margin(10)
            .x_label_area_size(38)
            .y_label_area_size(52)
            .build_cartesian_2d(lo..hi, 0.0..top)
            .map_err(drawing)?;
        chart
            .configure_mesh()
            .x_desc(x_label)
            .y_desc("dimensions")
            .x_labels(6)
            .y_labels(6)
            .x_label_formatter(&tick)
            .y_label_formatter(&tick)
            .label_style((FONT, 12))
            .axis_desc_style((FONT, 13))
            .light_line_style(RGBColor(235, 235, 235))
            .draw()
            .map_err(drawing)?;
        chart
            .draw_series(counts.iter().enumerate().map(|(b, &n)| {
                let x = lo + b as f64 * width;
                Rectangle::new([(x, 0.0), (x + width, n as f64)], class_colour(0).filled())
            }))
            .map_err(drawing)?;
        root.present().map_err(drawing)?;
    }
    Ok(RgbImage::from_raw(w, h, buf).expect("w·h·3 bytes"))
}

/// `text` written onto `img` at `(x, y)` (top left), in black, `size` px.
pub fn label(img: &mut RgbImage, text: &str, (x, y): (i32, i32), size: u32) -> anyhow::Result<()> {
    register_font();
    let (w, h) = img.dimensions();
    let root = BitMapBackend::with_buffer(img.as_mut(), (w, h)).into_drawing_area();
    root.draw(&Text::new(
        text,
        (x, y),
        (FONT, size).into_font().color(&BLACK),
    ))
    .map_err(drawing)?;
    root.present().map_err(drawing)?;
    Ok(())
}

/// PNG bytes of `img`.
pub fn png_bytes(img: &RgbImage) -> Vec<u8> {
    let mut out = std::io::Cursor::new(Vec::new());
    img.write_to(&mut out, image::ImageFormat::Png)
        .expect("PNG encoding into memory does not fail");
    out.into_inner()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Pixels that differ from white: something was drawn.
    fn inked(img: &RgbImage) -> usize {
        img.pixels().filter(|p| p.0 != [255, 255, 255]).count()
    }

    #[test]
    fn figures_draw_something_and_lines_differ_in_colour() {
        assert_eq!(
            [4500.0, 0.21, 2.4e-8, 12.5, -3.0, 0.0].map(|v| tick(&v)),
            ["4500", "0.21", "2.4e-8", "12.5", "-3", "0"]
        );
        let lines = [
            Line {
                label: "a".into(),
                points: vec![(0.0, 1.0), (1.0, 2.0), (2.0, 1.5)],
            },
            Line {
                label: "b".into(),
                points: vec![(0.0, 0.0), (2.0, 0.5)],
            },
        ];
        let img = line_chart("loss", "step", "value", &lines, (320, 200)).unwrap();
        assert_eq!(img.dimensions(), (320, 200));
        assert!(inked(&img) > 500);
        // both lines' colours are on the picture
        for c in [class_colour(0), class_colour(1)] {
            assert!(img.pixels().any(|p| p.0 == [c.0, c.1, c.2]), "{c:?}");
        }
        let pts = [[0.0f32, 0.0], [1.0, 1.0], [0.5, 0.2]];
        let s = scatter(
            "map",
            &pts,
            Some(&[0, 1, 1]),
            &["x".into(), "y".into()],
            (200, 200),
        )
        .unwrap();
        assert!(inked(&s) > 100);
        let h = histogram("std", "std", &[0.1, 0.2, 0.2, 0.3], 4, (200, 150)).unwrap();
        assert!(inked(&h) > 100);
        // a constant curve and an empty one still draw (axes), they do not fail
        let flat = [Line {
            label: "c".into(),
            points: vec![(1.0, 3.0)],
        }];
        assert!(line_chart("one point", "x", "y", &flat, (200, 150)).is_ok());
        assert!(line_chart("none", "x", "y", &[], (200, 150)).is_ok());
        let mut blank = RgbImage::from_pixel(80, 30, image::Rgb([255, 255, 255]));
        label(&mut blank, "0.98", (2, 2), 14).unwrap();
        assert!(inked(&blank) > 10);
        assert_eq!(&png_bytes(&blank)[1..4], b"PNG");
    }
}
