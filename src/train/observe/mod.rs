//! The pretraining loop's observers, one concern a file. After every step they run in this
//! order (fixed here, since it decides what a checkpoint holds):
//! ```text
//! evaluations (kNN on the way) → retime (time budget) → metrics_log → checkpointer
//!   → progress → stop (Ctrl-C, SIGTERM) → pictures
//! ```
//! They share one [`Session`]: the run's state as checkpoints save it, the training clock,
//! the console, and this session's totals. To add one: a file here with a type implementing
//! [`RunObserver`], and its place in [`Observers`]' list where `pretrain.rs` builds it.

pub mod checkpointer;
pub mod clock;
pub mod console;
pub mod evaluations;
pub mod metrics_log;
pub mod pictures;
pub mod progress;
pub mod retime;
pub mod stop;

pub use clock::{Clock, ManualClock, TrainClock, WallClock};
pub use console::Console;

use super::interrupt::Interrupted;
use super::trainer::{Flow, StepObserver, StepRecord, Trainer};
use super::{RunDir, RunState};
use crate::config::TrainConfig;

/// What the observers of one session of a run share.
pub struct Session<'a> {
    pub cfg: &'a TrainConfig,
    pub run: &'a RunDir,
    /// The run's state, as the next checkpoint saves it.
    pub state: RunState,
    /// The first step of this session.
    pub start: u64,
    pub clock: TrainClock,
    pub console: Console,
    /// The step whose checkpoint this process wrote last.
    pub checkpointed: Option<u64>,
    /// Set when a signal stopped the run.
    pub interrupted: Option<Interrupted>,
    /// What continues the run, for the message of a stop (default: `selfsup pretrain --out
    /// RUN --resume`).
    pub resume_command: String,
    pub last_loss: f64,
    /// Seconds waited for batches, and spent augmenting them, over this session.
    pub wait_total: f64,
    pub augment_total: f64,
}

impl<'a> Session<'a> {
    /// A session of the run in `run` starting at `start`, its clock continuing `state`'s.
    pub fn new(
        cfg: &'a TrainConfig,
        run: &'a RunDir,
        state: RunState,
        start: u64,
        clock: Box<dyn Clock>,
        console: Console,
    ) -> Self {
        Session {
            clock: TrainClock::new(clock, state.train_seconds),
            cfg,
            run,
            state,
            start,
            console,
            checkpointed: None,
            interrupted: None,
            resume_command: format!("`selfsup pretrain --out {} --resume`", run.dir.display()),
            last_loss: f64::NAN,
            wait_total: 0.0,
            augment_total: 0.0,
        }
    }
}

/// One concern of the loop, after each step.
pub trait RunObserver {
    fn after_step(
        &mut self,
        r: &StepRecord,
        trainer: &Trainer,
        s: &mut Session,
    ) -> anyhow::Result<Flow>;
}

/// The observers of a run, in order, over their session: the trainer's [`StepObserver`].
/// A stop from any of them stops the loop (the later ones still run); a refit is kept
/// otherwise.
pub struct Observers<'a> {
    pub session: Session<'a>,
    pub list: Vec<Box<dyn RunObserver + 'a>>,
}

impl StepObserver for Observers<'_> {
    fn after_step(&mut self, r: &StepRecord, trainer: &Trainer) -> anyhow::Result<Flow> {
        let s = &mut self.session;
        s.last_loss = r.done.loss;
        s.wait_total += r.wait_s;
        s.augment_total += r.augment_s;
        let mut flow = Flow::Continue;
        for o in &mut self.list {
            match (o.after_step(r, trainer, s)?, flow) {
                (_, Flow::Stop) | (Flow::Continue, _) => {}
                (next, _) => flow = next,
            }
        }
        Ok(flow)
    }
}
