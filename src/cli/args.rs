//! Argument groups shared by the subcommands, declared once and flattened into each: the
//! settings of a run ([`ConfigArgs`]), the image loading flags ([`LoadingArgs`]); and the
//! parsers of numeric flags.

use clap::Args;
use selfsup::config::TrainConfig;
use std::path::PathBuf;

/// Settings shared by every command: a TOML file and overrides. Flags are overrides too.
#[derive(Args, Clone, Default)]
pub struct ConfigArgs {
    /// Named settings measured together, under the config file and the flags: fast-cpu (a
    /// good encoder fast on a few CPU cores; the guide (docs/src), "A good encoder fast").
    #[arg(long, value_parser = clap::builder::PossibleValuesParser::new(selfsup::config::presets::names()))]
    pub preset: Option<String>,
    /// TOML config file (sections data, model, method, optim, train, eval). Unknown keys are errors.
    #[arg(long, short)]
    pub config: Option<PathBuf>,
    /// Image folder (class sub-folders, or train/ and test/), IDX folder (Fashion-MNIST) or CIFAR
    /// binary folder. Default: built-in synthetic shapes.
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// Run folder for checkpoint, config, metrics and the exported encoder [train.out_dir].
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Passes over the training images [train.epochs].
    #[arg(allow_negative_numbers = true, value_parser = whole_number::<usize>, long)]
    pub epochs: Option<usize>,
    /// Wall-clock training budget in minutes; schedules fit the steps that fit, --epochs caps
    /// them [train.minutes].
    #[arg(long, allow_negative_numbers = true, value_parser = finite_number)]
    pub minutes: Option<f64>,
    /// Images per step; each gives two views [train.batch_size].
    #[arg(allow_negative_numbers = true, value_parser = whole_number::<usize>, long)]
    pub batch_size: Option<usize>,
    /// Exact large batches in bounded memory: images per forward pass, the loss and gradients
    /// still the whole batch's [train.micro_batch].
    #[arg(allow_negative_numbers = true, value_parser = whole_number::<usize>, long)]
    pub micro_batch: Option<usize>,
    /// Peak learning rate; unset: the method's own [optim.lr].
    #[arg(long, allow_negative_numbers = true, value_parser = finite_number)]
    pub lr: Option<f64>,
    /// The optimiser; unset: the method's own [optim.name].
    #[arg(long, value_enum)]
    pub optimizer: Option<selfsup::optim::OptimizerName>,
    /// Temperature τ of the method's contrastive loss [method.<name>.temperature].
    #[arg(long, allow_negative_numbers = true, value_parser = finite_number)]
    pub temperature: Option<f64>,
    /// Method; its settings are [method.<name>.*] (`selfsup config --method <name>` lists them)
    /// [method.name].
    #[arg(long, value_parser = clap::builder::PossibleValuesParser::new(selfsup::method::registry::names()))]
    pub method: Option<String>,
    /// Two-view loss of simclr (an unknown name lists the choices) [method.simclr.loss].
    #[arg(long)]
    pub loss: Option<String>,
    /// The teacher of --method distill: a TorchScript encoder file (made absolute)
    /// [method.distill.teacher].
    #[arg(long, value_name = "FILE")]
    pub teacher: Option<PathBuf>,
    /// Multi-crop: small views per image besides the two large ones, for the methods that take
    /// them [data.small_crops].
    #[arg(allow_negative_numbers = true, value_parser = whole_number::<usize>, long)]
    pub small_crops: Option<usize>,
    /// Encoder: resnet18, resnet34, resnet50, vit_tiny or vit_small; unset: the ResNet of
    /// --depth [model.backbone].
    #[arg(long, value_enum)]
    pub backbone: Option<selfsup::backbone::BackboneName>,
    /// ViT patch side in pixels; the crop size must be a multiple [model.patch_size].
    #[arg(allow_negative_numbers = true, value_parser = whole_number::<i64>, long)]
    pub patch_size: Option<i64>,
    /// ResNet depth: 18, 34 or 50 [model.depth].
    #[arg(allow_negative_numbers = true, value_parser = whole_number::<usize>, long)]
    pub depth: Option<usize>,
    /// ResNet channel multiplier, 1.0 = 64-128-256-512 [model.width].
    #[arg(long, allow_negative_numbers = true, value_parser = finite_number)]
    pub width: Option<f64>,
    /// ResNet stem: cifar (3x3, for ~32 px) or imagenet (7x7 + max-pool) [model.stem].
    #[arg(long)]
    pub stem: Option<String>,
    /// Training resolution: side of the square crops the network sees, whatever the images'
    /// sizes; default 32 (cifar stem) or 96 (imagenet stem), or the images' own side when
    /// they all share a smaller one [model.crop_size].
    #[arg(allow_negative_numbers = true, value_parser = whole_number::<usize>, long)]
    pub crop_size: Option<usize>,
    /// Resize every image to this square size when loading, not keeping its aspect ratio
    /// (rarely needed: images of any sizes train as they are) [data.image_size].
    #[arg(allow_negative_numbers = true, value_parser = whole_number::<usize>, long)]
    pub image_size: Option<usize>,
    /// Folder of the decoded-image cache (image folders are decoded once, then memory-mapped)
    /// [data.cache]; default $SELFSUP_CACHE, $XDG_CACHE_HOME/selfsup, ~/.cache/selfsup, or
    /// without HOME $TMPDIR/selfsup-cache.
    #[arg(long, value_name = "DIR")]
    pub cache: Option<PathBuf>,
    /// Decode image folders into memory at every load instead of using the cache [data.no_cache].
    #[arg(long)]
    pub no_cache: bool,
    /// Use at most this many images per split (quick runs) [data.limit].
    #[arg(allow_negative_numbers = true, value_parser = whole_number::<usize>, long)]
    pub limit: Option<usize>,
    /// Skip unreadable image files (they are counted and listed) instead of stopping [data.skip_bad].
    #[arg(long)]
    pub skip_bad: bool,
    /// Seed of initialisation, data order and augmentation [train.seed].
    #[arg(allow_negative_numbers = true, value_parser = whole_number::<u64>, long)]
    pub seed: Option<u64>,
    /// CPU threads, 0 = all cores [train.threads].
    #[arg(allow_negative_numbers = true, value_parser = whole_number::<usize>, long)]
    pub threads: Option<usize>,
    /// auto (a GPU when libtorch sees one, else the CPU), cpu, cuda or cuda:N [train.device].
    #[arg(long)]
    pub device: Option<String>,
    /// auto (bf16 on a GPU that has it, else fp32), fp32, bf16 or fp16: the encoder's and
    /// heads' arithmetic [train.precision].
    #[arg(long)]
    pub precision: Option<String>,
    /// Any other setting as section.key=value, e.g. --set optim.weight_decay=1e-4 (repeatable).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub set: Vec<String>,
}

