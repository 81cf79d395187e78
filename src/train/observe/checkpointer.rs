//! Checkpoints every `train.checkpoint_every` steps, at each epoch's end and at the last step;
//! each holds the weights, the optimiser's state and the run's state (the time budget's
//! included), written atomically after the method's own files.

use super::{RunObserver, Session};
use crate::train::trainer::{Flow, StepRecord, Trainer};

pub struct Checkpointer;

/// A checkpoint is due after step `done` (1-based) of `total`: every `every` steps, at the
/// end of each epoch of `per_epoch` steps, and at the last.
pub fn due(done: u64, every: u64, per_epoch: u64, total: u64) -> bool {
    done.is_multiple_of(every.max(1)) || done.is_multiple_of(per_epoch.max(1)) || done == total
}

impl RunObserver for Checkpointer {
    fn after_step(&mut self, r: &StepRecord, t: &Trainer, s: &mut Session) -> anyhow::Result<Flow> {
        let done = r.ctx.step + 1;
        let every = s.cfg.train.checkpoint_every as u64;
        if due(done, every, r.ctx.steps_per_epoch, r.ctx.total_steps) {
            write(done, t, s)?;
        }
        Ok(Flow::Continue)
    }
}

/// Writes the checkpoint after step `done`: the ranks agree on the weights first (rank 0's
/// BatchNorm statistics become everyone's), rank 0 writes.
pub fn write(done: u64, trainer: &Trainer, s: &mut Session) -> anyhow::Result<()> {
    crate::dist::share_running_stats(&trainer.model.vs);
    crate::dist::ranks_agree(&trainer.model.vs)?;
    s.state.step = done;
    if !crate::dist::is_root() {
        return Ok(());
    }
    s.state.train_seconds = s.clock.trained_s();
    // the method's files first: a checkpoint never exists without them
    for (name, bytes) in trainer.model.method.run_files()? {
        crate::checkpoint::write_atomic(&s.run.dir.join(name), &bytes)?;
    }
    s.run
        .save_checkpoint(&trainer.model.vs, &trainer.state(), &s.state)?;
    s.checkpointed = Some(done);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::due;

    #[test]
    fn due_every_n_steps_at_epoch_ends_and_at_the_last() {
        let when: Vec<u64> = (1..=23).filter(|&d| due(d, 10, 7, 23)).collect();
        assert_eq!(when, vec![7, 10, 14, 20, 21, 23]);
    }
}
