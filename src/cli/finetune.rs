//! `selfsup finetune`: a run's encoder fine-tuned end to end with a linear classifier.

use super::args::finite_number;
use super::args::whole_number;
use super::common::data_or_flag;
use super::common::describe;
use super::common::test_split;
use anyhow::Context;
use clap::Args;
use selfsup::train;
use selfsup::train::finetune::{self as ft, FinetuneConfig};
use std::path::PathBuf;

#[derive(Args)]
pub struct FinetuneArgs {
    /// Run folder written by `selfsup pretrain`.
    #[arg(long)]
    pub run: PathBuf,
    /// Labeled data (train/ and test/ class folders, IDX or CIFAR files). Default: the run's own.
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// Passes over the labeled training split (fractions allowed, e.g. 0.5).
    #[arg(long, default_value_t = 1.0, allow_negative_numbers = true, value_parser = finite_number)]
    pub epochs: f64,
    /// Images per step.
    #[arg(allow_negative_numbers = true, value_parser = whole_number::<usize>, long, default_value_t = 128)]
    pub batch_size: usize,
    /// Peak AdamW learning rate (warm-up 10 %, then cosine to 0).
    #[arg(long, default_value_t = 1e-3, allow_negative_numbers = true, value_parser = finite_number)]
    pub lr: f64,
    /// AdamW weight decay (not on norms, biases, tokens).
    #[arg(long, default_value_t = 0.05, allow_negative_numbers = true, value_parser = finite_number)]
    pub weight_decay: f64,
    /// Fine-tune a randomly initialised encoder of the same architecture (the baseline).
    #[arg(long)]
    pub random_init: bool,
    /// Use at most this many images per split.
    #[arg(allow_negative_numbers = true, value_parser = whole_number::<usize>, long)]
    pub limit: Option<usize>,
    /// Folder of the decoded-image cache (default: the run's setting).
    #[arg(long, value_name = "DIR")]
    pub cache: Option<PathBuf>,
    /// auto (a GPU when libtorch sees one, else the CPU), cpu, cuda or cuda:N.
    #[arg(long, default_value = "auto")]
    pub device: String,
    /// The fine-tuning's folder (checkpoint, metrics.jsonl, finetune.json). Default: RUN/finetune
    /// (RUN/finetune-random-init with --random-init).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Continue the fine-tuning in --out from its last checkpoint (same flags).
    #[arg(long)]
    pub resume: bool,
    /// Fine-tune on only this many labelled training images per class (a class-balanced draw
    /// seeded by the run's seed: the images of `eval --labels-per-class`'s draw `--draw`).
    #[arg(long, value_parser = whole_number::<usize>)]
    pub labels_per_class: Option<usize>,
    /// --labels-per-class: which draw (0, 1, …: the draws of `eval --labels-per-class`).
    #[arg(long, value_parser = whole_number::<u64>, default_value_t = 0, requires = "labels_per_class")]
    pub draw: u64,
}

pub fn finetune(a: &FinetuneArgs) -> anyhow::Result<()> {
    let enc = train::open_encoder(&a.run, a.random_init, selfsup::device::resolve(&a.device)?)?;
    let mut cfg = enc.config.clone();
    train::set_threads(cfg.train.threads)?;
    data_or_flag(&mut cfg, &a.run, &a.data)?;
    if a.limit.is_some() {
        cfg.data.limit = a.limit;
    }
    if a.cache.is_some() {
        cfg.data.cache = a.cache.clone();
    }
    if a.batch_size == 0 {
        anyhow::bail!("--batch-size is 0: it must be ≥ 1");
    }
    if a.lr.is_nan() || a.lr <= 0.0 || a.weight_decay.is_nan() || a.weight_decay < 0.0 {
        anyhow::bail!(
            "--lr is {} and --weight-decay {}: the learning rate must be > 0, the decay ≥ 0",
            a.lr,
            a.weight_decay
        );
    }
    let mut splits = train::load_data(&cfg)?;
    describe(&splits, &cfg);
    if let Some(n) = a.labels_per_class {
        anyhow::ensure!(n >= 1, "--labels-per-class is 0: give at least 1");
        let labels = splits
            .train
            .labels
            .as_deref()
            .context("--labels-per-class needs a labelled training split (class folders)")?;
        let picked = selfsup::eval::few_labels::draw(labels, n, cfg.train.seed, a.draw)?;
        splits.train = splits.train.subset(&picked);
        println!(
            "fine-tuning on {n} labelled images per class ({} images)",
            picked.len()
        );
    }
    let test = test_split(&splits)
        .context("fine-tuning needs a labeled test split: a folder with train/ and test/ class folders, IDX or CIFAR files")?;
    let fc = FinetuneConfig {
        epochs: a.epochs,
        batch_size: a.batch_size,
        lr: a.lr,
        weight_decay: a.weight_decay,
        seed: cfg.train.seed,
        random_init: a.random_init,
        ..Default::default()
    };
    let out = a.out.clone().unwrap_or_else(|| {
        a.run.join(match a.random_init {
            true => "finetune-random-init",
            false => "finetune",
        })
    });
    super::common::existing_parent(&out, "--out")?;
    anyhow::ensure!(
        !out.is_file(),
        "--out {} is a file: give a folder for the fine-tuning",
        out.display()
    );
    let same = |p: &std::path::Path| p.canonicalize().ok();
    anyhow::ensure!(
        same(&out).is_none() || same(&out) != same(&a.run),
        "--out {} is the run folder itself: the fine-tuning's checkpoint would replace the run's; \
         give another folder",
        out.display()
    );
    let r = ft::finetune(enc, &splits.train, test, &fc, &out, a.resume)?;
    println!(
        "{}: fine-tuned {} steps ({} epochs, lr {}): test top-1 {:.2} % (train top-1 at the end {:.2} %; {:.0} s)",
        match a.random_init {
            true => "random-init encoder",
            false => "encoder",
        },
        r.steps,
        a.epochs,
        a.lr,
        100.0 * r.test_top1,
        100.0 * r.train_top1_end,
        r.seconds
    );
    Ok(())
}
