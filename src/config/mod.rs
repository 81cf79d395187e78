//! One `TrainConfig` nesting the parts' configs. Every default is documented on its field.
//! Sources, later ones winning: the defaults, a TOML file, then `section.key=value` overrides
//! (the CLI's flags are overrides too). Unknown keys are an error, and `validate` checks values
//! once, before any work starts. The config is saved beside every checkpoint.

pub mod eval;
mod load;
pub mod method;
pub mod migrate;
pub mod optim;
pub mod presets;
mod validate;

use crate::backbone::vit::{Pool, PosEmbed};
use crate::backbone::{BackboneConfig, BackboneName, ResNetConfig, Stem, VitConfig};
use crate::error::SettingError;
use crate::head::HeadNorm;
pub use eval::EvalConfig;
use serde::{Deserialize, Serialize};
use std::path::PathBuf;
use thiserror::Error;

pub use method::MethodConfig;
pub use optim::OptimConfig;

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
    /// A setting out of range, unknown or misnamed, as [`SettingError`] says.
    #[error(transparent)]
    Setting(#[from] crate::error::SettingError),
    /// An error in the settings of a config file (a run's own `config.toml` among them).
    #[error("{}{}: {inner}", .path.display(), if *.with_flags { " (with the flags over it)" } else { "" })]
    InFile {
        path: PathBuf,
        with_flags: bool,
        /// Not `source`: the message holds it already, and a source would be printed twice.
        inner: Box<ConfigError>,
    },
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
    /// Resize every image to this square size when loading (the aspect ratio is not kept).
    /// Unset: images keep their own sizes, only shrunk to the stored size (`stored_scale`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub image_size: Option<usize>,
    /// Images are stored (in the cache, or in memory) with their shorter side at most
    /// `stored_scale × crop size`, keeping their aspect ratio; smaller ones are kept as they
    /// are. 1.14 ≈ 256/224, ImageNet's resize-then-crop ratio. Default 1.14.
    pub stored_scale: f64,
    /// Image folders are decoded once into a cache here and memory-mapped from then on
    /// (`data::cache`). Unset: `$SELFSUP_CACHE`, else `$XDG_CACHE_HOME/selfsup`, else
    /// `~/.cache/selfsup`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cache: Option<PathBuf>,
    /// Decode image folders into memory at every load instead of using the cache (`--no-cache`;
    /// for a read-only disk, or data that fits in memory many times over). Default false.
    pub no_cache: bool,
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
    /// Multi-crop, for the methods that take it (`--method` help lists them): small views per
    /// image besides the two large ones. Default 0 (solo-learn's CIFAR recipes; the papers use
    /// 6 on ImageNet).
    pub small_crops: usize,
    /// Side of the small views in pixels; 0: 3/7 of the large side (14 for 32 px). Default 0.
    pub small_crop_size: usize,
    /// Area range `[lo, hi]` of the small crops as a fraction of the image. Default [0.05, 0.14]
    /// (SwAV).
    pub small_crop_scale: (f32, f32),
    /// Progressive resolution (FFCV-SSL): the crop side of every view in the first
    /// `progressive_fraction` of the run's steps; after it, the training resolution
    /// (`model.crop_size`). Cheaper steps early, the full size for the last part and for
    /// evaluation. 0: off. Default 0.
    pub progressive_size: usize,
    /// The fraction of the steps at `progressive_size`. Default 0.75.
    pub progressive_fraction: f64,
}

