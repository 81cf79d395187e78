//! Few-label evaluation (`selfsup eval --labels-per-class 1,5,10,100 --draws 5`): the kNN
//! classifier and the linear probe given only N labelled training images per class, on the
//! whole test split; the mean and standard deviation over class-balanced, seeded draws.
//!
//! ```text
//! for N in labels_per_class, for d in 0..draws:
//!     S = ⋃_c first N of a permutation (seed, d, c) of class c's training images
//!     kNN(features[S], labels[S]) and probe(features[S], labels[S]) → test top-1
//! report mean ± sd (sample sd, over the draws) per N
//! ```
//! The draws of N are nested: a draw's 5 images of a class are its first 5 of the same
//! permutation its 10 come from, so that the curve's steps differ only by the added labels.

use super::{ensure_finite, extract_features, knn_accuracy, linear_probe};
use super::{labels_tensor, EvalConfig, FrozenEncoder};
use crate::data::Dataset;
use crate::rng::Rng;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use tch::Tensor;

/// The random stream of the draws.
const DRAW_STREAM: u64 = 11 << 32;
/// The probe trains for at least this many steps, however few the images.
const MIN_PROBE_STEPS: usize = 300;

/// One N of the curve.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FewLabels {
    pub labels_per_class: usize,
    /// Per draw: (kNN top-1, linear probe top-1).
    pub draws: Vec<(f64, f64)>,
}

impl FewLabels {
    /// (mean, sample standard deviation) of the kNN (`linear` false) or probe accuracies.
    pub fn mean_sd(&self, linear: bool) -> (f64, f64) {
        let v: Vec<f64> = self
            .draws
            .iter()
            .map(|d| if linear { d.1 } else { d.0 })
            .collect();
        let n = v.len() as f64;
        let mean = v.iter().sum::<f64>() / n.max(1.0);
        let var = v.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1.0).max(1.0);
        (mean, var.sqrt())
    }
}

/// A curve as `eval --labels-per-class` leaves it in the run folder for `selfsup report`:
/// `RUN/few_labels.encoder.json` or `RUN/few_labels.random_init.json` (one file per encoder,
/// so that the two evaluations can run at once; each replaces its own file, atomically).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SavedCurve {
    pub random_init: bool,
    /// The data it was measured on, in words (a path, or "built-in synthetic shapes").
    pub data: String,
    pub test_images: usize,
    pub points: Vec<FewLabels>,
}

impl SavedCurve {
    pub fn path(run: &Path, random_init: bool) -> PathBuf {
        run.join(match random_init {
            true => "few_labels.random_init.json",
            false => "few_labels.encoder.json",
        })
    }

    pub fn save(&self, run: &Path) -> anyhow::Result<PathBuf> {
        let path = Self::path(run, self.random_init);
        crate::checkpoint::write_atomic(&path, serde_json::to_string_pretty(self)?.as_bytes())?;
        Ok(path)
    }

    /// The saved curves of `run`: the encoder's, then the random-init one's, each when present.
    /// A file that cannot be read is an error naming it.
    pub fn load_all(run: &Path) -> anyhow::Result<Vec<SavedCurve>> {
        [false, true]
            .into_iter()
            .map(|r| Self::path(run, r))
            .filter(|p| p.exists())
            .map(|p| {
                let text = std::fs::read_to_string(&p)?;
                serde_json::from_str(&text).map_err(|e| {
                    anyhow::anyhow!(
                        "{} is not a few-label curve ({e}): delete it, or write it again with \
                         `selfsup eval --run RUN --labels-per-class 1,5,10,100`",
                        p.display()
                    )
                })
            })
            .collect()
    }
}

/// The training images of draw `draw`: the first `n` of a seeded permutation of each class's
/// images, in class order. Refused when a class has fewer than `n`.
pub fn draw(labels: &[u32], n: usize, seed: u64, draw: u64) -> anyhow::Result<Vec<usize>> {
    let classes = labels.iter().map(|&l| l as usize + 1).max().unwrap_or(0);
    let mut by_class: Vec<Vec<usize>> = vec![Vec::new(); classes];
    for (i, &l) in labels.iter().enumerate() {
        by_class[l as usize].push(i);
    }
    let mut out = Vec::with_capacity(n * classes);
    for (c, members) in by_class.iter().enumerate() {
        anyhow::ensure!(
            members.len() >= n,
            "--labels-per-class {n}: class {c} has only {} training images; give at most {}",
            members.len(),
            by_class.iter().map(Vec::len).min().unwrap_or(0)
        );
        let order = Rng::for_sample(seed, draw, c as u64, DRAW_STREAM).permutation(members.len());
        out.extend(order[..n].iter().map(|&i| members[i]));
    }
    Ok(out)
}

/// [`evaluate`] on `encoder`'s frozen features of `train` and `test` (both labelled).
pub fn evaluate_encoder(
    encoder: FrozenEncoder,
    (train, test): (&Dataset, &Dataset),
    cfg: &EvalConfig,
    labels_per_class: &[usize],
    (draws, seed): (usize, u64),
) -> anyhow::Result<Vec<FewLabels>> {
    let (Some(ytr), Some(yte)) = (&train.labels, &test.labels) else {
        anyhow::bail!(
            "few-label evaluation needs labels on both splits: use a folder of class sub-folders"
        );
    };
    let ftr = extract_features(encoder, &train.images, cfg.batch_size); // [N, D]
    let fte = extract_features(encoder, &test.images, cfg.batch_size); // [M, D]
    ensure_finite(&ftr, "the training split")?;
    ensure_finite(&fte, "the test split")?;
    let classes = train.num_classes().max(test.num_classes()) as i64;
    evaluate(
        (&ftr, ytr),
        (&fte, &labels_tensor(yte)),
        classes,
        cfg,
        labels_per_class,
        (draws, seed),
    )
}

