//! The `selfsup` command line: pretrain, eval, embed; with no subcommand, the built-in demo.

use clap::{Args, Parser, Subcommand};
use selfsup::config::TrainConfig;
use selfsup::eval::EvalKind;
use selfsup::train;
use std::path::PathBuf;
use std::process::ExitCode;

mod commands;
mod eval_commands;
mod export_command;
mod inspect;
mod make_data;

/// Self-supervised representation learning on images (SimCLR, MoCo, BYOL, DINO, …), on libtorch.
///
/// With no subcommand: pretrains a small ResNet on built-in synthetic shapes (no download) and
/// prints the kNN accuracy of the encoder before and after pretraining.
#[derive(Parser)]
#[command(name = "selfsup", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Pretrain an encoder on unlabeled images, then report kNN accuracy on the test split.
    Pretrain(PretrainArgs),
    /// Score a run's encoder by weighted kNN and/or a linear probe on a labeled split.
    Eval(EvalArgs),
    /// Fine-tune a run's encoder with a linear classifier end to end on a labeled split; report
    /// test top-1 (and with --random-init, the same from random init).
    Finetune(FinetuneArgs),
    /// Write a run's encoder features of every image as .npy and .csv (lightly's layout:
    /// filenames, embedding_0…, labels).
    Embed(EmbedArgs),
    /// Write RUN/report/index.html: training curves, a 2-D map of the embeddings, nearest-neighbour
    /// grids, collapse diagnostics, config and figures (and each figure as a PNG).
    Report(inspect::ReportArgs),
    /// The images of --data most similar to a query image (or folder), with a grid picture;
    /// near-duplicate pairs with --duplicates.
    Neighbors(inspect::NeighborsArgs),
    /// Write a run's encoder for other tools: safetensors under torchvision's names, or TorchScript.
    Export(export_command::ExportArgs),
    /// Write built-in or converted data sets as image folders: captioned-shapes (for --method
    /// clip), moving-shapes (filmstrips for --method temporal_order) or filmstrips (from your
    /// folders of frames).
    MakeData(make_data::MakeDataArgs),
    /// CPC on generated 1-D signals against the autoregressive next-value predictor, the
    /// untrained network and the raw samples: linear-probe top-1 on the hidden class.
    Cpc(CpcArgs),
    /// The built-in demo (the default): synthetic shapes, kNN before and after pretraining.
    Demo(DemoArgs),
    /// Throughput: training-step and forward views/s, augmentation and end-to-end images/s, peak RSS.
    Bench(BenchArgs),
    /// Check data-parallel training: under `mpirun -np W`, the loss and summed gradients of W
    /// ranks against one process, for NT-Xent, InfoNCE with a queue and Barlow Twins.
    DistCheck(DistCheckArgs),
    /// Print the effective config (defaults, file, flags) as TOML, the chosen method's settings
    /// with it, and exit.
    Config(ConfigArgs),
}

