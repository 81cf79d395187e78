//! A run's `metrics.jsonl` read back as curves: one line per logged step (`step`, `loss`,
//! `lr`, `grad_norm`, ..., the method's own metrics, and since 2026-12-06 `train_minutes`),
//! and one per kNN evaluation (`{"eval": {...}, "step", "train_minutes"}`).

use std::collections::BTreeMap;
use std::path::Path;

/// The clustering of an evaluation line's `clusters` object.
fn clustering(c: &serde_json::Value) -> Option<Clustering> {
    let many = |k: &str| {
        let list = c.get(k)?.as_array()?;
        Some((
            list.iter().filter(|n| n.as_u64() >= Some(2)).count(),
            list.len(),
        ))
    };
    let ((split, k), (merged, _)) = (many("clusters_per_class")?, many("classes_per_cluster")?);
    Some(Clustering {
        nmi: c.get("nmi")?.as_f64()?,
        ari: c.get("ari")?.as_f64()?,
        split_classes: split,
        merged_clusters: merged,
        k,
    })
}

/// Keys of a step line that are its position, not a curve.
const POSITION: &[&str] = &["step", "epoch", "train_minutes"];

/// The curves of one run.
#[derive(Debug, Default)]
pub struct Metrics {
    /// Per metric name: `(step, train minutes if logged, value)` in log order; non-finite values
    /// (logged as `null`) are left out.
    pub curves: BTreeMap<String, Vec<(f64, Option<f64>, f64)>>,
    /// The evaluations: `(step, train minutes, kNN top-1, linear top-1, effective rank)`.
    pub evals: Vec<Evaluation>,
    /// Lines that were not JSON objects (a line cut short by a crash), counted.
    pub unreadable: usize,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Evaluation {
    pub step: f64,
    pub minutes: Option<f64>,
    pub knn_top1: Option<f64>,
    pub linear_top1: Option<f64>,
    pub effective_rank: Option<f64>,
    /// k-means of the test features: NMI, ARI, classes split and clusters merged, and of how
    /// many (evaluations logged since 2026-12-07).
    pub clusters: Option<Clustering>,
}

/// The clustering figures of an evaluation line.
#[derive(Clone, Debug, PartialEq)]
pub struct Clustering {
    pub nmi: f64,
    pub ari: f64,
    pub split_classes: usize,
    pub merged_clusters: usize,
    pub k: usize,
}

impl Metrics {
    /// Reads `path`; a missing file is an empty set of curves.
    pub fn read(path: &Path) -> anyhow::Result<Metrics> {
        match std::fs::read_to_string(path) {
            Ok(text) => Ok(Metrics::parse(&text)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Metrics::default()),
            Err(e) => anyhow::bail!("cannot read {} ({e})", path.display()),
        }
    }

    pub fn parse(text: &str) -> Metrics {
        let mut m = Metrics::default();
        for line in text.lines().filter(|l| !l.trim().is_empty()) {
            let Ok(serde_json::Value::Object(v)) = serde_json::from_str(line) else {
                m.unreadable += 1;
                continue;
            };
            let Some(step) = v.get("step").and_then(|s| s.as_f64()) else {
                continue;
            };
            let minutes = v.get("train_minutes").and_then(|s| s.as_f64());
            if let Some(e) = v.get("eval") {
                let num = |k: &str| e.get(k).and_then(|x| x.as_f64()).filter(|x| x.is_finite());
                m.evals.push(Evaluation {
                    step,
                    minutes,
                    knn_top1: num("knn_top1"),
                    linear_top1: num("linear_top1"),
                    effective_rank: num("feature_effective_rank"),
                    clusters: e.get("clusters").and_then(clustering),
                });
                continue;
            }
            for (k, value) in &v {
                let Some(x) = value.as_f64().filter(|x| x.is_finite()) else {
                    continue;
                };
                if !POSITION.contains(&k.as_str()) {
                    m.curves
                        .entry(k.clone())
                        .or_default()
                        .push((step, minutes, x));
                }
            }
        }
        m
    }

    /// Whether the step lines carry the training clock (runs logged before it did not).
    pub fn has_clock(&self) -> bool {
        self.curves
            .get("loss")
            .is_some_and(|c| c.iter().any(|p| p.1.is_some()))
    }

    /// The last logged step.
    pub fn last_step(&self) -> Option<f64> {
        self.curves
            .values()
            .filter_map(|c| c.last().map(|p| p.0))
            .fold(None, |a: Option<f64>, s| Some(a.map_or(s, |a| a.max(s))))
    }

    /// The median of a curve's values (e.g. throughput, steadier than its mean).
    pub fn median(&self, name: &str) -> Option<f64> {
        let mut v: Vec<f64> = self.curves.get(name)?.iter().map(|p| p.2).collect();
        if v.is_empty() {
            return None;
        }
        v.sort_by(f64::total_cmp);
        Some(v[v.len() / 2])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn step_lines_become_curves_and_eval_lines_evaluations() {
        let text = r#"{"step":10,"epoch":0,"loss":5.0,"lr":0.1,"train_minutes":0.5,"rotation_acc":0.25}
{"step":20,"epoch":0,"loss":null,"lr":0.2,"train_minutes":1.0}
{"eval":{"knn_top1":0.5,"linear_top1":null,"feature_effective_rank":12.0},"step":20,"train_minutes":1.0}
{"step":30,"loss":4.
"#;
        let m = Metrics::parse(text);
        assert_eq!(m.curves["loss"], vec![(10.0, Some(0.5), 5.0)]);
        assert_eq!(m.curves["lr"].len(), 2);
        assert_eq!(m.curves["rotation_acc"], vec![(10.0, Some(0.5), 0.25)]);
        assert!(!m.curves.contains_key("epoch") && !m.curves.contains_key("train_minutes"));
        assert_eq!(
            m.evals,
            vec![Evaluation {
                step: 20.0,
                minutes: Some(1.0),
                knn_top1: Some(0.5),
                clusters: None,
                linear_top1: None,
                effective_rank: Some(12.0),
            }]
        );
        assert_eq!(m.unreadable, 1);
        assert!(m.has_clock());
        assert_eq!(m.last_step(), Some(20.0));
        assert_eq!(m.median("lr"), Some(0.2));
        assert!(!Metrics::parse(r#"{"step":1,"loss":1.0}"#).has_clock());
        let line = r#"{"eval":{"knn_top1":0.5,"clusters":{"nmi":0.4,"ari":0.2,"clusters_per_class":[1,2,3],"classes_per_cluster":[2,1,1]}},"step":5}"#;
        assert_eq!(
            Metrics::parse(line).evals[0].clusters,
            Some(Clustering {
                nmi: 0.4,
                ari: 0.2,
                split_classes: 2,
                merged_clusters: 1,
                k: 3
            })
        );
    }
}