/// The curve: for each N of `labels_per_class`, `draws` draws scored by kNN and the probe.
/// `train` [N_train, D] with `train_labels`; `test` [M, D] with `test_labels` (i64 tensors).
pub fn evaluate(
    (train, train_labels): (&Tensor, &[u32]),
    (test, test_labels): (&Tensor, &Tensor),
    classes: i64,
    cfg: &EvalConfig,
    labels_per_class: &[usize],
    (draws, seed): (usize, u64),
) -> anyhow::Result<Vec<FewLabels>> {
    labels_per_class
        .iter()
        .map(|&n| {
            let draws = (0..draws as u64)
                .map(|d| {
                    let picked = draw(train_labels, n, seed, d)?;
                    let idx =
                        Tensor::from_slice(&picked.iter().map(|&i| i as i64).collect::<Vec<_>>());
                    let (x, y) = (
                        train.index_select(0, &idx),
                        labels_tensor(train_labels).index_select(0, &idx),
                    );
                    let knn =
                        knn_accuracy(&x, &y, test, test_labels, classes, cfg.knn_k, cfg.knn_t);
                    let steps_per_epoch = picked.len().div_ceil(256);
                    let epochs = cfg
                        .linear_epochs
                        .max(MIN_PROBE_STEPS.div_ceil(steps_per_epoch));
                    let probe =
                        linear_probe(&x, &y, test, test_labels, classes, epochs, cfg.linear_lr, d);
                    Ok((knn, probe.test_accuracy))
                })
                .collect::<anyhow::Result<Vec<_>>>()?;
            Ok(FewLabels {
                labels_per_class: n,
                draws,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::{Device, Kind};

    #[test]
    fn draws_are_class_balanced_seeded_nested_and_refused_past_the_smallest_class() {
        let labels: Vec<u32> = (0..60).map(|i| (i % 3) as u32).collect();
        let a = draw(&labels, 5, 0, 0).unwrap();
        assert_eq!(a.len(), 15);
        for c in 0..3u32 {
            assert_eq!(a.iter().filter(|&&i| labels[i] == c).count(), 5);
        }
        assert_eq!(a, draw(&labels, 5, 0, 0).unwrap(), "seeded");
        assert_ne!(a, draw(&labels, 5, 0, 1).unwrap(), "draws differ");
        assert_ne!(a, draw(&labels, 5, 1, 0).unwrap(), "seeds differ");
        let ten = draw(&labels, 10, 0, 0).unwrap();
        for c in 0..3 {
            assert_eq!(a[5 * c..5 * c + 5], ten[10 * c..10 * c + 5], "nested");
        }
        let e = draw(&labels, 21, 0, 0).unwrap_err().to_string();
        assert!(
            e.contains("class 0 has only 20") && e.contains("at most 20"),
            "{e}"
        );
    }

    #[test]
    fn separable_features_need_one_label_and_the_spread_is_over_draws() {
        // class c's features: one-hot c plus noise; the test split likewise
        let features = |n: i64, seed: i64| {
            tch::manual_seed(seed);
            let y = Tensor::arange(n, (Kind::Int64, Device::Cpu)).remainder(4);
            let x = y.one_hot(4).to_kind(Kind::Float) * 3.0
                + Tensor::randn([n, 4], (Kind::Float, Device::Cpu)) * 0.1;
            (x, y)
        };
        let (xtr, ytr) = features(80, 1);
        let (xte, yte) = features(40, 2);
        let ytr: Vec<u32> = Vec::<i64>::try_from(&ytr)
            .unwrap()
            .into_iter()
            .map(|v| v as u32)
            .collect();
        let cfg = EvalConfig {
            knn_k: 3,
            linear_epochs: 5,
            ..EvalConfig::default()
        };
        let r = evaluate((&xtr, &ytr), (&xte, &yte), 4, &cfg, &[1, 5], (3, 0)).unwrap();
        assert_eq!(r.len(), 2);
        assert_eq!(r[0].draws.len(), 3);
        for n in &r {
            let (knn, sd) = n.mean_sd(false);
            assert!(knn > 0.99 && sd < 1e-9, "{n:?}");
            assert!(n.mean_sd(true).0 > 0.95, "{n:?}");
        }
        let spread = FewLabels {
            labels_per_class: 1,
            draws: vec![(0.2, 0.0), (0.4, 0.0)],
        };
        let (m, sd) = spread.mean_sd(false);
        assert!((m - 0.3).abs() < 1e-12 && (sd - 0.02f64.sqrt()).abs() < 1e-12);
    }

    #[test]
    fn saved_curves_come_back_in_encoder_order_and_a_broken_file_is_named() {
        let dir = tempfile::tempdir().unwrap();
        assert!(SavedCurve::load_all(dir.path()).unwrap().is_empty());
        let curve = |random_init| SavedCurve {
            random_init,
            data: "data/cifar10".into(),
            test_images: 40,
            points: vec![FewLabels {
                labels_per_class: 5,
                draws: vec![(0.25, 0.5), (0.75, 0.5)],
            }],
        };
        curve(true).save(dir.path()).unwrap();
        curve(false).save(dir.path()).unwrap();
        assert_eq!(
            SavedCurve::load_all(dir.path()).unwrap(),
            vec![curve(false), curve(true)]
        );
        std::fs::write(SavedCurve::path(dir.path(), true), "{").unwrap();
        let e = SavedCurve::load_all(dir.path()).unwrap_err().to_string();
        assert!(
            e.contains("few_labels.random_init.json is not a few-label curve"),
            "{e}"
        );
    }
}