/// Settings shared by every command: a TOML file and overrides. Flags are overrides too.
#[derive(Args, Clone, Default)]
pub struct ConfigArgs {
    /// Named settings measured together, under the config file and the flags: fast-cpu (a
    /// good encoder fast on a few CPU cores; README "A good encoder fast").
    #[arg(long, value_parser = clap::builder::PossibleValuesParser::new(selfsup::config::presets::names()))]
    preset: Option<String>,
    /// TOML config file (sections data, model, method, optim, train, eval). Unknown keys are errors.
    #[arg(long, short)]
    config: Option<PathBuf>,
    /// Image folder (class sub-folders, or train/ and test/), IDX folder (Fashion-MNIST) or CIFAR
    /// binary folder. Default: built-in synthetic shapes.
    #[arg(long)]
    data: Option<PathBuf>,
    /// Run folder for checkpoint, config, metrics and the exported encoder [train.out_dir].
    #[arg(long)]
    out: Option<PathBuf>,
    /// Passes over the training images [train.epochs].
    #[arg(allow_negative_numbers = true, value_parser = whole_number::<usize>, long)]
    epochs: Option<usize>,
    /// Wall-clock training budget in minutes; schedules fit the steps that fit, --epochs caps
    /// them [train.minutes].
    #[arg(long, allow_negative_numbers = true, value_parser = finite_number)]
    minutes: Option<f64>,
    /// Images per step; each gives two views [train.batch_size].
    #[arg(allow_negative_numbers = true, value_parser = whole_number::<usize>, long)]
    batch_size: Option<usize>,
    /// Peak SGD learning rate; unset: the method's own [optim.lr].
    #[arg(long, allow_negative_numbers = true, value_parser = finite_number)]
    lr: Option<f64>,
    /// Temperature τ of the method's contrastive loss [method.<name>.temperature].
    #[arg(long, allow_negative_numbers = true, value_parser = finite_number)]
    temperature: Option<f64>,
    /// Method; its settings are [method.<name>.*] (`selfsup config --method <name>` lists them)
    /// [method.name].
    #[arg(long, value_parser = clap::builder::PossibleValuesParser::new(selfsup::method::registry::names()))]
    method: Option<String>,
    /// Two-view loss of simclr (an unknown name lists the choices) [method.simclr.loss].
    #[arg(long)]
    loss: Option<String>,
    /// Multi-crop: small views per image besides the two large ones, for the methods that take
    /// them [data.small_crops].
    #[arg(allow_negative_numbers = true, value_parser = whole_number::<usize>, long)]
    small_crops: Option<usize>,
    /// Encoder: resnet18, resnet34, resnet50, vit_tiny or vit_small; unset: the ResNet of
    /// --depth [model.backbone].
    #[arg(long, value_enum)]
    backbone: Option<selfsup::backbone::BackboneName>,
    /// ViT patch side in pixels; the crop size must be a multiple [model.patch_size].
    #[arg(allow_negative_numbers = true, value_parser = whole_number::<i64>, long)]
    patch_size: Option<i64>,
    /// ResNet depth: 18, 34 or 50 [model.depth].
    #[arg(allow_negative_numbers = true, value_parser = whole_number::<usize>, long)]
    depth: Option<usize>,
    /// ResNet channel multiplier, 1.0 = 64-128-256-512 [model.width].
    #[arg(long, allow_negative_numbers = true, value_parser = finite_number)]
    width: Option<f64>,
    /// ResNet stem: cifar (3x3, for ~32 px) or imagenet (7x7 + max-pool) [model.stem].
    #[arg(long)]
    stem: Option<String>,
    /// Training resolution: side of the square crops the network sees, whatever the images'
    /// sizes; default 32 (cifar stem) or 96 (imagenet stem), or the images' own side when
    /// they all share a smaller one [model.crop_size].
    #[arg(allow_negative_numbers = true, value_parser = whole_number::<usize>, long)]
    crop_size: Option<usize>,
    /// Resize every image to this square size when loading, not keeping its aspect ratio
    /// (rarely needed: images of any sizes train as they are) [data.image_size].
    #[arg(allow_negative_numbers = true, value_parser = whole_number::<usize>, long)]
    image_size: Option<usize>,
    /// Folder of the decoded-image cache (image folders are decoded once, then memory-mapped)
    /// [data.cache]; default $SELFSUP_CACHE, $XDG_CACHE_HOME/selfsup, ~/.cache/selfsup, or
    /// without HOME $TMPDIR/selfsup-cache.
    #[arg(long, value_name = "DIR")]
    cache: Option<PathBuf>,
    /// Decode image folders into memory at every load instead of using the cache [data.no_cache].
    #[arg(long)]
    no_cache: bool,
    /// Use at most this many images per split (quick runs) [data.limit].
    #[arg(allow_negative_numbers = true, value_parser = whole_number::<usize>, long)]
    limit: Option<usize>,
    /// Skip unreadable image files (they are counted and listed) instead of stopping [data.skip_bad].
    #[arg(long)]
    skip_bad: bool,
    /// Seed of initialisation, data order and augmentation [train.seed].
    #[arg(allow_negative_numbers = true, value_parser = whole_number::<u64>, long)]
    seed: Option<u64>,
    /// CPU threads, 0 = all cores [train.threads].
    #[arg(allow_negative_numbers = true, value_parser = whole_number::<usize>, long)]
    threads: Option<usize>,
    /// auto (a GPU when libtorch sees one, else the CPU), cpu, cuda or cuda:N [train.device].
    #[arg(long)]
    device: Option<String>,
    /// Any other setting as section.key=value, e.g. --set optim.weight_decay=1e-4 (repeatable).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    set: Vec<String>,
}

impl ConfigArgs {
    /// The config file, then the flags, then --set, as `section.key=value` overrides.
    fn load(&self) -> anyhow::Result<TrainConfig> {
        self.load_onto(TrainConfig::default())
    }

