//! Ctrl-C (SIGINT) and SIGTERM during training: the first finishes the step in flight, writes a
//! checkpoint and stops with the command that resumes; a second exits at once with code 130.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};

static REQUESTED: OnceLock<Arc<AtomicBool>> = OnceLock::new();

/// Installs the handlers (once per process; later calls do nothing).
pub fn install() {
    REQUESTED.get_or_init(|| {
        let flag = Arc::new(AtomicBool::new(false));
        for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
            // the second signal, with the flag already set, exits at once
            let _ = signal_hook::flag::register_conditional_shutdown(sig, 130, flag.clone());
            let _ = signal_hook::flag::register(sig, flag.clone());
        }
        flag
    });
}

/// Whether a stop was asked for since [`install`].
pub fn requested() -> bool {
    REQUESTED.get().is_some_and(|f| f.load(Ordering::SeqCst))
}

/// The error a run stops with after an interrupt; `main` exits with code 130 on it.
#[derive(Debug, thiserror::Error)]
#[error(
    "interrupted: stopped after step {step} of {total} with a checkpoint; continue with \
     `selfsup pretrain --out {} --resume`",
    .dir.display()
)]
pub struct Interrupted {
    pub step: u64,
    pub total: u64,
    pub dir: PathBuf,
}
