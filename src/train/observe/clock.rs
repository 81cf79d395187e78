//! The training clock: seconds this run has trained, over all its sessions, less the time
//! spent in evaluations on the way. The time budget and the metrics read it; tests drive it
//! with a [`ManualClock`].

use std::cell::Cell;
use std::rc::Rc;
use std::time::Instant;

/// A source of seconds from a fixed origin.
pub trait Clock {
    fn seconds(&self) -> f64;
}

/// The monotonic wall clock.
pub struct WallClock(Instant);

impl WallClock {
    pub fn new() -> Self {
        WallClock(Instant::now())
    }
}

impl Default for WallClock {
    fn default() -> Self {
        Self::new()
    }
}

impl Clock for WallClock {
    fn seconds(&self) -> f64 {
        self.0.elapsed().as_secs_f64()
    }
}

/// A clock a test moves by hand; clones share the time.
#[derive(Clone, Default)]
pub struct ManualClock(Rc<Cell<f64>>);

impl ManualClock {
    /// Moves the time forward by `s` seconds.
    pub fn advance(&self, s: f64) {
        self.0.set(self.0.get() + s);
    }
}

impl Clock for ManualClock {
    fn seconds(&self) -> f64 {
        self.0.get()
    }
}

/// `trained = before + (now − origin − paused)`: the seconds trained by earlier sessions
/// (`before`, from the checkpoint), plus this session's wall clock less its pauses.
pub struct TrainClock {
    clock: Box<dyn Clock>,
    origin: f64,
    before: f64,
    paused: f64,
}

impl TrainClock {
    /// Starts this session's clock now; `before`: seconds trained by earlier sessions.
    pub fn new(clock: Box<dyn Clock>, before: f64) -> Self {
        TrainClock {
            origin: clock.seconds(),
            clock,
            before,
            paused: 0.0,
        }
    }

    /// The raw time, for measuring intervals.
    pub fn now(&self) -> f64 {
        self.clock.seconds()
    }

    /// Seconds this session has trained: wall clock less the pauses.
    pub fn session_s(&self) -> f64 {
        self.now() - self.origin - self.paused
    }

    /// Seconds the run has trained over all its sessions.
    pub fn trained_s(&self) -> f64 {
        self.before + self.session_s()
    }

    /// Takes `s` seconds off the training clock (an evaluation on the way).
    pub fn pause(&mut self, s: f64) {
        self.paused += s;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pauses_come_off_the_training_clock_and_earlier_sessions_count() {
        let hand = ManualClock::default();
        hand.advance(100.0); // the origin is wherever the clock stands at the start
        let mut c = TrainClock::new(Box::new(hand.clone()), 60.0);
        hand.advance(30.0);
        c.pause(10.0);
        assert_eq!(c.session_s(), 20.0);
        assert_eq!(c.trained_s(), 80.0);
        assert_eq!(c.now(), 130.0);
    }
}
