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

#[cfg(test)]
mod tests {
    use super::checkpointer::Checkpointer;
    use super::metrics_log::MetricsLog;
    use super::stop::StopOnSignal;
    use super::*;
    use crate::train::trainer::{Batch, SameBatch, Schedule};
    use crate::train::{build_model, interrupt, load_checkpoint};

    /// A 5-step SimCLR run of a tiny ResNet on one fixed batch into `dir`, observed by
    /// `list(session)`; returns the session after it.
    fn observe(
        dir: &std::path::Path,
        list: impl FnOnce(&Session) -> Vec<Box<dyn RunObserver>>,
        stop_asked: bool,
    ) -> (Flow, Option<u64>, Option<Interrupted>, Vec<u64>) {
        let set = |kv: &[&str]| kv.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let cfg = TrainConfig::load(
            None,
            &set(&[
                "model.width=0.0625",
                "model.crop_size=16",
                "train.batch_size=4",
                "train.log_every=2",
                "train.checkpoint_every=3",
                "train.threads=1",
            ]),
        )
        .unwrap();
        let mut model = build_model(&cfg, None, None).unwrap();
        let run = RunDir::create(dir).unwrap();
        let schedule = Schedule {
            total: 5,
            warmup: 0,
            steps_per_epoch: 100,
            lr: 0.01,
            final_lr: 0.01,
        };
        let mut trainer = Trainer::new(&mut model, &cfg, schedule);
        let views = crate::method::testing::tiny_views(4, 3);
        let mut batches = SameBatch(Batch {
            views,
            targets: None,
            augment_s: 0.0,
        });
        let session = Session::new(
            &cfg,
            &run,
            RunState::fresh(&cfg, 5),
            0,
            Box::new(ManualClock::default()),
            Console::captured(),
        );
        let list = list(&session);
        let mut o = Observers { session, list };
        // armed only where asked: the flag is the process's, and tests run side by side
        let armed = stop_asked.then(interrupt::arm);
        if stop_asked {
            interrupt::request();
        }
        let taken = trainer.run(0..5, &mut batches, &mut o).unwrap();
        drop(armed);
        let logged: Vec<u64> = std::fs::read_to_string(run.metrics())
            .unwrap_or_default()
            .lines()
            .map(|l| {
                serde_json::from_str::<serde_json::Value>(l).unwrap()["step"]
                    .as_u64()
                    .unwrap()
            })
            .collect();
        let flow = if taken < 5 {
            Flow::Stop
        } else {
            Flow::Continue
        };
        (flow, o.session.checkpointed, o.session.interrupted, logged)
    }

    #[test]
    fn the_log_and_the_checkpoints_come_at_their_steps() {
        let dir = tempfile::tempdir().unwrap();
        let (flow, checkpointed, stopped, logged) = observe(
            dir.path(),
            |s| vec![Box::new(MetricsLog::new(s)), Box::new(Checkpointer)],
            false,
        );
        assert_eq!(flow, Flow::Continue);
        assert_eq!(logged, vec![2, 4, 5], "every 2 steps and the last");
        assert_eq!(checkpointed, Some(5), "at 3, then the last");
        assert!(stopped.is_none());
        let ckpt = load_checkpoint(&dir.path().join("checkpoint.safetensors")).unwrap();
        assert_eq!((ckpt.state.step, ckpt.state.total_steps), (5, 5));
    }

    #[test]
    fn a_stop_request_ends_the_run_after_the_step_with_a_checkpoint() {
        let dir = tempfile::tempdir().unwrap();
        let (flow, checkpointed, stopped, _) =
            observe(dir.path(), |_| vec![Box::new(StopOnSignal)], true);
        assert_eq!(flow, Flow::Stop);
        assert_eq!(checkpointed, Some(1));
        let stopped = stopped.expect("the session says it was interrupted");
        assert_eq!((stopped.step, stopped.total), (1, 5));
        assert!(stopped.to_string().contains("--resume"), "{stopped}");
    }
}
