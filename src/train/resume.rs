//! Resuming a run: which settings may change, and what to advise after a fault.

use super::{load_checkpoint, RunDir};
use crate::config::TrainConfig;
use anyhow::bail;
use serde::{Deserialize, Serialize};

/// What to do after a non-finite loss or gradient: resume from the last checkpoint with a
/// tenth of the learning rate when one exists, else start again with it.
pub fn non_finite_advice(run: &RunDir, cfg: &TrainConfig) -> String {
    let lr = match cfg.lr() / 10.0 {
        lr if (1e-4..1e4).contains(&lr) => format!("{}", (lr * 1e6).round() / 1e6),
        lr => format!("{lr:.0e}"),
    };
    match load_checkpoint(&run.checkpoint()) {
        Ok(c) if largest_weight(&c.model) > EXPLODED => format!(
            "The last checkpoint, {} (step {}), already holds exploded weights (largest |w| = \
             {:.1e}): resuming it cannot recover at any learning rate. Start a new run with a \
             lower learning rate, e.g. `selfsup pretrain --out NEW_FOLDER --lr {lr}` (or delete {} \
             first), or a higher temperature",
            run.checkpoint().display(),
            c.state.step,
            largest_weight(&c.model),
            run.dir.display()
        ),
        Ok(c) => format!(
            "The last good checkpoint is {} (step {}): resume it with a lower learning rate, e.g. \
             `selfsup pretrain --out {} --resume --lr {lr}`",
            run.checkpoint().display(),
            c.state.step,
            run.dir.display()
        ),
        Err(_) => format!(
            "No checkpoint was written yet (the first comes at step {} or at the end of the first \
             epoch): start again with a lower learning rate (e.g. --lr {lr}) or a higher temperature",
            cfg.train.checkpoint_every
        ),
    }
}

/// A weight larger than this in absolute value (or not finite) means training had already
/// diverged when the checkpoint was written: healthy networks' weights stay many orders of
/// magnitude below it.
const EXPLODED: f64 = 1e8;

/// The largest |value| over the model's float tensors (infinite when one is not finite).
fn largest_weight(model: &std::collections::HashMap<String, tch::Tensor>) -> f64 {
    model
        .values()
        .filter(|t| t.is_floating_point() && t.numel() > 0)
        .map(|t| {
            let m = t.abs().max().double_value(&[]);
            if m.is_finite() {
                m
            } else {
                f64::INFINITY
            }
        })
        .fold(0.0, f64::max)
}

/// Settings that may change when a run is resumed: they change how the rest of the run goes
/// (a lower learning rate after a non-finite loss, more epochs to extend it, the machine's
/// threads) or nothing the model sees (logging, evaluation, where the run folder is).
/// Every other key must be the one the checkpoint was trained with.
pub const RESUMABLE_CHANGES: &[&str] = &[
    "optim.lr",
    "optim.final_lr",
    "train.epochs",
    "train.threads",
    "train.device",
    "train.precision",
    "train.collective_timeout",
    "train.prefetch",
    "train.log_every",
    "train.checkpoint_every",
    "train.progress_seconds",
    "train.eval_at_minutes",
    "train.out_dir",
    "data.skip_bad",
    "data.path",
    "data.cache",
    "data.no_cache",
    "eval.",
];

/// Refuses a resume whose settings differ from the checkpoint's in a key outside
/// [`RESUMABLE_CHANGES`]; the message names each key with its old and new value. `data.path`
/// may change to a folder of the same images (`same_images`: their fingerprints agree, so a
/// moved folder resumes), or, for runs without a fingerprint, to a path of the same folder.
pub fn check_resumable(
    saved: &TrainConfig,
    now: &TrainConfig,
    same_images: bool,
) -> anyhow::Result<()> {
    let (old, new) = (saved.flat_settings(), now.flat_settings());
    let keys: std::collections::BTreeSet<&String> = old.keys().chain(new.keys()).collect();
    let unset = "(unset)".to_string();
    let mut refused = Vec::new();
    for k in keys {
        let (o, n) = (old.get(k).unwrap_or(&unset), new.get(k).unwrap_or(&unset));
        if o == n {
            continue;
        }
        let allowed = RESUMABLE_CHANGES
            .iter()
            .any(|a| k == a || (a.ends_with('.') && k.starts_with(a)));
        let same_folder = k == "data.path"
            && (same_images
                || match (&saved.data.path, &now.data.path) {
                    (Some(a), Some(b)) => {
                        a.canonicalize().ok().is_some()
                            && a.canonicalize().ok() == b.canonicalize().ok()
                    }
                    _ => false,
                });
        if !allowed || (k == "data.path" && !same_folder) {
            refused.push(format!("{k}: {o} in the checkpoint, {n} now"));
        }
    }
    if !refused.is_empty() {
        bail!(
            "these settings differ from the ones the run was trained with: {}. Resume with the \
             checkpoint's values (pass only --out and --resume to use the run's config.toml); only {} \
             may change",
            refused.join("; "),
            RESUMABLE_CHANGES
                .iter()
                .map(|k| match *k {
                    "data.path" => "data.path (to a folder of the same images)",
                    k => k,
                })
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    Ok(())
}

/// Which training images a run is trained on: their number and a hash of their names in
/// order. The step plan (epochs, the shuffles) is made for these: a resume on other images
/// would not continue the same run.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct DataFingerprint {
    pub images: u64,
    /// 64-bit FNV-1a of the names, each followed by a NUL, as 16 hex digits.
    pub names: String,
}

impl DataFingerprint {
    pub fn of(train: &crate::data::Dataset) -> Self {
        let hash = train.names.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, n| {
            n.bytes()
                .chain([0])
                .fold(h, |h, b| (h ^ b as u64).wrapping_mul(0x0000_0100_0000_01b3))
        });
        DataFingerprint {
            images: train.names.len() as u64,
            names: format!("{hash:016x}"),
        }
    }

    /// An error saying how the images differ, unless `now` is the same as `self`.
    pub fn check_unchanged(&self, now: &DataFingerprint) -> anyhow::Result<()> {
        if self == now {
            return Ok(());
        }
        let how = match now.images.cmp(&self.images) {
            std::cmp::Ordering::Greater => format!("{} images added", now.images - self.images),
            std::cmp::Ordering::Less => format!("{} images removed", self.images - now.images),
            std::cmp::Ordering::Equal => "as many images, but not the same files".into(),
        };
        bail!(
            "the training images changed since the run began ({} then, {} now: {how}). Its \
             schedule was planned for the images it started on, so it is not continued on \
             others: put the folder back as it was, or start a new run on the images as they are \
             now (another --out)",
            self.images,
            now.images
        )
    }
}