impl ConfigArgs {
    /// The config file, then the flags, then --set, as `section.key=value` overrides.
    pub fn load(&self) -> anyhow::Result<TrainConfig> {
        self.load_onto(TrainConfig::default())
    }

    /// Like [`ConfigArgs::load`], on top of `start` instead of the defaults.
    pub fn load_onto(&self, start: TrainConfig) -> anyhow::Result<TrainConfig> {
        let start = match &self.preset {
            Some(name) => {
                let preset =
                    selfsup::config::presets::settings(name).map_err(anyhow::Error::msg)?;
                TrainConfig::load_onto(start, None, &preset)?
            }
            None => start,
        };
        Ok(TrainConfig::load_onto(
            start,
            self.config.as_deref(),
            &self.overrides(),
        )?)
    }

    /// The flags as `section.key=value` overrides, then --set.
    pub fn overrides(&self) -> Vec<String> {
        let mut o: Vec<String> = Vec::new();
        let quote = |p: &PathBuf| toml::Value::String(p.to_string_lossy().into_owned()).to_string();
        if let Some(p) = &self.data {
            o.push(format!("data.path={}", quote(p)));
        }
        if let Some(p) = &self.out {
            o.push(format!("train.out_dir={}", quote(p)));
        }
        if let Some(p) = &self.cache {
            o.push(format!("data.cache={}", quote(p)));
        }
        if let Some(p) = &self.teacher {
            let absolute = std::fs::canonicalize(p).unwrap_or_else(|_| p.clone());
            o.push(format!("method.teacher={}", quote(&absolute)));
        }
        if self.no_cache {
            o.push("data.no_cache=true".into());
        }
        let mut push = |k: &str, v: Option<String>| {
            if let Some(v) = v {
                o.push(format!("{k}={v}"));
            }
        };
        push("train.epochs", self.epochs.map(|v| v.to_string()));
        push("train.minutes", self.minutes.map(|v| format!("{v:?}")));
        push("train.batch_size", self.batch_size.map(|v| v.to_string()));
        push("train.micro_batch", self.micro_batch.map(|v| v.to_string()));
        push("data.small_crops", self.small_crops.map(|v| v.to_string()));
        push("optim.lr", self.lr.map(|v| format!("{v:?}")));
        push(
            "optim.name",
            self.optimizer
                .map(|v| format!("{:?}", format!("{v:?}").to_lowercase())),
        );
        push(
            "method.temperature",
            self.temperature.map(|v| format!("{v:?}")),
        );
        push(
            "method.name",
            self.method.as_ref().map(|v| format!("{v:?}")),
        );
        push("method.loss", self.loss.as_ref().map(|v| format!("{v:?}")));
        push(
            "model.backbone",
            self.backbone.map(|v| {
                let name = clap::ValueEnum::to_possible_value(&v).expect("named");
                format!("{:?}", name.get_name())
            }),
        );
        push("model.patch_size", self.patch_size.map(|v| v.to_string()));
        push("model.depth", self.depth.map(|v| v.to_string()));
        push("model.width", self.width.map(|v| format!("{v:?}")));
        push("model.stem", self.stem.as_ref().map(|v| format!("{v:?}")));
        push("data.image_size", self.image_size.map(|v| v.to_string()));
        push("model.crop_size", self.crop_size.map(|v| v.to_string()));
        push("data.limit", self.limit.map(|v| v.to_string()));
        push("train.seed", self.seed.map(|v| v.to_string()));
        push("train.threads", self.threads.map(|v| v.to_string()));
        push(
            "train.device",
            self.device.as_ref().map(|v| format!("{v:?}")),
        );
        push(
            "train.precision",
            self.precision.as_ref().map(|v| format!("{v:?}")),
        );
        if self.skip_bad {
            o.push("data.skip_bad=true".into());
        }
        o.extend(self.set.iter().cloned());
        o
    }
}

