//! What several subcommands share: printing splits and reports, finding a run's data again.

use selfsup::config::TrainConfig;
use selfsup::data::Dataset;
use selfsup::data::Splits;
use selfsup::eval::EvalReport;
use selfsup::eval::FrozenEncoder;
use selfsup::train;
use std::path::Path;
use std::path::PathBuf;

/// The encoder a model trains, for evaluation at the crop size it trained at.
pub(crate) fn frozen<'a>(
    model: &'a train::Model,
    cfg: &TrainConfig,
    splits: &Splits,
) -> FrozenEncoder<'a> {
    FrozenEncoder {
        net: model.method.encoder(),
        channels_last: cfg.model.uses_channels_last(),
        input_side: cfg.crop_size(&splits.train.images),
        layer: Default::default(),
    }
}

/// The folder `path` will be written into (`.` for a bare file name); an error naming `flag`
/// when it does not exist, before any long work.
pub fn existing_parent<'a>(path: &'a Path, flag: &str) -> anyhow::Result<&'a Path> {
    let parent = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    anyhow::ensure!(
        parent.is_dir(),
        "the folder of {flag} ({}) does not exist: create it first",
        parent.display()
    );
    Ok(parent)
}

pub(crate) fn describe(splits: &Splits, cfg: &TrainConfig) {
    let tr = &splits.train;
    let source = match &cfg.data.path {
        Some(p) => p.display().to_string(),
        None => "built-in synthetic shapes".into(),
    };
    let sizes = match tr.images.size_range() {
        Some(((h, w), _)) if tr.images.uniform_size().is_some() => format!("{w}x{h}"),
        Some(((h0, w0), (h1, w1))) => format!("of sizes {w0}x{h0} to {w1}x{h1}"),
        None => String::new(),
    };
    let left_out: Vec<String> = [("training", Some(tr)), ("test", splits.test.as_ref())]
        .into_iter()
        .filter_map(|(name, d)| Some(format!("{name}: {}", d?.left_out.describe()?)))
        .collect();
    eprintln!(
        "data: {source}: {} training images {sizes}, views of {}x{}{}, {}{}",
        tr.len(),
        cfg.crop_size(&tr.images),
        cfg.crop_size(&tr.images),
        match (tr.labels.is_some(), tr.captions.is_some()) {
            (true, false) => format!(", {} classes", tr.num_classes()),
            (true, true) => format!(", {} classes, captioned", tr.num_classes()),
            (false, true) => ", unlabeled, captioned".into(),
            (false, false) => ", unlabeled".into(),
        },
        match &splits.test {
            Some(t) => format!("{} test images", t.len()),
            None => "no test split".into(),
        },
        match left_out.is_empty() {
            true => String::new(),
            false => format!("; left out: {}", left_out.join("; ")),
        }
    );
    for s in [Some(tr), splits.test.as_ref()].into_iter().flatten() {
        if !s.skipped.is_empty() {
            eprintln!(
                "skipped {} unreadable files (--skip-bad), e.g. {}",
                s.skipped.len(),
                s.skipped[0]
            );
        }
    }
}

pub(crate) fn print_eval(label: &str, r: &EvalReport) {
    let linear = r
        .linear_top1
        .map(|a| format!(", linear probe top-1 {:.2} %", 100.0 * a))
        .unwrap_or_default();
    let knn = match r.knn_top1.is_nan() {
        true => "kNN not asked for".to_string(),
        false => format!("kNN top-1 {:.2} %", 100.0 * r.knn_top1),
    };
    let c = &r.clusters;
    let share = 100.0 * selfsup::eval::clusters::SHARE;
    println!(
        "{label}: {knn}{linear} (feature std {:.3}, effective rank {:.1}, uniformity {:.2}; {:.0} s)",
        r.feature_std,
        r.feature_effective_rank,
        r.feature_uniformity,
        r.seconds
    );
    println!(
        "  clusters (k-means, k = {} on {} test images): NMI {:.3}, ARI {:.3}; classes split over \
         2+ clusters (each ≥ {share:.0} % of the class): {} of {}; clusters mixing 2+ classes: {} of {}",
        c.clusters,
        c.images,
        c.nmi,
        c.ari,
        c.split_classes(),
        c.clusters_per_class.len(),
        c.merged_clusters(),
        c.classes_per_cluster.len()
    );
}

pub(crate) fn test_split(splits: &Splits) -> Option<&Dataset> {
    splits
        .test
        .as_ref()
        .filter(|t| t.labels.is_some() && splits.train.labels.is_some())
}

/// Why kNN and the linear probe cannot score `splits` (which of the two splits lacks labels).
pub(crate) fn missing_labels(splits: &Splits) -> String {
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
