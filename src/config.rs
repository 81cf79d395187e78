//! One `TrainConfig` nesting the parts' configs. Every default is documented on its field.
//! Sources, later ones winning: the defaults, a TOML file, then `section.key=value` overrides
//! (the CLI's flags are overrides too). Unknown keys are an error, and `validate` checks values
//! once, before any work starts. The config is saved beside every checkpoint.

use crate::backbone::{ResNetConfig, Stem};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use thiserror::Error;

#[derive(Debug, Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {cause}")]
    Read {
        path: PathBuf,
        cause: std::io::Error,
    },
    #[error("config file {path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("unknown config key `{key}`; the keys of [{section}] are: {known}")]
    UnknownKey {
        key: String,
        section: String,
        known: String,
    },
    #[error("override `{0}` must look like section.key=value (e.g. optim.lr=0.3)")]
    BadOverride(String),
    #[error("{0}")]
    Invalid(String),
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TrainConfig {
    pub data: DataConfig,
    pub model: ModelConfig,
    pub method: MethodConfig,
    pub optim: OptimConfig,
    pub train: LoopConfig,
    pub eval: EvalConfig,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DataConfig {
    /// Image folder, IDX folder or CIFAR binary folder. Unset: the built-in synthetic shapes.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path: Option<PathBuf>,
    /// Resize every image to this square size when loading. Unset: keep the images' own size
    /// (they must then all share one size).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub image_size: Option<usize>,
    /// Skip unreadable image files (listed in the log) instead of stopping. Default false.
    pub skip_bad: bool,
    /// Use at most this many images per split (quick runs). Unset: all.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub limit: Option<usize>,
    /// Synthetic data only: training images per class (10 classes). Default 500.
    pub synthetic_train_per_class: usize,
    /// Synthetic data only: test images per class. Default 100.
    pub synthetic_test_per_class: usize,
    /// Synthetic data only: image side in pixels. Default 32.
    pub synthetic_size: usize,
    /// Blur probability of the view recipe (SimCLR uses 0.5 on ImageNet, 0 on CIFAR). Default 0.
    pub blur_p: f32,
    /// Smallest area fraction of the random resized crop (SimCLR: 0.08; MoCo's CIFAR recipes
    /// use 0.2, which learns faster on short schedules). Default 0.08.
    pub crop_min_scale: f32,
    /// Multi-crop (SwAV, DINO only): small views per image besides the two large ones. Default 0
    /// (solo-learn's CIFAR recipes; the papers use 6 on ImageNet).
    pub small_crops: usize,
    /// Side of the small views in pixels; 0: 3/7 of the large side (14 for 32 px). Default 0.
    pub small_crop_size: usize,
    /// Area range `[lo, hi]` of the small crops as a fraction of the image. Default [0.05, 0.14]
    /// (SwAV).
    pub small_crop_scale: (f32, f32),
}

impl Default for DataConfig {
    fn default() -> Self {
        DataConfig {
            path: None,
            image_size: None,
            skip_bad: false,
            limit: None,
            synthetic_train_per_class: 500,
            synthetic_test_per_class: 100,
            synthetic_size: 32,
            blur_p: 0.0,
            crop_min_scale: 0.08,
            small_crops: 0,
            small_crop_size: 0,
            small_crop_scale: (0.05, 0.14),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ModelConfig {
    /// ResNet depth: 18, 34 or 50. Default 18.
    pub depth: usize,
    /// "cifar" (3×3 stem, no max-pool; for ~32 px images) or "imagenet". Default "cifar".
    pub stem: Stem,
    /// Channel multiplier (1.0 = 64-128-256-512). Default 0.25.
    pub width: f64,
    /// Hidden width of the projection head. Unset: the encoder's output dimension.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub projection_hidden: Option<i64>,
    /// Output dimension of the projection head. Default 128 (SimCLR).
    pub projection_dim: i64,
    /// Run convolutions in channels-last memory order (faster on CPU). Default true. Networks
    /// that would meet a libtorch heap corruption in that order run in NCHW instead (see
    /// [`ModelConfig::uses_channels_last`]).
    pub channels_last: bool,
}

impl Default for ModelConfig {
    fn default() -> Self {
        ModelConfig {
            depth: 18,
            stem: Stem::Cifar,
            width: 0.25,
            projection_hidden: None,
            projection_dim: 128,
            channels_last: true,
        }
    }
}

impl ModelConfig {
    /// The memory order actually used: channels-last when asked for and safe for this network
    /// ([`ResNetConfig::channels_last_is_safe`]), NCHW otherwise. Read this, not the field.
    pub fn uses_channels_last(&self) -> bool {
        self.channels_last && self.resnet().channels_last_is_safe()
    }

    pub fn resnet(&self) -> ResNetConfig {
        ResNetConfig {
            depth: self.depth,
            stem: self.stem,
            width: self.width,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MethodConfig {
    /// The method, by name: "simclr". Default "simclr".
    pub name: String,
    /// Temperature τ of the contrastive loss. Default 0.2: one-epoch CIFAR-10 runs gave kNN
    /// 45.2 % at τ = 0.2 against 41.9 % at 0.5 (lightly's choice); solo-learn also uses 0.2.
    pub temperature: f64,
    /// The two-view loss, by name (`selfsup pretrain --loss`): nt_xent, nt_xent_tiled, dcl,
    /// info_nce, info_nce_tiled, n_pair, triplet, margin, barlow_twins, vicreg. Default "nt_xent".
    pub loss: String,
    /// Margin m of the triplet and margin losses, on L2-normalised embeddings. Default 0.5.
    pub margin: f64,
    /// Barlow Twins off-diagonal weight λ. Default 5e-3 (the paper).
    pub barlow_lambda: f64,
    /// VICReg weights (invariance, variance, covariance). Default [25, 25, 1] (the paper).
    pub vicreg_weights: [f64; 3],
    /// N-pair embedding-norm regulariser λ. Default 0.002 (Sohn 2016).
    pub n_pair_l2: f64,
    /// Rows per block of the tiled losses; 0 picks blocks of about 2²⁴ similarities. Default 0.
    pub tile_rows: usize,
    /// Starting momentum of the EMA target (BYOL) / key encoder (MoCo); it rises to 1 by a
    /// cosine schedule over the run. Default 0.99.
    pub ema_momentum: f64,
    /// MoCo's queue of negative keys. Default 4096.
    pub queue_size: usize,
    /// Prototypes (SwAV), output dimensions (DINO's head) or k-means clusters (DeepCluster).
    /// Default 3000 (solo-learn's CIFAR SwAV recipe, and each of its DeepCluster-v2 heads).
    pub prototypes: usize,
    /// Temperature of the softmax over prototype scores: SwAV's τ, DINO's student τ_s,
    /// DeepCluster's τ over centroid scores. Default 0.1.
    pub prototype_temperature: f64,
    /// SwAV's Sinkhorn-Knopp entropy ε (3 iterations). Default 0.05.
    pub sinkhorn_epsilon: f64,
    /// DINO's teacher temperature τ_t (sharpening). Default 0.04.
    pub teacher_temperature: f64,
    /// DINO's centre momentum: `c ← m·c + (1 − m)·mean(teacher outputs)`. Default 0.9.
    pub center_momentum: f64,
}

impl Default for MethodConfig {
    fn default() -> Self {
        MethodConfig {
            name: "simclr".into(),
            temperature: 0.2,
            loss: "nt_xent".into(),
            margin: 0.5,
            barlow_lambda: 5e-3,
            vicreg_weights: [25.0, 25.0, 1.0],
            n_pair_l2: 0.002,
            tile_rows: 0,
            ema_momentum: 0.99,
            queue_size: 4096,
            prototypes: 3000,
            prototype_temperature: 0.1,
            sinkhorn_epsilon: 0.05,
            teacher_temperature: 0.04,
            center_momentum: 0.9,
        }
    }
}

impl MethodConfig {
    /// The configured two-view loss; an unknown or unsuitable name is an error naming the choices.
    pub fn two_view_loss(&self) -> Result<crate::loss::TwoViewLoss, String> {
        crate::loss::TwoViewLoss::new(
            &self.loss,
            crate::loss::two_view::LossParams {
                temperature: self.temperature,
                margin: self.margin,
                barlow_lambda: self.barlow_lambda,
                vicreg_weights: self.vicreg_weights,
                n_pair_l2: self.n_pair_l2,
                tile_rows: self.tile_rows,
            },
        )
        .map_err(|e| format!("method.loss: {e}"))
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OptimConfig {
    /// Peak learning rate of SGD. Default 0.3 (one-epoch CIFAR-10 runs at τ = 0.2: 0.3 and 0.12
    /// tie; the 8-epoch 30-minute recipe of the README uses 0.3).
    pub lr: f64,
    /// Learning rate at the end of the cosine decay. Default 0.
    pub final_lr: f64,
    /// Momentum μ. Default 0.9.
    pub momentum: f64,
    /// Weight decay λ. Default 5e-4.
    pub weight_decay: f64,
    /// Linear warm-up length in epochs (fractions allowed). Default 0.5.
    pub warmup_epochs: f64,
}

impl Default for OptimConfig {
    fn default() -> Self {
        OptimConfig {
            lr: 0.3,
            final_lr: 0.0,
            momentum: 0.9,
            weight_decay: 5e-4,
            warmup_epochs: 0.5,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LoopConfig {
    /// Passes over the training split. Default 10. With `minutes`, an upper bound.
    pub epochs: usize,
    /// Wall-clock budget of training in minutes: the run measures its speed over its first
    /// steps and fits its schedules to the steps that fit (see train/budget.rs). Unset: `epochs`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub minutes: Option<f64>,
    /// Images per step (each gives two views, so 2× this many go through the encoder). Default 256.
    pub batch_size: usize,
    /// Seed of the model initialisation, data order and augmentations. Default 0.
    pub seed: u64,
    /// CPU threads for libtorch and augmentation. 0: all cores. Default 0.
    pub threads: usize,
    /// Run folder: checkpoint, config, metrics, exported encoder. Default "runs/simclr".
    pub out_dir: PathBuf,
    /// Write a checkpoint every this many steps (and at the end of every epoch). Default 100.
    pub checkpoint_every: usize,
    /// Append a metrics line every this many steps. Default 10.
    pub log_every: usize,
    /// Batches prepared ahead on a background thread; 0 augments in the training thread
    /// between steps (measured within noise of 2 on 2 cores). Default 2.
    pub prefetch: usize,
    /// Seconds between plain progress lines when stderr is not a terminal (a log file, CI,
    /// nohup), where the progress bar is hidden. Default 30.
    pub progress_seconds: f64,
}

impl Default for LoopConfig {
    fn default() -> Self {
        LoopConfig {
            epochs: 10,
            minutes: None,
            batch_size: 256,
            seed: 0,
            threads: 0,
            out_dir: PathBuf::from("runs/simclr"),
            checkpoint_every: 100,
            log_every: 10,
            prefetch: 2,
            progress_seconds: 30.0,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EvalConfig {
    /// Neighbours of the weighted kNN classifier. Default 200 (InstDisc, lightly).
    pub knn_k: usize,
    /// Temperature of the kNN vote weights exp(cos/t). Default 0.1.
    pub knn_t: f64,
    /// Epochs of the linear probe (logistic regression on frozen features). Default 30.
    pub linear_epochs: usize,
    /// Learning rate of the linear probe (Adam, cosine decay). Default 1e-2.
    pub linear_lr: f64,
    /// Images per forward pass when extracting features. Default 512.
    pub batch_size: usize,
}

impl Default for EvalConfig {
    fn default() -> Self {
        EvalConfig {
            knn_k: 200,
            knn_t: 0.1,
            linear_epochs: 30,
            linear_lr: 1e-2,
            batch_size: 512,
        }
    }
}

/// A setting's value as a person writes it: f32 fields (`data.crop_min_scale`) as `0.08`, not
/// as the f64 they widen to (`0.07999999821186066`).
fn setting_text(v: &toml::Value) -> String {
    match v {
        toml::Value::Float(f) if (*f as f32) as f64 == *f => format!("{}", *f as f32),
        toml::Value::Array(a) => format!(
            "[{}]",
            a.iter().map(setting_text).collect::<Vec<_>>().join(", ")
        ),
        v => v.to_string(),
    }
}

impl TrainConfig {
    /// Defaults ← TOML file ← `section.key=value` overrides, then [`TrainConfig::validate`].
    pub fn load(file: Option<&Path>, overrides: &[String]) -> Result<Self, ConfigError> {
        Self::load_onto(TrainConfig::default(), file, overrides)
    }

    /// `start` (a command's own defaults, such as the demo's, or a run's saved config on
    /// resume) ← TOML file ← `section.key=value` overrides, then [`TrainConfig::validate`].
    pub fn load_onto(
        start: TrainConfig,
        file: Option<&Path>,
        overrides: &[String],
    ) -> Result<Self, ConfigError> {
        let mut table = toml::Table::try_from(start).expect("configs serialise");
        if let Some(path) = file {
            let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
                path: path.into(),
                cause: source,
            })?;
            let user: toml::Table = toml::from_str(&text).map_err(|e| ConfigError::Parse {
                path: path.into(),
                message: e.to_string(),
            })?;
            merge(&mut table, user, "")?;
        }
        for o in overrides {
            apply_override(&mut table, o)?;
        }
        let cfg: TrainConfig = toml::Value::Table(table)
            .try_into()
            .map_err(|e: toml::de::Error| ConfigError::Invalid(e.to_string()))?;
        cfg.validate()?;
        Ok(cfg)
    }

    /// Every setting as `section.key` → its value as a person writes it (for naming differences).
    pub fn flat_settings(&self) -> std::collections::BTreeMap<String, String> {
        let table = toml::Table::try_from(self).expect("configs serialise");
        let mut out = std::collections::BTreeMap::new();
        for (section, v) in table {
            match v {
                toml::Value::Table(t) => {
                    for (k, v) in t {
                        out.insert(format!("{section}.{k}"), setting_text(&v));
                    }
                }
                v => {
                    out.insert(section, v.to_string());
                }
            }
        }
        out
    }

    /// The config as TOML text (saved in every run folder).
    pub fn to_toml(&self) -> String {
        toml::to_string_pretty(self).expect("config serialises")
    }

    /// Checks every value once; the message names the key and the value.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let bad = |m: String| Err(ConfigError::Invalid(m));
        self.model
            .resnet()
            .validate()
            .map_err(ConfigError::Invalid)?;
        if self.model.projection_dim < 1 || self.model.projection_hidden.is_some_and(|h| h < 1) {
            return bad("model.projection_dim and model.projection_hidden must be ≥ 1".into());
        }
        if !crate::method::METHODS.contains(&self.method.name.as_str()) {
            return bad(format!(
                "method.name is {:?}: the methods are: {}",
                self.method.name,
                crate::method::METHODS.join(", ")
            ));
        }
        if self.method.name != "simclr" && self.method.loss != MethodConfig::default().loss {
            return bad(format!(
                "method.loss is {:?} but method {:?} has its own loss: --loss applies to simclr only",
                self.method.loss, self.method.name
            ));
        }
        if !(0.0..=1.0).contains(&self.method.ema_momentum) {
            return bad(format!(
                "method.ema_momentum is {}: it must be in [0, 1] (e.g. 0.99)",
                self.method.ema_momentum
            ));
        }
        if !(1..=1 << 20).contains(&self.method.queue_size) {
            return bad(format!(
                "method.queue_size is {}: it must be between 1 and 1048576 (MoCo uses 4096–65536)",
                self.method.queue_size
            ));
        }
        if !(self.method.temperature.is_finite() && self.method.temperature > 0.0) {
            return bad(format!(
                "method.temperature is {}: it must be > 0 (e.g. 0.5)",
                self.method.temperature
            ));
        }
        let m = &self.method;
        m.two_view_loss().map_err(ConfigError::Invalid)?;
        if !(2..=1 << 16).contains(&m.prototypes) {
            return bad(format!(
                "method.prototypes is {}: it must be between 2 and 65536 (SwAV uses 3000)",
                m.prototypes
            ));
        }
        for (what, v) in [
            ("method.prototype_temperature", m.prototype_temperature),
            ("method.sinkhorn_epsilon", m.sinkhorn_epsilon),
            ("method.teacher_temperature", m.teacher_temperature),
        ] {
            if !(v.is_finite() && v > 0.0) {
                return bad(format!("{what} is {v}: it must be > 0"));
            }
        }
        if !(0.0..=1.0).contains(&m.center_momentum) {
            return bad(format!(
                "method.center_momentum is {}: it must be in [0, 1] (e.g. 0.9)",
                m.center_momentum
            ));
        }
        for (what, v) in [
            ("method.margin", m.margin),
            ("method.barlow_lambda", m.barlow_lambda),
            ("method.n_pair_l2", m.n_pair_l2),
        ]
        .into_iter()
        .chain(
            m.vicreg_weights
                .iter()
                .map(|&w| ("method.vicreg_weights", w)),
        ) {
            if !(v.is_finite() && v >= 0.0) {
                return bad(format!("{what} is {v}: it must be ≥ 0"));
            }
        }
        let o = &self.optim;
        if !(o.lr.is_finite() && o.lr > 0.0) {
            return bad(format!("optim.lr is {}: it must be > 0", o.lr));
        }
        if !(o.final_lr.is_finite() && o.final_lr >= 0.0) {
            return bad(format!("optim.final_lr is {}: it must be ≥ 0", o.final_lr));
        }
        if !(0.0..1.0).contains(&o.momentum) {
            return bad(format!(
                "optim.momentum is {}: it must be in [0, 1)",
                o.momentum
            ));
        }
        if !(o.weight_decay.is_finite() && o.weight_decay >= 0.0) {
            return bad(format!(
                "optim.weight_decay is {}: it must be ≥ 0",
                o.weight_decay
            ));
        }
        if !(o.warmup_epochs.is_finite() && o.warmup_epochs >= 0.0) {
            return bad(format!(
                "optim.warmup_epochs is {}: it must be ≥ 0",
                o.warmup_epochs
            ));
        }
        let t = &self.train;
        if t.epochs == 0 {
            return bad("train.epochs is 0: it must be ≥ 1".into());
        }
        if let Some(m) = t.minutes {
            if !(m.is_finite() && m > 0.0) {
                return bad(format!(
                    "train.minutes is {m}: it must be > 0 (e.g. --minutes 30)"
                ));
            }
        }
        if t.batch_size < 2 {
            return bad(format!(
                "train.batch_size is {}: contrastive learning needs ≥ 2 images per batch",
                t.batch_size
            ));
        }
        if !(t.progress_seconds.is_finite() && t.progress_seconds > 0.0) {
            return bad(format!(
                "train.progress_seconds is {}: it must be > 0 (e.g. 30)",
                t.progress_seconds
            ));
        }
        if t.checkpoint_every == 0 || t.log_every == 0 {
            return bad("train.checkpoint_every and train.log_every must be ≥ 1".into());
        }
        if self.eval.knn_k == 0 || !(self.eval.knn_t > 0.0) || self.eval.batch_size == 0 {
            return bad("eval.knn_k and eval.batch_size must be ≥ 1 and eval.knn_t > 0".into());
        }
        if self.data.image_size == Some(0) || self.data.synthetic_size < 8 {
            return bad("data.image_size must be ≥ 1 and data.synthetic_size ≥ 8".into());
        }
        let s = self.data.crop_min_scale;
        if !(s > 0.0 && s <= 1.0) {
            return bad(format!(
                "data.crop_min_scale is {s}: it must be in (0, 1] (SimCLR uses 0.08)"
            ));
        }
        let d = &self.data;
        let multi_crop = matches!(self.method.name.as_str(), "swav" | "dino" | "deepcluster");
        if d.small_crops > 0 && !multi_crop {
            return bad(format!(
                "data.small_crops is {} but method {:?} trains on 2 views: multi-crop works with swav, dino and deepcluster",
                d.small_crops, self.method.name
            ));
        }
        if d.small_crops > 16 {
            return bad(format!(
                "data.small_crops is {}: at most 16 (the papers use 6 to 10)",
                d.small_crops
            ));
        }
        let (lo, hi) = d.small_crop_scale;
        if !(lo > 0.0 && lo <= hi && hi <= 1.0) {
            return bad(format!(
                "data.small_crop_scale is [{lo}, {hi}]: it must satisfy 0 < lo ≤ hi ≤ 1 (SwAV: [0.05, 0.14])"
            ));
        }
        if !(0.0..=1.0).contains(&self.data.blur_p) {
            return bad(format!(
                "data.blur_p is {}: it must be in [0, 1]",
                self.data.blur_p
            ));
        }
        Ok(())
    }
}

/// Merges `src` into `dst`, refusing keys that `dst` (the defaults) does not have.
fn merge(dst: &mut toml::Table, src: toml::Table, prefix: &str) -> Result<(), ConfigError> {
    for (k, v) in src {
        let key = if prefix.is_empty() {
            k.clone()
        } else {
            format!("{prefix}.{k}")
        };
        match (dst.get_mut(&k), v) {
            (Some(toml::Value::Table(d)), toml::Value::Table(s)) => merge(d, s, &key)?,
            (Some(slot), v) => *slot = v,
            (None, v) if is_optional_key(&key) => {
                dst.insert(k, v);
            }
            (None, _) => return Err(unknown_key(dst, &key, prefix)),
        }
    }
    Ok(())
}

/// Keys whose default is unset, so that they are absent from the serialised defaults.
fn is_optional_key(key: &str) -> bool {
    matches!(
        key,
        "data.path"
            | "data.image_size"
            | "data.limit"
            | "model.projection_hidden"
            | "train.minutes"
    )
}

fn unknown_key(section: &toml::Table, key: &str, prefix: &str) -> ConfigError {
    let mut known: Vec<String> = section.keys().cloned().collect();
    let optional: Vec<String> = [
        "data.path",
        "data.image_size",
        "data.limit",
        "model.projection_hidden",
    ]
    .iter()
    .filter_map(|k| k.strip_prefix(&format!("{prefix}.")).map(String::from))
    .filter(|k| !known.contains(k))
    .collect();
    known.extend(optional);
    known.sort();
    ConfigError::UnknownKey {
        key: key.into(),
        section: if prefix.is_empty() {
            "top level".into()
        } else {
            prefix.into()
        },
        known: known.join(", "),
    }
}

/// Applies one `section.key=value` override; the value is read as TOML, else as a string.
fn apply_override(table: &mut toml::Table, text: &str) -> Result<(), ConfigError> {
    let (key, raw) = text
        .split_once('=')
        .ok_or_else(|| ConfigError::BadOverride(text.into()))?;
    let key = key.trim();
    let (section, field) = key
        .split_once('.')
        .ok_or_else(|| ConfigError::BadOverride(text.into()))?;
    let value = toml::from_str::<toml::Table>(&format!("v = {raw}"))
        .ok()
        .and_then(|mut t| t.remove("v"))
        .unwrap_or_else(|| toml::Value::String(raw.trim().to_string()));
    let mut src = toml::Table::new();
    let mut inner = toml::Table::new();
    inner.insert(field.to_string(), value);
    src.insert(section.to_string(), toml::Value::Table(inner));
    if !table.contains_key(section) {
        return Err(unknown_key(table, key, ""));
    }
    merge(table, src, "")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_round_trip() {
        let c = TrainConfig::load(None, &[]).unwrap();
        assert_eq!(c, TrainConfig::default());
        let back: TrainConfig = toml::from_str(&c.to_toml()).unwrap();
        assert_eq!(back, c);
    }

    #[test]
    fn file_then_overrides() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("c.toml");
        std::fs::write(
            &f,
            "[optim]\nlr = 0.5\n[train]\nepochs = 3\n[data]\npath = \"/x\"\n",
        )
        .unwrap();
        let c = TrainConfig::load(
            Some(&f),
            &["train.epochs=7".into(), "model.stem=imagenet".into()],
        )
        .unwrap();
        assert_eq!(c.optim.lr, 0.5);
        assert_eq!(c.train.epochs, 7);
        assert_eq!(c.model.stem, Stem::Imagenet);
        assert_eq!(c.data.path, Some(PathBuf::from("/x")));
    }

    #[test]
    fn unknown_keys_are_errors_naming_the_key() {
        let e = TrainConfig::load(None, &["optim.learning_rate=0.1".into()])
            .unwrap_err()
            .to_string();
        assert!(e.contains("optim.learning_rate") && e.contains("lr"), "{e}");
        let e = TrainConfig::load(None, &["nope.x=1".into()])
            .unwrap_err()
            .to_string();
        assert!(e.contains("nope.x"), "{e}");
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("c.toml");
        std::fs::write(&f, "[train]\nepoch = 3\n").unwrap();
        let e = TrainConfig::load(Some(&f), &[]).unwrap_err().to_string();
        assert!(e.contains("train.epoch"), "{e}");
        assert!(matches!(
            TrainConfig::load(None, &["lr".into()]),
            Err(ConfigError::BadOverride(_))
        ));
    }

    #[test]
    fn bad_values_are_named() {
        for (o, word) in [
            ("method.temperature=0", "temperature"),
            ("optim.lr=-1", "optim.lr"),
            ("train.batch_size=1", "batch_size"),
            ("model.depth=19", "19"),
            ("train.epochs=\"ten\"", "epochs"),
        ] {
            let e = TrainConfig::load(None, &[o.into()])
                .unwrap_err()
                .to_string();
            assert!(e.contains(word), "{o}: {e}");
        }
    }
}
