//! Resuming a run: which settings may change, and what to advise after a fault.

use super::{load_checkpoint, RunDir};
use crate::config::TrainConfig;
use anyhow::bail;

/// What to do after a non-finite loss or gradient: resume from the last checkpoint with a
/// tenth of the learning rate when one exists, else start again with it.
pub fn non_finite_advice(run: &RunDir, cfg: &TrainConfig) -> String {
    let lr = match cfg.lr() / 10.0 {
        lr if (1e-4..1e4).contains(&lr) => format!("{}", (lr * 1e6).round() / 1e6),
        lr => format!("{lr:.0e}"),
    };
    match load_checkpoint(&run.checkpoint()) {
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
/// may change only to a path of the same folder.
pub fn check_resumable(saved: &TrainConfig, now: &TrainConfig) -> anyhow::Result<()> {
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
            && match (&saved.data.path, &now.data.path) {
                (Some(a), Some(b)) => {
                    a.canonicalize().ok().is_some()
                        && a.canonicalize().ok() == b.canonicalize().ok()
                }
                _ => false,
            };
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
            RESUMABLE_CHANGES.join(", ")
        );
    }
    Ok(())
}
