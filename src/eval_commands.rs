//! `selfsup eval` (kNN, linear probe, zero-shot) and `selfsup finetune`, and how the commands
//! that read a run's data again find it (`loading_flags`, `data_or_flag`).

use crate::commands::{describe, print_eval, test_split};
use crate::{EvalArgs, FinetuneArgs};
use anyhow::Context;
use selfsup::config::TrainConfig;
use selfsup::data::Splits;
use selfsup::eval::{self, FrozenEncoder};
use selfsup::train;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// Why kNN and the linear probe cannot score `splits` (which of the two splits lacks labels).
fn missing_labels(splits: &Splits) -> String {
    let layout = "a folder with train/ and test/ (or val/) of class folders, IDX or CIFAR files";
    match (&splits.test, splits.train.labels.is_some()) {
        (None, _) => {
            format!("evaluation needs a labeled test split, and this data has none: {layout}")
        }
        (Some(t), _) if t.labels.is_none() => format!(
            "evaluation needs a labeled test split, and this one is a flat folder of unlabeled \
             images: {layout}"
        ),
        (Some(_), false) => format!(
            "kNN and the linear probe learn from labeled training images, and this training split \
             is a flat folder (unlabeled){}: put its images in class folders",
            match splits.train.captions.is_some() {
                true => "; a captioned run is scored with `selfsup eval --zero-shot`",
                false => "",
            }
        ),
        (Some(_), true) => "evaluation needs labels on both splits".into(),
    }
}

pub fn eval(a: &EvalArgs) -> anyhow::Result<()> {
    if let Some(m) = &a.method {
        anyhow::bail!(
            "eval --method {m}: the evaluation is chosen with --kind (knn, linear or both); \
             --method names a training method"
        );
    }
    if a.zero_shot {
        return zero_shot(a);
    }
    // the random-init baseline needs only the architecture, from the run's config.toml
    let enc = train::open_encoder(&a.run, a.random_init, selfsup::device::resolve(&a.device)?)?;
    let cfg = eval_config(a, enc.config.clone())?;
    let splits = train::load_data(&cfg)?;
    describe(&splits, &cfg);
    let test = test_split(&splits).ok_or_else(|| anyhow::anyhow!(missing_labels(&splits)))?;
    for &layer in &a.layer {
        let encoder = FrozenEncoder {
            layer,
            ..enc.frozen(&splits.train.images)
        };
        let r = eval::evaluate(encoder, &splits.train, test, &cfg.eval, a.kind)?;
        let who = match a.random_init {
            true => "random-init encoder",
            false => "encoder",
        };
        match a.layer.as_slice() {
            [selfsup::backbone::Layer::Layer4] => print_eval(who, &r),
            _ => print_eval(&format!("{who}, {}", layer.name()), &r),
        }
    }
    Ok(())
}

/// The loading flags of the commands that read a run's data again (eval, embed, report,
/// neighbors) over the run's config; sets the run's thread count.
pub fn loading_flags(
    cfg: &mut TrainConfig,
    image_size: Option<usize>,
    skip_bad: bool,
    no_cache: bool,
    cache: &Option<std::path::PathBuf>,
) -> anyhow::Result<()> {
    train::set_threads(cfg.train.threads)?;
    if image_size.is_some() {
        cfg.data.image_size = image_size;
    }
    cfg.data.skip_bad |= skip_bad;
    cfg.data.no_cache |= no_cache;
    if cache.is_some() {
        cfg.data.cache = cache.clone();
    }
    Ok(())
}

/// `cfg.data.path` (`--data`, else the run's data folder) must exist: a run's folder that was
/// moved or deleted gets a message naming it and `--data`, not the advice about built-in data.
pub fn data_or_flag(
    cfg: &mut TrainConfig,
    run: &Path,
    flag: &Option<PathBuf>,
) -> anyhow::Result<()> {
    if let Some(d) = flag {
        // the loader's own message would suggest the built-in data, which --data cannot mean
        anyhow::ensure!(
            d.exists(),
            "--data {} does not exist: give the folder of images (or of IDX / CIFAR files)",
            d.display()
        );
        cfg.data.path = Some(d.clone());
        return Ok(());
    }
    if let Some(p) = cfg.data.path.as_ref().filter(|p| !p.exists()) {
        anyhow::bail!(
            "the run's data folder {} (from {}) does not exist: it was moved or deleted; give \
             the images with --data FOLDER",
            p.display(),
            run.join("config.toml").display()
        );
    }
    Ok(())
}