    /// Like [`ConfigArgs::load`], on top of `start` instead of the defaults.
    fn load_onto(&self, start: TrainConfig) -> anyhow::Result<TrainConfig> {
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
    fn overrides(&self) -> Vec<String> {
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
        push("data.small_crops", self.small_crops.map(|v| v.to_string()));
        push("optim.lr", self.lr.map(|v| format!("{v:?}")));
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
        if self.skip_bad {
            o.push("data.skip_bad=true".into());
        }
        o.extend(self.set.iter().cloned());
        o
    }
}

#[derive(Args)]
pub struct PretrainArgs {
    #[command(flatten)]
    config: ConfigArgs,
    /// Continue the run in --out from its last checkpoint.
    #[arg(long)]
    resume: bool,
    /// Skip the kNN evaluation after pretraining.
    #[arg(long)]
    no_eval: bool,
    /// Also train a linear probe after pretraining.
    #[arg(long)]
    linear: bool,
}

#[derive(Args, Clone, Default)]
pub struct DemoArgs {
    #[command(flatten)]
    config: ConfigArgs,
    /// Fail (exit code 1) when the kNN top-1 gain over the random-init encoder is below this
    /// many percentage points; CI guards the demo with it.
    #[arg(long, value_name = "POINTS")]
    min_gain: Option<f64>,
}

#[derive(Args)]
pub struct EvalArgs {
    /// Run folder written by `selfsup pretrain` (its config.toml and checkpoint.safetensors).
    #[arg(long)]
    run: PathBuf,
    /// Labeled data to evaluate on. Default: the run's own data.
    #[arg(long)]
    data: Option<PathBuf>,
    /// Which evaluation.
    #[arg(long, value_enum, default_value_t = EvalKind::Both)]
    kind: EvalKind,
    /// Before `--kind` existed, `eval --method knn|linear|both` chose it: refused with a hint.
    #[arg(long, hide = true)]
    method: Option<String>,
    /// Evaluate a randomly initialised encoder of the same architecture (the baseline).
    #[arg(long)]
    random_init: bool,
    /// The stage whose output (global-average-pooled) is evaluated; several, comma-separated,
    /// are evaluated one after another on one load of the data (`--layer layer1,layer2,layer3,layer4`).
    #[arg(long, value_enum, value_delimiter = ',', default_value = "layer4")]
    layer: Vec<selfsup::backbone::Layer>,
    /// Use at most this many images per split.
    #[arg(allow_negative_numbers = true, value_parser = whole_number::<usize>, long)]
    limit: Option<usize>,
    /// Resize every image to this square size when loading (default: the run's setting).
    #[arg(allow_negative_numbers = true, value_parser = whole_number::<usize>, long)]
    image_size: Option<usize>,
    /// Skip unreadable image files (they are counted and listed) instead of stopping.
    #[arg(long)]
    skip_bad: bool,
    /// Folder of the decoded-image cache (default: the run's setting).
    #[arg(long, value_name = "DIR")]
    cache: Option<PathBuf>,
    /// Decode image folders into memory instead of using the cache.
    #[arg(long)]
    no_cache: bool,
    /// auto (a GPU when libtorch sees one, else the CPU), cpu, cuda or cuda:N.
    #[arg(long, default_value = "auto")]
    device: String,
    /// Zero-shot classification with a `clip` run (no labeled training image used): each class
    /// name put into every template, embedded by the text tower, averaged; each test image
    /// takes the nearest class. With captions in the test split, also image↔text retrieval
    /// recall@1/5.
    #[arg(long)]
    zero_shot: bool,
    /// --zero-shot: the classes, comma-separated test class folder names (`_` reads as a space
    /// in the prompts). Default: every class folder of the test split.
    #[arg(long, value_delimiter = ',', requires = "zero_shot")]
    classes: Vec<String>,
    /// --zero-shot: prompt templates, comma-separated, each with {} where the class name goes.
    /// Default: "a photo of a {}.".
    #[arg(long, value_delimiter = ',', requires = "zero_shot")]
    templates: Vec<String>,
}

#[derive(Args)]
pub struct CpcArgs {
    /// Adam steps of each objective (batch 64 sequences).
    #[arg(long, default_value_t = 600, value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    steps: u64,
    /// Seeds (signal sets and initialisations 0..SEEDS), for the spread.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u64).range(1..=100))]
    seeds: u64,
}

#[derive(Args)]
pub struct FinetuneArgs {
    /// Run folder written by `selfsup pretrain`.
    #[arg(long)]
    run: PathBuf,
    /// Labeled data (train/ and test/ class folders, IDX or CIFAR files). Default: the run's own.
    #[arg(long)]
    data: Option<PathBuf>,
    /// Passes over the labeled training split (fractions allowed, e.g. 0.5).
    #[arg(long, default_value_t = 1.0, allow_negative_numbers = true, value_parser = finite_number)]
    epochs: f64,
    /// Images per step.
    #[arg(allow_negative_numbers = true, value_parser = whole_number::<usize>, long, default_value_t = 128)]
    batch_size: usize,
    /// Peak AdamW learning rate (warm-up 10 %, then cosine to 0).
    #[arg(long, default_value_t = 1e-3, allow_negative_numbers = true, value_parser = finite_number)]
    lr: f64,
    /// AdamW weight decay (not on norms, biases, tokens).
    #[arg(long, default_value_t = 0.05, allow_negative_numbers = true, value_parser = finite_number)]
    weight_decay: f64,
    /// Fine-tune a randomly initialised encoder of the same architecture (the baseline).
    #[arg(long)]
    random_init: bool,
    /// Use at most this many images per split.
    #[arg(allow_negative_numbers = true, value_parser = whole_number::<usize>, long)]
    limit: Option<usize>,
    /// Folder of the decoded-image cache (default: the run's setting).
    #[arg(long, value_name = "DIR")]
    cache: Option<PathBuf>,
    /// auto (a GPU when libtorch sees one, else the CPU), cpu, cuda or cuda:N.
    #[arg(long, default_value = "auto")]
    device: String,
}

#[derive(Args)]
pub struct EmbedArgs {
    /// Run folder written by `selfsup pretrain`.
    #[arg(long)]
    run: PathBuf,
    /// Images to embed (any supported format; all splits are embedded, train first).
    #[arg(long)]
    data: PathBuf,
    /// Output .npy file ([N, D] float32); a .csv with the file names and features is written beside it.
    #[arg(long)]
    out: PathBuf,
    /// Resize every image to this square size when loading (default: the run's setting).
    #[arg(allow_negative_numbers = true, value_parser = whole_number::<usize>, long)]
    image_size: Option<usize>,
    /// Skip unreadable image files (they are counted and listed) instead of stopping.
    #[arg(long)]
    skip_bad: bool,
    /// Folder of the decoded-image cache (default: the run's setting).
    #[arg(long, value_name = "DIR")]
    cache: Option<PathBuf>,
    /// Decode image folders into memory instead of using the cache.
    #[arg(long)]
    no_cache: bool,
    /// auto (a GPU when libtorch sees one, else the CPU), cpu, cuda or cuda:N.
    #[arg(long, default_value = "auto")]
    device: String,
}

#[derive(Args)]
pub struct DistCheckArgs {
    /// Image pairs of the global batch (a multiple of the ranks).
    #[arg(long, default_value_t = 16)]
    images: i64,
    /// Largest difference accepted (loss, every gradient element, the queue).
    #[arg(long, default_value_t = 1e-5)]
    tolerance: f64,
}

#[derive(Args)]
pub struct BenchArgs {
    #[command(flatten)]
    config: ConfigArgs,
    /// Timed training steps (after the warm-up steps); the median is reported.
    #[arg(allow_negative_numbers = true, value_parser = whole_number::<usize>, long, default_value_t = 6)]
    steps: usize,
    /// Untimed warm-up steps (the allocator's heap grows over the first few).
    #[arg(allow_negative_numbers = true, value_parser = whole_number::<usize>, long, default_value_t = 5)]
    warm: usize,
    /// Timed steps of the end-to-end loop (loader + step) on the data; 0 skips it.
    #[arg(allow_negative_numbers = true, value_parser = whole_number::<usize>, long, default_value_t = 10)]
    e2e_steps: usize,
}

fn main() -> ExitCode {
    selfsup::malloc::keep_tensors_in_the_heap();
    let cli = Cli::parse();
    // joins the MPI job when mpirun (or srun) started this process; finalises MPI on return
    let _mpi = match selfsup::dist::init() {
        Ok(guard) => guard,
        Err(e) => {
            eprintln!("error: {e:#}");
            return ExitCode::FAILURE;
        }
    };
    let result = match cli.command.unwrap_or(Command::Demo(DemoArgs::default())) {
        Command::Pretrain(a) => commands::pretrain(&a),
        Command::Eval(a) => eval_commands::eval(&a),
        Command::Embed(a) => commands::embed(&a),
        Command::Report(a) => inspect::report(&a),
        Command::Neighbors(a) => inspect::neighbors(&a),
        Command::Export(a) => export_command::export(&a),
        Command::MakeData(a) => make_data::make_data(&a),
        Command::Cpc(a) => {
            let steps = a.steps as usize;
            selfsup::sequence::experiment::compare(steps, a.seeds, &mut |l| eprintln!("{l}"))
                .map(|r| print!("{}", selfsup::sequence::experiment::table(&r, steps)))
        }
        Command::Finetune(a) => eval_commands::finetune(&a),
        Command::Demo(a) => commands::demo(&a),
        Command::Bench(a) => commands::bench(&a),
        Command::DistCheck(a) => commands::dist_check(&a),
        Command::Config(a) => a.load().map(|cfg| print!("{}", cfg.to_toml())),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) if e.is::<train::interrupt::Interrupted>() => {
            if selfsup::dist::is_root() {
                eprintln!("{e}"); // every rank stopped at the same step; one says so
            }
            ExitCode::from(130)
        }
        // one rank's error ends the whole job: the others would wait for it forever
        Err(e) if selfsup::dist::size() > 1 => {
            selfsup::dist::world().abort(&format!("error: {e:#}"), 1)
        }
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
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

fn finite_number(s: &str) -> Result<f64, String> {
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
            lr: Some(0.1),
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
        assert_eq!(o.len(), 18, "{o:?}");
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
