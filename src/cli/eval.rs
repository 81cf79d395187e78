//! `selfsup eval`: kNN, linear probe or zero-shot scores of a run's encoder.

use super::args::whole_number;
use super::args::LoadingArgs;
use super::common::data_or_flag;
use super::common::describe;
use super::common::missing_labels;
use super::common::print_eval;
use super::common::test_split;
use anyhow::Context;
use clap::Args;
use selfsup::config::TrainConfig;
use selfsup::eval;
use selfsup::eval::EvalKind;
use selfsup::eval::FrozenEncoder;
use selfsup::train;
use std::path::PathBuf;
use std::time::Instant;

#[derive(Args)]
pub struct EvalArgs {
    /// Run folder written by `selfsup pretrain` (its config.toml and checkpoint.safetensors).
    #[arg(long)]
    pub run: PathBuf,
    /// Labeled data to evaluate on. Default: the run's own data.
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// Which evaluation.
    #[arg(long, value_enum, default_value_t = EvalKind::Both)]
    pub kind: EvalKind,
    /// Before `--kind` existed, `eval --method knn|linear|both` chose it: refused with a hint.
    #[arg(long, hide = true)]
    pub method: Option<String>,
    /// Evaluate a randomly initialised encoder of the same architecture (the baseline).
    #[arg(long)]
    pub random_init: bool,
    /// The stage whose output (global-average-pooled) is evaluated; several, comma-separated,
    /// are evaluated one after another on one load of the data (`--layer layer1,layer2,layer3,layer4`).
    #[arg(long, value_enum, value_delimiter = ',', default_value = "layer4")]
    pub layer: Vec<selfsup::backbone::Layer>,
    /// Few-label evaluation: kNN and the linear probe given only this many labelled training
    /// images per class (comma-separated, e.g. 1,5,10,100), on the whole test split.
    #[arg(long, value_delimiter = ',', value_parser = whole_number::<usize>)]
    pub labels_per_class: Vec<usize>,
    /// --labels-per-class: class-balanced draws per count (mean ± sd over them).
    #[arg(long, value_parser = whole_number::<usize>, default_value_t = 5, requires = "labels_per_class")]
    pub draws: usize,
    /// Use at most this many images per split.
    #[arg(allow_negative_numbers = true, value_parser = whole_number::<usize>, long)]
    pub limit: Option<usize>,
    #[command(flatten)]
    pub loading: LoadingArgs,
    /// Zero-shot classification with a `clip` run (no labeled training image used): each class
    /// name put into every template, embedded by the text tower, averaged; each test image
    /// takes the nearest class. With captions in the test split, also image↔text retrieval
    /// recall@1/5.
    #[arg(long)]
    pub zero_shot: bool,
    /// --zero-shot: the classes, comma-separated test class folder names (`_` reads as a space
    /// in the prompts). Default: every class folder of the test split.
    #[arg(long, value_delimiter = ',', requires = "zero_shot")]
    pub classes: Vec<String>,
    /// --zero-shot: prompt templates, comma-separated, each with {} where the class name goes.
    /// Default: "a photo of a {}.".
    #[arg(long, value_delimiter = ',', requires = "zero_shot")]
    pub templates: Vec<String>,
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
    let enc = train::open_encoder(
        &a.run,
        a.random_init,
        selfsup::device::resolve(&a.loading.device)?,
    )?;
    let cfg = eval_config(a, enc.config.clone())?;
    let splits = train::load_data(&cfg)?;
    describe(&splits, &cfg);
    let test = test_split(&splits).ok_or_else(|| anyhow::anyhow!(missing_labels(&splits)))?;
    if !a.labels_per_class.is_empty() {
        return few_labels(
            a,
            &enc.frozen(&splits.train.images),
            (&splits.train, test),
            &cfg,
        );
    }
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

/// `eval --labels-per-class`: a line per count, the mean ± sd over the draws.
fn few_labels(
    a: &EvalArgs,
    encoder: &FrozenEncoder,
    splits: (&selfsup::data::Dataset, &selfsup::data::Dataset),
    cfg: &TrainConfig,
) -> anyhow::Result<()> {
    anyhow::ensure!(
        a.draws >= 1 && a.labels_per_class.iter().all(|&n| n >= 1),
        "--labels-per-class and --draws must be ≥ 1"
    );
    let started = Instant::now();
    let curve = eval::few_labels::evaluate_encoder(
        *encoder,
        splits,
        &cfg.eval,
        &a.labels_per_class,
        (a.draws, cfg.train.seed),
    )?;
    let who = match a.random_init {
        true => "random-init encoder",
        false => "encoder",
    };
    println!(
        "{who}, few labels ({} draws each, {} test images): labels per class | kNN top-1 | linear probe top-1",
        a.draws,
        splits.1.len()
    );
    for n in &curve {
        let ((k, ks), (l, ls)) = (n.mean_sd(false), n.mean_sd(true));
        println!(
            "  {:>5} | {:.2} ± {:.2} % | {:.2} ± {:.2} %",
            n.labels_per_class,
            100.0 * k,
            100.0 * ks,
            100.0 * l,
            100.0 * ls
        );
    }
    eprintln!("evaluated in {:.1} s", started.elapsed().as_secs_f64());
    let saved = eval::few_labels::SavedCurve {
        random_init: a.random_init,
        data: super::report::source(cfg),
        test_images: splits.1.len(),
        points: curve,
    };
    // the figures are printed: a run folder that cannot take the file only loses the report's curve
    match saved.save(&a.run) {
        Ok(p) => eprintln!("saved for `selfsup report` in {}", p.display()),
        Err(e) => eprintln!(
            "note: the curve was not saved for `selfsup report` ({e:#}); the figures above stand"
        ),
    }
    Ok(())
}

/// The run's config with eval's data flags on it; sets the thread count.
fn eval_config(a: &EvalArgs, mut cfg: TrainConfig) -> anyhow::Result<TrainConfig> {
    a.loading.apply(&mut cfg)?;
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
    let (cfg, model) = train::open_model(&a.run, &a.loading.device)?;
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