/// The run's config with eval's data flags on it; sets the thread count.
fn eval_config(a: &EvalArgs, mut cfg: TrainConfig) -> anyhow::Result<TrainConfig> {
    loading_flags(&mut cfg, a.image_size, a.skip_bad, a.no_cache, &a.cache)?;
    data_or_flag(&mut cfg, &a.run, &a.data)?;
    if a.limit.is_some() {
        cfg.data.limit = a.limit;
    }
    Ok(cfg)
}

/// `eval --zero-shot`: zero-shot top-1 over the chosen classes (and over those no training
/// caption names), then retrieval recall@1/5 when the test split has captions.
fn zero_shot(a: &EvalArgs) -> anyhow::Result<()> {
    use selfsup::eval::zero_shot as zs;
    anyhow::ensure!(
        !a.random_init,
        "eval --zero-shot --random-init: zero-shot needs the trained text tower; its baseline is \
         chance (1 / the number of classes), which it prints"
    );
    let (cfg, model) = train::open_model(&a.run, &a.device)?;
    let Some(towers) = model.method.text_image() else {
        anyhow::bail!(
            "eval --zero-shot needs a run trained with --method clip (images and captions); {} was \
             trained with {}: evaluate it with --kind knn|linear|both",
            a.run.display(),
            cfg.method.name
        );
    };
    let cfg = eval_config(a, cfg)?;
    let splits = train::load_data(&cfg)?;
    describe(&splits, &cfg);
    let test = splits
        .test
        .as_ref()
        .filter(|t| t.labels.is_some())
        .context("eval --zero-shot needs a test split of class folders (test/<class>/…): their names are the classes")?;
    let input = zs::ImageInput {
        input_side: cfg.crop_size(&splits.train.images),
        channels_last: cfg.model.uses_channels_last(),
        batch_size: cfg.eval.batch_size,
    };
    let started = Instant::now();
    let train_captions = splits.train.captions.as_deref();
    let r = zs::evaluate(
        towers,
        test,
        train_captions,
        &a.classes,
        &a.templates,
        input,
    )?;
    println!(
        "zero-shot top-1: {:.2} % on {} test images of {} classes (chance {:.2} %), {} template(s)",
        100.0 * r.top1,
        r.images,
        r.classes.len(),
        100.0 * r.chance,
        r.templates
    );
    for (label, want) in [
        ("named in no training caption", true),
        ("named in training captions", false),
    ] {
        if let Some((k, acc, n)) = r.group(want) {
            println!(
                "  classes {label} ({k}): {:.2} % on {n} images",
                100.0 * acc
            );
        }
    }
    for c in &r.classes {
        let mark = match c.unseen {
            Some(true) => "  (never named in training)",
            _ => "",
        };
        println!(
            "  {:<24} {:6.2} % of {}{mark}",
            c.name,
            100.0 * c.top1,
            c.images
        );
    }
    if let Some(t) = &r.retrieval {
        println!(
            "retrieval on {} test images, {} distinct captions: image→text R@1 {:.2} %, R@5 {:.2} %; \
             text→image R@1 {:.2} %, R@5 {:.2} %",
            t.images,
            t.captions,
            100.0 * t.image_to_text.0,
            100.0 * t.image_to_text.1,
            100.0 * t.text_to_image.0,
            100.0 * t.text_to_image.1
        );
    }
    eprintln!("evaluated in {:.1} s", started.elapsed().as_secs_f64());
    Ok(())
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
    let splits = train::load_data(&cfg)?;
    describe(&splits, &cfg);
    let test = test_split(&splits)
        .context("fine-tuning needs a labeled test split: a folder with train/ and test/ class folders, IDX or CIFAR files")?;
    let fc = eval::FinetuneConfig {
        epochs: a.epochs,
        batch_size: a.batch_size,
        lr: a.lr,
        weight_decay: a.weight_decay,
        seed: cfg.train.seed,
        ..Default::default()
    };
    let r = eval::finetune(
        &enc.vs,
        enc.frozen(&splits.train.images),
        &splits.train,
        test,
        &fc,
        |s, total, loss| eprintln!("fine-tune step {s}/{total}: loss {loss:.4}"),
    )?;
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
