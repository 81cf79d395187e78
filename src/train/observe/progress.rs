//! Progress: the bar's position, a line at each epoch's end, and where no terminal draws the
//! bar, a plain line every `train.progress_seconds` with the speed and the time left.

use super::{RunObserver, Session};
use crate::train::trainer::{Flow, StepRecord, Trainer};

pub struct Progress {
    /// The clock at the last plain line.
    last_line: f64,
}

impl Progress {
    pub fn new(s: &Session) -> Self {
        Progress {
            last_line: s.clock.now(),
        }
    }
}

impl RunObserver for Progress {
    fn after_step(&mut self, r: &StepRecord, _: &Trainer, s: &mut Session) -> anyhow::Result<Flow> {
        let t = &s.cfg.train;
        let (done, total, per_epoch) = (r.ctx.step + 1, r.ctx.total_steps, r.ctx.steps_per_epoch);
        let loss = r.done.loss;
        s.console.bar.inc(1);
        if done.is_multiple_of(per_epoch) {
            let line = format!("epoch {}/{}: loss {loss:.4}", done / per_epoch, t.epochs);
            s.console.say(line);
        }
        if s.console.plain && s.clock.now() - self.last_line >= t.progress_seconds {
            let ran = (s.start, s.clock.session_s());
            s.console
                .say(plain_line(done, total, loss, t.batch_size, ran));
            self.last_line = s.clock.now();
        }
        Ok(Flow::Continue)
    }
}

/// The plain progress line after step `done` of `total`, for a session that started at step
/// `start` and has trained `secs` seconds: the speed so far and the time left at it.
pub fn plain_line(
    done: u64,
    total: u64,
    loss: f64,
    batch: usize,
    (start, secs): (u64, f64),
) -> String {
    let ran = (done - start) as f64;
    format!(
        "step {done}/{total}: loss {loss:.4}, {:.0} img/s, {:.1} min left",
        ran * batch as f64 / secs.max(1e-9),
        secs / ran * (total - done) as f64 / 60.0
    )
}

#[cfg(test)]
mod tests {
    use super::plain_line;

    #[test]
    fn the_plain_line_counts_this_session_only() {
        // resumed at step 100; 50 steps of 64 images in 40 s; 150 steps left at 0.8 s each
        assert_eq!(
            plain_line(150, 300, 1.23456, 64, (100, 40.0)),
            "step 150/300: loss 1.2346, 80 img/s, 2.0 min left"
        );
    }
}
