//! The report's training section: every logged metric against step, the loss against
//! training minutes, the kNN evaluations on the way, and the run's facts.

use super::charts;
use super::metrics::Metrics;
use super::page::{Fact, Figure, Section};
use super::{CURVE, FIRST};
use crate::config::TrainConfig;

/// The training-curve section: every logged metric against step, the loss against training
/// minutes, the kNN evaluations.
pub fn curves(m: &Metrics) -> anyhow::Result<Section> {
    let mut s = Section::new("Training curves");
    if m.curves.is_empty() {
        s.text = "This run folder has no metrics.jsonl (or no step lines in it): nothing to draw."
            .into();
        return Ok(s);
    }
    let mut names: Vec<&String> = m.curves.keys().collect();
    names.sort_by_key(|n| {
        (
            FIRST.iter().position(|f| f == n).unwrap_or(FIRST.len()),
            n.to_string(),
        )
    });
    if m.has_clock() {
        let pts = m.curves["loss"]
            .iter()
            .filter_map(|p| p.1.map(|t| (t, p.2)))
            .collect();
        let line = charts::Line {
            label: "loss".into(),
            points: pts,
        };
        let img = charts::line_chart(
            "loss against time",
            "training minutes",
            "loss",
            &[line],
            CURVE,
        )?;
        s.figures.push(Figure::new(
            "loss_minutes",
            "loss against training minutes",
            img,
        ));
    } else {
        s.text = "This run logged no training clock per step (runs before 2026-12-06): curves are \
                  against step only."
            .into();
    }
    for name in names {
        let pts = m.curves[name].iter().map(|p| (p.0, p.2)).collect();
        let line = charts::Line {
            label: name.clone(),
            points: pts,
        };
        let img = charts::line_chart(name, "step", name, &[line], CURVE)?;
        s.figures
            .push(Figure::new(&format!("curve_{name}"), name, img));
    }
    let knn: Vec<_> = m
        .evals
        .iter()
        .filter_map(|e| e.knn_top1.map(|a| (e, 100.0 * a)))
        .collect();
    if !knn.is_empty() {
        let with_time: Vec<(f64, f64)> = knn
            .iter()
            .filter_map(|(e, a)| e.minutes.map(|t| (t, *a)))
            .collect();
        let (x, pts) = match with_time.len() == knn.len() {
            true => ("training minutes", with_time),
            false => ("step", knn.iter().map(|(e, a)| (e.step, *a)).collect()),
        };
        let line = charts::Line {
            label: "kNN top-1".into(),
            points: pts,
        };
        let img = charts::line_chart(
            "kNN top-1 (%) during training",
            x,
            "kNN top-1 %",
            &[line],
            CURVE,
        )?;
        s.figures.push(Figure::new(
            "knn",
            "kNN top-1 of the evaluations logged during and after training",
            img,
        ));
    }
    Ok(s)
}

/// The run's settings and the figures it logged.
pub fn run_facts(cfg: &TrainConfig, m: &Metrics) -> Vec<Fact> {
    let mut f = vec![
        Fact::new("method", &cfg.method.name),
        Fact::new(
            "encoder",
            &cfg.model
                .backbone_config(cfg.planned_crop_size())
                .describe(),
        ),
        Fact::new("batch size", &cfg.train.batch_size.to_string()),
        Fact::new("peak learning rate", &format!("{}", cfg.lr())),
    ];
    if let Some(s) = m.last_step() {
        f.push(Fact::new("steps logged", &format!("{s:.0}")));
    }
    let minutes = m
        .evals
        .iter()
        .filter_map(|e| e.minutes)
        .chain(
            m.curves
                .get("loss")
                .into_iter()
                .flatten()
                .filter_map(|p| p.1),
        )
        .fold(None, |a: Option<f64>, t| Some(a.map_or(t, |a| a.max(t))));
    if let Some(t) = minutes {
        f.push(Fact::new("training minutes", &format!("{t:.1}")));
    }
    if let Some(ips) = m.median("images_per_s") {
        f.push(Fact::new(
            "throughput (median)",
            &format!("{ips:.0} images/s"),
        ));
    }
    if let Some(e) = m.evals.last() {
        if let Some(a) = e.knn_top1 {
            f.push(Fact::new(
                "kNN top-1 (last logged)",
                &format!("{:.2} %", 100.0 * a),
            ));
        }
        if let Some(a) = e.linear_top1 {
            f.push(Fact::new(
                "linear probe top-1 (last logged)",
                &format!("{:.2} %", 100.0 * a),
            ));
        }
        if let Some(c) = &e.clusters {
            f.push(Fact::new(
                "k-means of the test features (last logged)",
                &format!(
                    "NMI {:.3}, ARI {:.3}; {} of {} classes split, {} of {} clusters mixed",
                    c.nmi, c.ari, c.split_classes, c.k, c.merged_clusters, c.k
                ),
            ));
        }
    }
    f
}
