//! The time budget's re-timing (see [`crate::train::budget`]): at the steps it chooses, the
//! run measures its own seconds per step and refits its length to the budget left; the
//! loop then runs to the new end ([`Flow::Refit`]). The re-timings done are in the run's
//! state, so a resumed run keeps them.

use super::{RunObserver, Session};
use crate::train::budget;
use crate::train::trainer::{Flow, StepRecord, Trainer};
use crate::train::RunState;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// A re-timing still to come.
#[derive(Debug, PartialEq)]
pub struct Retime {
    budget_s: f64,
    /// The step after which it re-times.
    pub at: u64,
    /// The steps after this one are timed (`SKIP` into the session, or into the full size).
    pub from: u64,
    /// The epochs' bound on the length.
    bound: u64,
    /// The session's clock after step `from`, once it is reached.
    clock_at_from: Option<f64>,
}

impl Retime {
    /// The re-timing still to come for a run in `state` (warm-up `warmup` steps) whose
    /// session starts at step `start`: the first ([`budget::retime_step`]); then one every
    /// tenth of the run, each timing the steps since the one before (so a run whose steps
    /// slow down or speed up later still ends on its budget), but none in the last tenth;
    /// with progressive resolution, the one whose window would cross the switch to full size
    /// comes just after it instead, timing full-size steps only.
    pub fn next(
        state: &RunState,
        budget_s: f64,
        warmup: u64,
        start: u64,
        bound: u64,
    ) -> Option<Self> {
        let total = state.total_steps;
        let (at, from) = match state.budget.retimed_at.last() {
            None => (
                budget::retime_step(total, warmup, start)?,
                start + budget::SKIP,
            ),
            Some(&last) => {
                let from = last.max(start + budget::SKIP);
                let at = from + (total / 10).max(budget::RETIME_AFTER);
                match state.budget.switch_step {
                    Some(switch) if last < switch && at + budget::SKIP >= switch => {
                        let from = switch.max(start) + budget::SKIP;
                        (from - budget::SKIP + budget::RETIME_AFTER, from)
                    }
                    _ if at > total - total / 10 => return None,
                    _ => (at, from),
                }
            }
        };
        (at < total).then_some(Retime {
            budget_s,
            at,
            from,
            bound,
            clock_at_from: None,
        })
    }
}

/// Re-times the run when a re-timing is due.
pub struct Retimer {
    pub next: Option<Retime>,
    /// Progressive resolution: the first full-size step, shared with the loader.
    pub switch: Arc<AtomicU64>,
}

impl Retimer {
    /// After step `done`: the re-timed length, when this is the step to re-time at.
    pub fn retimed(&mut self, done: u64, s: &mut Session) -> Option<u64> {
        let now = s.clock.session_s();
        let r = self.next.as_mut()?;
        if done == r.from {
            r.clock_at_from = Some(now);
        }
        if done < r.at {
            return None;
        }
        let r = self.next.take()?;
        let per_step = (s.clock.session_s() - r.clock_at_from?) / (done - r.from).max(1) as f64;
        let fraction = s.cfg.data.progressive_fraction;
        // progressive resolution, the switch still to come: the full-size steps cost more
        let switch = s.state.budget.switch_step.filter(|&w| done < w);
        let phases = switch
            .and(s.state.budget.late_over_early)
            .map(|rho| (fraction, rho));
        let left = r.budget_s - s.clock.trained_s();
        let mut total = [budget::fit_length(left, done, per_step, phases, r.bound) as f64];
        // every rank runs rank 0's length
        crate::dist::world().broadcast_f64(&mut total, "broadcast of the re-timed budget's steps");
        let total = total[0] as u64;
        if switch.is_some() {
            // the batches already prepared stay early ones
            let ahead = done + s.cfg.train.prefetch as u64 + 2;
            let at = budget::switch_step(fraction, total).max(ahead);
            s.state.budget.switch_step = Some(at);
            self.switch.store(at, Ordering::Relaxed);
        }
        if crate::dist::is_root() {
            s.console.bar.set_length(total);
            let line = format!(
                "re-timed at step {done}: {per_step:.3} s/step since step {}, {:.2} of {:.2} min spent: \
                 {total} steps in all (was {}){}",
                r.from,
                s.clock.trained_s() / 60.0,
                r.budget_s / 60.0,
                s.state.total_steps,
                match s.state.budget.switch_step.filter(|_| switch.is_some()) {
                    Some(w) => format!(", full size from step {w}"),
                    None => String::new(),
                }
            );
            s.console.say(line);
        }
        s.state.total_steps = total;
        s.state.budget.retimed_at.push(done);
        s.state.budget.retimed_lengths.push(total);
        self.next = Retime::next(&s.state, r.budget_s, 0, s.start, r.bound);
        let now = s.clock.session_s();
        if let Some(next) = self.next.as_mut().filter(|n| n.from == done) {
            next.clock_at_from = Some(now);
        }
        Some(total)
    }
}

impl RunObserver for Retimer {
    fn after_step(&mut self, r: &StepRecord, _: &Trainer, s: &mut Session) -> anyhow::Result<Flow> {
        Ok(match self.retimed(r.ctx.step + 1, s) {
            Some(total) => Flow::Refit(total),
            None => Flow::Continue,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::TrainConfig;
    use crate::train::observe::{Console, ManualClock};
    use crate::train::RunDir;

    #[test]
    fn refits_the_length_from_the_measured_speed_then_every_tenth() {
        let cfg = TrainConfig::default();
        let run = RunDir::open(std::path::Path::new("unused"));
        let mut state = RunState::fresh(&cfg, 100);
        state.budget.fitted = true;
        let hand = ManualClock::default();
        let mut s = Session::new(
            &cfg,
            &run,
            state,
            0,
            Box::new(hand.clone()),
            Console::captured(),
        );
        // 60 s of budget, warm-up 10: the first re-timing after step 25 times steps 6..=25
        let mut r = Retimer {
            next: Retime::next(&s.state, 60.0, 10, 0, 1000),
            switch: Default::default(),
        };
        assert_eq!(r.next.as_ref().map(|n| (n.at, n.from)), Some((25, 5)));
        let mut refits = Vec::new();
        for done in 1..=200 {
            hand.advance(0.5); // 0.5 s a step: 120 steps fit in 60 s
            if let Some(total) = r.retimed(done, &mut s) {
                refits.push((done, total));
                s.state.total_steps = total;
            }
            if done == s.state.total_steps {
                break;
            }
        }
        // at 25: 12.5 s spent, 47.5 s left at 0.5 s/step → 25 + 95; then every 25 steps
        // (a tenth of 120, at least RETIME_AFTER), none in the last tenth
        assert_eq!(refits, vec![(25, 120), (50, 120), (75, 120), (100, 120)]);
        assert_eq!(s.state.budget.retimed_at, vec![25, 50, 75, 100]);
        assert!(s.console.lines()[0].starts_with("re-timed at step 25: 0.500 s/step"));
    }
}
