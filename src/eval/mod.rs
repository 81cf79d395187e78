//! Judging an encoder by its frozen features on a labeled split: a weighted kNN classifier and
//! a linear probe, plus collapse diagnostics of embeddings and how k-means of them splits or
//! merges the classes ([`clusters`]).

pub mod clusters;
pub mod diagnostics;
pub mod features;
pub mod few_labels;
pub mod knn;
pub mod linear;
pub mod similarity;
pub mod zero_shot;

pub use diagnostics::{alignment, effective_rank, embedding_std, uniformity};
pub use features::{ensure_finite, extract_features, extract_features_with};
pub use knn::{knn_accuracy, knn_predict};
pub use linear::{linear_probe, LinearProbe};

/// Fraction of `pred` equal to `labels` (both \[M\] int64 tensors).
pub fn accuracy(pred: &tch::Tensor, labels: &tch::Tensor) -> f64 {
    let m = labels.size()[0];
    if m == 0 {
        return 0.0;
    }
    pred.eq_tensor(labels)
        .sum(tch::Kind::Float)
        .double_value(&[])
        / m as f64
}

/// Labels as an int64 tensor \[N\].
pub fn labels_tensor(labels: &[u32]) -> tch::Tensor {
    let v: Vec<i64> = labels.iter().map(|&l| l as i64).collect();
    tch::Tensor::from_slice(&v)
}

use crate::backbone::{Backbone, Layer};
use crate::data::Dataset;

pub use crate::config::EvalConfig;

/// Accuracies of an encoder on a labeled split, with its collapse diagnostics.
#[derive(Clone, Debug, serde::Serialize)]
pub struct EvalReport {
    /// NaN when the kNN score was not asked for.
    pub knn_top1: f64,
    /// None when the linear probe was not asked for.
    pub linear_top1: Option<f64>,
    /// Per-dimension std of the normalised test features (0 = collapsed).
    pub feature_std: f64,
    pub feature_effective_rank: f64,
    /// Uniformity (Wang & Isola 2020) of up to 2048 test features (0 = collapsed, −4 = spread).
    pub feature_uniformity: f64,
    /// k-means of the test features against the test labels ([`clusters::cluster_report`]).
    pub clusters: clusters::ClusterReport,
    pub seconds: f64,
}

/// An encoder to judge by its frozen features, with the memory order its inputs take.
#[derive(Clone, Copy)]
pub struct FrozenEncoder<'a> {
    pub net: &'a Backbone,
    pub channels_last: bool,
    /// The side of the square evaluation views: the training resolution
    /// ([`TrainConfig::crop_size`](crate::config::TrainConfig::crop_size)).
    pub input_side: usize,
    /// The stage whose pooled output is the feature (`layer4`: the encoder's h).
    pub layer: Layer,
}

/// Which scores [`evaluate`] computes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum EvalKind {
    /// Weighted kNN only.
    Knn,
    /// The linear probe only.
    Linear,
    /// Both.
    Both,
    /// Only the clustering of the test features (which every evaluation also reports).
    Clusters,
}

impl EvalKind {
    fn knn(self) -> bool {
        matches!(self, EvalKind::Knn | EvalKind::Both)
    }
    fn linear(self) -> bool {
        matches!(self, EvalKind::Linear | EvalKind::Both)
    }
}

/// Extracts frozen features of `train` (the kNN memory / probe training set) and `test`, and
/// scores the encoder by weighted kNN and/or a linear probe (`kind`).
pub fn evaluate(
    encoder: FrozenEncoder,
    train: &Dataset,
    test: &Dataset,
    cfg: &EvalConfig,
    kind: EvalKind,
) -> anyhow::Result<EvalReport> {
    let start = std::time::Instant::now();
    let (Some(ytr), Some(yte)) = (&train.labels, &test.labels) else {
        anyhow::bail!("evaluation needs labels on both splits: use a folder of class sub-folders (or IDX / CIFAR files)");
    };
    if test.images.is_empty() {
        anyhow::bail!("the test split has no images");
    }
    // Evaluation view of every image, whatever its size: the centred square of the stored
    // image (its whole shorter side) resized to the training resolution.
    let ftr = match kind.knn() || kind.linear() {
        true => extract_features(encoder, &train.images, cfg.batch_size), // [N, D]
        false => tch::Tensor::zeros([0, 1], (tch::Kind::Float, tch::Device::Cpu)),
    };
    let fte = extract_features(encoder, &test.images, cfg.batch_size); // [M, D]
    ensure_finite(&ftr, "the training split")?;
    ensure_finite(&fte, "the test split")?;
    let classes = train.num_classes().max(test.num_classes());
    let clusters = clusters::cluster_report(&fte, yte, classes);
    let (ytr, yte) = (labels_tensor(ytr), labels_tensor(yte));
    let classes = classes as i64;
    let knn_top1 = match kind.knn() {
        true => knn_accuracy(&ftr, &ytr, &fte, &yte, classes, cfg.knn_k, cfg.knn_t),
        false => f64::NAN,
    };
    let linear_top1 = kind.linear().then(|| {
        linear_probe(
            &ftr,
            &ytr,
            &fte,
            &yte,
            classes,
            cfg.linear_epochs,
            cfg.linear_lr,
            0,
        )
        .test_accuracy
    });
    Ok(EvalReport {
        knn_top1,
        linear_top1,
        feature_std: embedding_std(&fte),
        feature_effective_rank: effective_rank(&fte),
        feature_uniformity: uniformity(&fte.narrow(0, 0, fte.size()[0].min(2048))),
        clusters,
        seconds: start.elapsed().as_secs_f64(),
    })
}
