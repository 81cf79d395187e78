//! A clean stop on Ctrl-C, SIGTERM or SIGHUP ([`crate::train::interrupt`]): the step in
//! flight finishes, a checkpoint is written (unless this step's already was), and the run
//! ends with the command that resumes it. Every rank stops at the same step.

use super::{checkpointer, RunObserver, Session};
use crate::train::interrupt::{self, Interrupted};
use crate::train::trainer::{Flow, StepRecord, Trainer};

pub struct StopOnSignal;

impl RunObserver for StopOnSignal {
    fn after_step(&mut self, r: &StepRecord, t: &Trainer, s: &mut Session) -> anyhow::Result<Flow> {
        let (done, total) = (r.ctx.step + 1, r.ctx.total_steps);
        // a collective: every rank asks at every step
        let asked = crate::dist::any_rank(interrupt::requested());
        if !asked || done == total {
            return Ok(Flow::Continue);
        }
        if s.state.step != done {
            checkpointer::write(done, t, s)?;
        }
        s.interrupted = Some(Interrupted {
            step: done,
            total,
            command: s.resume_command.clone(),
        });
        Ok(Flow::Stop)
    }
}
