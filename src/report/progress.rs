//! Progress of long work that is not training (embedding 50 000 images, the t-SNE map): a bar
//! with rate and ETA on a terminal; without one (a log file, CI), a line every 30 s.

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::time::{Duration, Instant};

pub struct Work {
    bar: ProgressBar,
    what: String,
    unit: &'static str,
    total: u64,
    done: u64,
    start: Instant,
    last_line: Instant,
}

impl Work {
    /// `what` is shown before the bar ("embedding train"), `unit` after the counts ("images").
    pub fn new(what: &str, total: usize, unit: &'static str) -> Work {
        let bar = ProgressBar::with_draw_target(Some(total as u64), ProgressDrawTarget::stderr());
        bar.set_style(
            ProgressStyle::with_template(&format!(
                "{what} {{bar:30}} {{pos}}/{{len}} {unit}, {{per_sec}}, ETA {{eta}}"
            ))
            .expect("valid template"),
        );
        Work {
            bar,
            what: what.to_string(),
            unit,
            total: total as u64,
            done: 0,
            start: Instant::now(),
            last_line: Instant::now(),
        }
    }

    /// `n` more done.
    pub fn advance(&mut self, n: usize) {
        self.done += n as u64;
        self.bar.inc(n as u64);
        if self.bar.is_hidden() && self.last_line.elapsed() > Duration::from_secs(30) {
            self.last_line = Instant::now();
            eprintln!("{}: {}/{} {}", self.what, self.done, self.total, self.unit);
        }
    }

    /// Clears the bar; returns the seconds taken.
    pub fn finish(self) -> f64 {
        self.bar.finish_and_clear();
        self.start.elapsed().as_secs_f64()
    }
}
