//! A wall-clock budget (`train.minutes`): how many steps fit, measured on the run itself.
//!
//! The schedules (warm-up + cosine learning rate, EMA momentum) need the run's length in steps
//! up front. Under a budget of `T` seconds the run measures its own speed over steps
//! `start + SKIP .. start + SKIP + MEASURE` (the first steps are slower: allocation, caches) and
//! fixes
//! ```text
//! total = min(bound, done + ⌊(T − elapsed) / seconds_per_step⌋)
//! ```
//! once, where `bound` is the length `train.epochs` allows. The fitted total is stored in the
//! checkpoint, so a resumed run keeps it and its schedules stay those of the first session.
//! Until the fit (the first `SKIP + MEASURE` steps, inside the default half-epoch warm-up),
//! schedules use `bound`.

/// Steps not timed at the start of a session.
pub const SKIP: u64 = 3;
/// Steps timed to estimate seconds per step.
pub const MEASURE: u64 = 20;

pub struct TimeBudget {
    /// The budget in seconds of training (over all sessions of the run).
    pub seconds: f64,
    start: u64,
    /// (steps done, elapsed seconds) when timing began.
    mark: Option<(u64, f64)>,
    rate: Option<f64>,
}

impl TimeBudget {
    /// A budget of `seconds` for a session that starts at step `start`.
    pub fn new(seconds: f64, start: u64) -> Self {
        TimeBudget {
            seconds,
            start,
            mark: None,
            rate: None,
        }
    }

    /// Called after every step with the steps done, the training seconds elapsed (all
    /// sessions) and the epoch bound. Returns the fitted total steps once, when the timing
    /// window closes; `None` before and after.
    pub fn observe(&mut self, done: u64, elapsed: f64, bound: u64) -> Option<u64> {
        if done == self.start + SKIP {
            self.mark = Some((done, elapsed));
        }
        let (d0, e0) = self.mark?;
        if done != d0 + MEASURE || self.rate.is_some() {
            return None;
        }
        let per_step = ((elapsed - e0) / MEASURE as f64).max(1e-9);
        self.rate = Some(per_step);
        let remaining = ((self.seconds - elapsed).max(0.0) / per_step).floor() as u64;
        Some(done.saturating_add(remaining).min(bound).max(done))
    }

    /// Seconds per step measured, once the window has closed.
    pub fn seconds_per_step(&self) -> Option<f64> {
        self.rate
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feeds a budget steps that take `first` seconds for the first SKIP steps, then `each`.
    fn run(budget: f64, start: u64, first: f64, each: f64, bound: u64) -> Option<u64> {
        let mut b = TimeBudget::new(budget, start);
        let mut elapsed = 0.0;
        for done in start + 1..=bound {
            elapsed += if done <= start + SKIP { first } else { each };
            if let Some(total) = b.observe(done, elapsed, bound) {
                return Some(total);
            }
        }
        None
    }

    #[test]
    fn fits_the_steps_the_measured_speed_allows() {
        // 3 slow steps (3 s) then 0.5 s/step: after 23 steps 13 s are spent; (600 − 13)/0.5 =
        // 1174 more steps.
        assert_eq!(run(600.0, 0, 1.0, 0.5, 100_000), Some(23 + 1174));
    }

    #[test]
    fn the_epoch_bound_wins_and_an_exhausted_budget_stops_at_once() {
        assert_eq!(run(600.0, 0, 1.0, 0.5, 500), Some(500));
        assert_eq!(run(5.0, 0, 1.0, 0.5, 100_000), Some(23));
    }

    #[test]
    fn a_resumed_session_times_its_own_steps_and_short_runs_never_fit() {
        assert_eq!(run(600.0, 40, 1.0, 0.5, 100_000), Some(63 + 1174));
        assert_eq!(run(600.0, 0, 1.0, 0.5, 20), None);
    }
}