/// How the commands that read a run's data again load it (eval, embed, report, neighbors):
/// over the run's own settings.
#[derive(Args, Clone)]
pub struct LoadingArgs {
    /// Resize every image to this square size when loading (default: the run's setting).
    #[arg(allow_negative_numbers = true, value_parser = whole_number::<usize>, long)]
    pub image_size: Option<usize>,
    /// Skip unreadable image files (they are counted and listed) instead of stopping.
    #[arg(long)]
    pub skip_bad: bool,
    /// Folder of the decoded-image cache (default: the run's setting).
    #[arg(long, value_name = "DIR")]
    pub cache: Option<PathBuf>,
    /// Decode image folders into memory instead of using the cache.
    #[arg(long)]
    pub no_cache: bool,
    /// auto (a GPU when libtorch sees one, else the CPU), cpu, cuda or cuda:N.
    #[arg(long, default_value = "auto")]
    pub device: String,
}

impl LoadingArgs {
    /// These flags over the run's config `cfg`; sets the run's thread count.
    pub fn apply(&self, cfg: &mut selfsup::config::TrainConfig) -> anyhow::Result<()> {
        selfsup::train::set_threads(cfg.train.threads)?;
        if self.image_size.is_some() {
            cfg.data.image_size = self.image_size;
        }
        cfg.data.skip_bad |= self.skip_bad;
        cfg.data.no_cache |= self.no_cache;
        if self.cache.is_some() {
            cfg.data.cache = self.cache.clone();
        }
        Ok(())
    }
}

/// A flag's number: any finite value (a negative one too; validation then names its range).
/// A whole number flag: `-1` gets "must be a positive whole number", not clap's "unexpected
/// argument" (a leading `-` reads as a flag unless the flag allows negative numbers).
pub(crate) fn whole_number<T: std::str::FromStr>(s: &str) -> Result<T, String> {
    let t = s.trim();
    if t.starts_with('-') && t[1..].parse::<f64>().is_ok() {
        return Err(format!(
            "{t} is negative: it must be a positive whole number"
        ));
    }
    t.parse::<T>()
        .map_err(|_| format!("{s:?} is not a whole number: give one such as 8"))
}

pub(crate) fn finite_number(s: &str) -> Result<f64, String> {
    match s.trim().parse::<f64>() {
        Ok(v) if v.is_finite() => Ok(v),
        Ok(v) => Err(format!("{v} is not a finite number: give a finite number")),
        Err(_) => Err(format!("{s:?} is not a number")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_flag_sets_a_key_the_config_accepts() {
        let all = ConfigArgs {
            data: Some("/d".into()),
            out: Some("/o".into()),
            epochs: Some(3),
            minutes: Some(2.0),
            batch_size: Some(8),
            micro_batch: Some(4),
            lr: Some(0.1),
            optimizer: Some(selfsup::optim::OptimizerName::Lars),
            temperature: Some(0.3),
            method: Some(selfsup::method::registry::default_name().into()),
            loss: Some(selfsup::loss::two_view::NAMES[2].into()),
            small_crops: None,
            depth: Some(34),
            width: Some(0.5),
            stem: Some("imagenet".into()),
            image_size: Some(64),
            limit: Some(10),
            skip_bad: true,
            seed: Some(4),
            threads: Some(1),
            device: Some("cpu".into()),
            ..Default::default()
        };
        let o = all.overrides();
        assert_eq!(o.len(), 20, "{o:?}");
        for one in &o {
            TrainConfig::load(None, std::slice::from_ref(one))
                .unwrap_or_else(|e| panic!("{one}: {e}"));
        }
        let multi_crop = selfsup::method::registry::names_where(|s| s.plan().views.multi_crop)[0];
        let args = ConfigArgs {
            method: Some(multi_crop.into()),
            small_crops: Some(2),
            ..Default::default()
        };
        let cfg = args.load().unwrap();
        assert_eq!(
            (cfg.method.name.as_str(), cfg.data.small_crops),
            (multi_crop, 2)
        );
    }
}
