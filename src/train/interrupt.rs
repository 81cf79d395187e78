//! Ctrl-C (SIGINT), SIGTERM and SIGHUP (the terminal or SSH session closed) during training: the first finishes the step in flight, writes a
//! checkpoint and stops with the command that resumes; a second exits at once with code 130.
//! Outside the training loop (loading, evaluation) the first signal exits at once, as usual.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Once;

/// The training loop is running and will stop cleanly when asked.
static ARMED: AtomicBool = AtomicBool::new(false);
/// A stop was asked for while armed.
static REQUESTED: AtomicBool = AtomicBool::new(false);
static INSTALL: Once = Once::new();

fn install() {
    INSTALL.call_once(|| {
        use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
        for sig in [SIGINT, SIGTERM, SIGHUP] {
            // SAFETY: the action only touches atomics and calls _exit, both async-signal-safe.
            let _ = unsafe {
                signal_hook::low_level::register(sig, || {
                    if ARMED.load(Ordering::SeqCst) && !REQUESTED.swap(true, Ordering::SeqCst) {
                        return; // the loop stops after this step
                    }
                    signal_hook::low_level::exit(130);
                })
            };
        }
    });
}

/// While the returned guard lives, a signal asks the loop to stop ([`requested`]) instead of
/// ending the process.
pub fn arm() -> Armed {
    install();
    REQUESTED.store(false, Ordering::SeqCst);
    ARMED.store(true, Ordering::SeqCst);
    Armed
}

/// Disarms on drop: a signal ends the process at once again.
pub struct Armed;

impl Drop for Armed {
    fn drop(&mut self) {
        ARMED.store(false, Ordering::SeqCst);
    }
}

/// Asks the armed loop to stop, as a signal would (tests of the stop itself).
#[cfg(test)]
pub(crate) fn request() {
    if ARMED.load(Ordering::SeqCst) {
        REQUESTED.store(true, Ordering::SeqCst);
    }
}

/// Whether a stop was asked for since [`arm`].
pub fn requested() -> bool {
    REQUESTED.load(Ordering::SeqCst)
}

/// The error a run stops with after an interrupt; `main` exits with code 130 on it.
#[derive(Debug, thiserror::Error)]
#[error(
    "interrupted: stopped after step {step} of {total} with a checkpoint; continue with {command}"
)]
pub struct Interrupted {
    pub step: u64,
    pub total: u64,
    /// What continues the run (`selfsup pretrain --out RUN --resume`).
    pub command: String,
}