impl Default for DataConfig {
    fn default() -> Self {
        DataConfig {
            path: None,
            image_size: None,
            stored_scale: 1.14,
            cache: None,
            no_cache: false,
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
            progressive_size: 0,
            progressive_fraction: 0.75,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ModelConfig {
    /// The encoder (`--backbone`): resnet18, resnet34, resnet50, vit_tiny or vit_small.
    /// Unset: the ResNet of `model.depth`. A ResNet name sets the depth (`model.depth` must
    /// then be 18, its default, or agree).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub backbone: Option<BackboneName>,
    /// ResNet depth: 18, 34 or 50. Default 18.
    pub depth: usize,
    /// "cifar" (3×3 stem, no max-pool; for ~32 px images) or "imagenet". Default "cifar".
    pub stem: Stem,
    /// Channel multiplier (1.0 = 64-128-256-512). Default 0.25.
    pub width: f64,
    /// Training resolution: the side of the square views the network sees, whatever the
    /// images' own sizes (`--crop-size`). Unset: `data.image_size` if set; else the stem's
    /// default (32 for cifar, 96 for imagenet), or the images' own side when they all share
    /// one size smaller than that (CIFAR 32, Fashion-MNIST 28). `selfsup pretrain` writes the
    /// size it used into the run's config.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub crop_size: Option<usize>,
    /// Hidden width of the method's heads. Unset: the method's own default, documented where
    /// the method builds its heads (the encoder's output dimension d for the SimCLR-style
    /// projections, 4d for the predictor methods' and the wide projectors).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub projection_hidden: Option<i64>,
    /// Output dimension of the projection head (DINO: its bottleneck). Default 128 (SimCLR).
    pub projection_dim: i64,
    /// Run convolutions in channels-last memory order (faster on CPU). Default true. Networks
    /// that would meet a libtorch heap corruption in that order run in NCHW instead (see
    /// [`ModelConfig::uses_channels_last`]).
    pub channels_last: bool,
    /// ViT patch side in pixels (the crop size must be a multiple). Default 4 (64 tokens at
    /// 32 px, the CIFAR setting of the ViT and MAE literature).
    pub patch_size: i64,
    /// ViT position embeddings: "sincos" (fixed 2-D, MAE's) or "learned". Default "sincos".
    pub pos_embed: PosEmbed,
    /// ViT representation: "cls" (the class token) or "mean" (of the patch tokens). Default
    /// "cls".
    pub pool: Pool,
    /// The normalisation in the heads' MLPs: "batch" (BatchNorm, every method's recipe) or
    /// "layer" (LayerNorm, per image: with a ViT, `train.micro_batch` is then exact). Default
    /// "batch".
    pub head_norm: HeadNorm,
}

impl Default for ModelConfig {
    fn default() -> Self {
        ModelConfig {
            depth: 18,
            stem: Stem::Cifar,
            width: 0.25,
            crop_size: None,
            projection_hidden: None,
            projection_dim: 128,
            channels_last: true,
            backbone: None,
            patch_size: 4,
            pos_embed: PosEmbed::default(),
            pool: Pool::default(),
            head_norm: HeadNorm::default(),
        }
    }
}

impl TrainConfig {
    /// The crop side known before any image is read: `model.crop_size`, else
    /// `data.image_size`, else the stem's default.
    pub fn planned_crop_size(&self) -> usize {
        self.model
            .crop_size
            .or(self.data.image_size)
            .unwrap_or_else(|| self.model.stem.default_crop_size())
    }

    /// The training resolution for these images (see [`ModelConfig::crop_size`]).
    pub fn crop_size(&self, images: &crate::data::ImageStore) -> usize {
        if let Some(c) = self.model.crop_size.or(self.data.image_size) {
            return c;
        }
        let planned = self.planned_crop_size();
        match images.uniform_size() {
            Some((h, w)) => planned.min(h.min(w)),
            None => planned,
        }
    }

    /// The shorter side images are shrunk to when loaded: `stored_scale × planned crop`,
    /// rounded up.
    pub fn stored_side(&self) -> usize {
        (self.data.stored_scale * self.planned_crop_size() as f64).ceil() as usize
    }
}

impl ModelConfig {
    /// The memory order actually used: channels-last when asked for and safe for this network
    /// ([`ResNetConfig::channels_last_is_safe`]), NCHW otherwise. Read this, not the field.
    pub fn uses_channels_last(&self) -> bool {
        self.channels_last && !self.is_vit() && self.resnet().channels_last_is_safe()
    }

    /// The encoder is a ViT.
    pub fn is_vit(&self) -> bool {
        matches!(
            self.backbone,
            Some(BackboneName::VitTiny | BackboneName::VitSmall)
        )
    }

    /// The ResNet of `model.depth` (or the depth `model.backbone` names), stem and width.
    pub fn resnet(&self) -> ResNetConfig {
        ResNetConfig {
            depth: self
                .backbone
                .and_then(BackboneName::resnet_depth)
                .unwrap_or(self.depth),
            stem: self.stem,
            width: self.width,
        }
    }

    /// The encoder's architecture for square inputs of side `input_side`.
    pub fn backbone_config(&self, input_side: usize) -> BackboneConfig {
        let vit = |mut c: VitConfig| {
            c.pos_embed = self.pos_embed;
            c.pool = self.pool;
            BackboneConfig::Vit(c)
        };
        let (p, s) = (self.patch_size, input_side as i64);
        match self.backbone {
            Some(BackboneName::VitTiny) => vit(VitConfig::tiny(p, s)),
            Some(BackboneName::VitSmall) => vit(VitConfig::small(p, s)),
            _ => BackboneConfig::ResNet(self.resnet()),
        }
    }

    /// Checks the encoder's settings; the message names the key.
    pub fn validate_backbone(&self, input_side: usize) -> Result<(), SettingError> {
        if let Some(d) = self.backbone.and_then(BackboneName::resnet_depth) {
            if self.depth != 18 && self.depth != d {
                return Err(format!(
                    "model.backbone is resnet{d} but model.depth is {}: give one of them",
                    self.depth
                )
                .into());
            }
        }
        self.backbone_config(input_side).validate()
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
    /// Exact large batches in bounded memory (`--micro-batch`): the batch's views go through
    /// the networks this many images at a time, twice (gradient caching, train/grad_cache.rs),
    /// so activation memory is that of a batch of this size while the loss, its negatives and
    /// its gradients are the whole batch's (BatchNorm's statistics are per micro-batch). For
    /// the methods whose step splits into per-image embeddings and a batch loss. Unset: the
    /// whole batch at once.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub micro_batch: Option<usize>,
    /// Seed of the model initialisation, data order and augmentations. Default 0.
    pub seed: u64,
    /// CPU threads for libtorch and augmentation. 0: all cores. Default 0.
    pub threads: usize,
    /// Where the model trains: `auto` (the first CUDA device libtorch sees, else the CPU; one
    /// GPU per MPI rank), `cpu`, `cuda` or `cuda:N`. Default "auto". See src/device.rs.
    pub device: String,
    /// The precision of the encoder's and heads' forward and backward: `auto` (bf16 on a GPU
    /// that computes it natively, fp32 elsewhere), `fp32`, `bf16` or `fp16` (with dynamic loss
    /// scaling). Weights, optimiser state and losses stay fp32. A run records the precision it
    /// resolved to and resumes in it. Default "auto". See src/precision.rs.
    pub precision: String,
    /// Data-parallel jobs (MPI): seconds a rank waits in one collective for the others before
    /// it ends the job, naming itself (a rank died or hangs). Counts from the first step, so
    /// data loading and the time-budget calibration are not limited. Default 300.
    pub collective_timeout: f64,
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
    /// Minutes of training at which the run also evaluates kNN top-1 on the labeled test split
    /// (e.g. `[2, 5, 10, 20]`): a time-to-accuracy curve of one run, logged to metrics.jsonl
    /// with `train_minutes`. The training clock (and a time budget's) stops meanwhile.
    /// Default: none.
    pub eval_at_minutes: Vec<f64>,
}

impl Default for LoopConfig {
    fn default() -> Self {
        LoopConfig {
            epochs: 10,
            minutes: None,
            batch_size: 256,
            micro_batch: None,
            seed: 0,
            threads: 0,
            device: "auto".into(),
            precision: "auto".into(),
            collective_timeout: 300.0,
            out_dir: PathBuf::from("runs/simclr"),
            checkpoint_every: 100,
            log_every: 10,
            prefetch: 2,
            progress_seconds: 30.0,
            eval_at_minutes: Vec::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::optim::OptimizerName;

    #[test]
    fn defaults_are_valid_and_round_trip() {
        let c = TrainConfig::load(None, &[]).unwrap();
        let mut want = TrainConfig::default();
        want.optim.lr = Some(OptimConfig::DEFAULT_LR);
        want.optim.name = Some(OptimizerName::Sgd);
        want.optim.weight_decay = Some(5e-4);
        assert_eq!(c, want);
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
        assert_eq!(c.optim.lr, Some(0.5));
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
    fn method_sections_by_file_flag_or_flat_key_and_per_method_defaults() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("c.toml");
        std::fs::write(
            &f,
            "[method]\nname = \"moco\"\n[method.moco]\nqueue_size = 64\n",
        )
        .unwrap();
        let c = TrainConfig::load(Some(&f), &["method.moco.temperature=0.3".into()]).unwrap();
        use crate::method::{moco::MoCoConfig, MethodSection};
        assert_eq!(c.method.name, MoCoConfig::NAME);
        assert_eq!(c.method.settings["queue_size"].as_integer(), Some(64));
        assert_eq!(c.method.settings["temperature"].as_float(), Some(0.3));
        // the flat key (what --temperature sets) is the chosen method's
        let c = TrainConfig::load(Some(&f), &["method.temperature=0.4".into()]).unwrap();
        assert_eq!(c.method.settings["temperature"].as_float(), Some(0.4));
        // saved and reloaded, and compared key by key
        let back = TrainConfig::load(None, &[]).unwrap();
        let again: TrainConfig = toml::from_str(&c.to_toml()).unwrap();
        assert_eq!(again, c);
        assert!(c.flat_settings().contains_key("method.moco.queue_size"));
        assert_ne!(back.flat_settings(), c.flat_settings());
        // a method's own learning rate when optim.lr is not given, the flag's when it is
        let s = TrainConfig::load(None, &["method.name=\"simsiam\"".into()]).unwrap();
        assert_eq!(s.optim.lr, Some(crate::method::simsiam::SIMSIAM_LR));
        let s = TrainConfig::load(None, &["method.name=simsiam".into(), "optim.lr=0.2".into()])
            .unwrap();
        assert_eq!(s.optim.lr, Some(0.2));
        for (o, word) in [
            ("method.byol.queue_size=3", "method.byol.queue_size"),
            ("method.queue_size=3", "a setting of moco"),
            ("method.name=nope", "simclr, moco"),
            ("method.moco.queue_size=3", "method.name is \"simclr\""),
            ("data.small_crops=2", "multi-crop works with swav, dino"),
        ] {
            let e = TrainConfig::load(None, &[o.into()])
                .unwrap_err()
                .to_string();
            assert!(e.contains(word), "{o}: {e}");
        }
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

    #[test]
    fn a_method_setting_out_of_range_is_a_typed_error_with_its_key() {
        let load = |o: &str| TrainConfig::load(None, &[o.into()]).unwrap_err();
        let moco = [
            "method.name=\"moco\"".into(),
            "method.moco.temperature=0".into(),
        ];
        let e = TrainConfig::load(None, &moco).unwrap_err();
        assert!(
            matches!(&e, ConfigError::Setting(SettingError::OutOfRange { key, value, .. })
                if key == "method.moco.temperature" && value == "0"),
            "{e:?}"
        );
        assert_eq!(
            e.to_string(),
            "method.moco.temperature is 0: it must be > 0"
        );
        let e = load("method.name=\"swav2\"");
        assert!(
            matches!(&e, ConfigError::Setting(SettingError::UnknownName { name, .. }) if name == "swav2"),
            "{e:?}"
        );
        let e = load("model.width=9");
        assert!(
            matches!(&e, ConfigError::Setting(s) if s.key() == Some("model.width")),
            "{e:?}"
        );
    }
}
