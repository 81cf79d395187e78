//! The time-to-accuracy picture: kNN top-1 against minutes of training, one line per run.
//!
//! ```text
//! cargo run --release --example time_to_accuracy -- OUT.png NAME=SOURCE [NAME=SOURCE ...]
//! ```
//! A SOURCE is a selfsup run folder (its `metrics.jsonl`: the evaluations of
//! `train.eval_at_minutes` and the one after pretraining, each with `train_minutes`) or a log
//! of `scripts/lightly_time_to_accuracy.py` (its `curve: M min, N steps, kNN top-1 A %`
//! lines). Several SOURCEs under one NAME, joined by `+`, are one line (e.g. separate runs at
//! 10 and 30 minutes). Text is drawn with DejaVu Sans (compiled in: the `dejavu` crate).
//!
//! The README's picture (docs/src/images/time_to_accuracy.png), from the runs of its "A good encoder
//! fast" table:
//! ```text
//! cargo run --release --example time_to_accuracy -- docs/src/images/time_to_accuracy.png \
//!   "fast-cpu, 30-min run=runs/s29/fast30" "fast-cpu, 10-min run=runs/s29/b10" \
//!   "SimCLR defaults, 10-min run=runs/s29/simclr10b" \
//!   "lightly 1.6, 30-min run=runs/s29/lightly30.log"
//! ```

use plotters::prelude::*;
use std::path::Path;

/// (minutes, kNN top-1 in %) of one source, in order of minutes.
fn points(source: &Path) -> Result<Vec<(f64, f64)>, String> {
    let read = |p: &Path| std::fs::read_to_string(p).map_err(|e| format!("{}: {e}", p.display()));
    let mut pts = Vec::new();
    if source.is_dir() {
        for line in read(&source.join("metrics.jsonl"))?.lines() {
            let v: serde_json::Value = serde_json::from_str(line).map_err(|e| e.to_string())?;
            if let (Some(m), Some(a)) =
                (v["train_minutes"].as_f64(), v["eval"]["knn_top1"].as_f64())
            {
                pts.push((m, 100.0 * a));
            }
        }
    } else {
        for line in read(source)?.lines() {
            let Some(rest) = line.strip_prefix("curve: ") else {
                continue;
            };
            let minutes = rest
                .split(" min")
                .next()
                .and_then(|m| m.trim().parse().ok());
            let acc = rest
                .rsplit("kNN top-1 ")
                .next()
                .and_then(|a| a.trim_end_matches(" %").trim().parse().ok());
            if let (Some(m), Some(a)) = (minutes, acc) {
                pts.push((m, a));
            }
        }
    }
    if pts.is_empty() {
        return Err(format!(
            "{}: no kNN evaluations with minutes in it",
            source.display()
        ));
    }
    pts.sort_by(|a, b| a.0.total_cmp(&b.0));
    Ok(pts)
}

fn main() -> Result<(), String> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (Some(out), true) = (args.first(), args.len() > 1) else {
        return Err("usage: time_to_accuracy OUT.png NAME=SOURCE[+SOURCE…] …".into());
    };
    let mut series = Vec::new();
    for a in &args[1..] {
        let (name, sources) = a
            .split_once('=')
            .ok_or_else(|| format!("{a}: expected NAME=SOURCE"))?;
        let mut pts = Vec::new();
        for s in sources.split('+') {
            pts.extend(points(Path::new(s))?);
        }
        pts.sort_by(|a, b| a.0.total_cmp(&b.0));
        series.push((name.to_string(), pts));
    }
    plotters::style::register_font("sans-serif", FontStyle::Normal, dejavu::sans::regular())
        .map_err(|_| "the compiled-in DejaVu Sans is not a font".to_string())?;
    let max_min = series
        .iter()
        .flat_map(|s| &s.1)
        .map(|p| p.0)
        .fold(1.0, f64::max);
    let (lo, hi) = series
        .iter()
        .flat_map(|s| &s.1)
        .fold((100.0f64, 0.0f64), |(lo, hi), p| (lo.min(p.1), hi.max(p.1)));
    let (w, h) = (900u32, 560u32);
    let mut buf = vec![0u8; (w * h * 3) as usize];
    {
        let root = BitMapBackend::with_buffer(&mut buf, (w, h)).into_drawing_area();
        root.fill(&WHITE).map_err(|e| e.to_string())?;
        let mut chart = ChartBuilder::on(&root)
            .caption(
                "CIFAR-10 kNN top-1 against minutes of training (2 CPU cores)",
                ("sans-serif", 22),
            )
            .margin(16)
            .x_label_area_size(44)
            .y_label_area_size(56)
            .build_cartesian_2d(
                0.0..max_min * 1.04,
                (lo - 5.0).floor().max(0.0)..(hi + 3.0).ceil().min(100.0),
            )
            .map_err(|e| e.to_string())?;
        chart
            .configure_mesh()
            .x_desc("minutes of training (wall clock)")
            .y_desc("kNN top-1 (%)")
            .label_style(("sans-serif", 15))
            .draw()
            .map_err(|e| e.to_string())?;
        for (i, (name, pts)) in series.iter().enumerate() {
            let color = Palette99::pick(i).to_rgba();
            chart
                .draw_series(LineSeries::new(pts.iter().copied(), color.stroke_width(3)))
                .map_err(|e| e.to_string())?
                .label(name.as_str())
                .legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(3))
                });
            chart
                .draw_series(pts.iter().map(|&p| Circle::new(p, 4, color.filled())))
                .map_err(|e| e.to_string())?;
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::LowerRight)
            .label_font(("sans-serif", 16))
            .background_style(WHITE.mix(0.9))
            .border_style(BLACK)
            .draw()
            .map_err(|e| e.to_string())?;
        root.present().map_err(|e| e.to_string())?;
    }
    image::save_buffer(out, &buf, w, h, image::ExtendedColorType::Rgb8)
        .map_err(|e| format!("{out}: {e}"))?;
    for (name, pts) in &series {
        let shown: Vec<String> = pts
            .iter()
            .map(|(m, a)| format!("{m:.1} min {a:.2} %"))
            .collect();
        println!("{name}: {}", shown.join(", "));
    }
    println!("wrote {out}");
    Ok(())
}
