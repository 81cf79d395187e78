//! The first pass's progress on stderr.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// The first pass's progress: a bar with images/s and ETA on a terminal, a line every 30 s
/// otherwise, and a summary at the end.
pub(super) struct Progress {
    bar: ProgressBar,
    total: usize,
    start: Instant,
    last_line: std::cell::Cell<Instant>,
    done: std::cell::Cell<usize>,
    root: PathBuf,
}

impl Progress {
    pub(super) fn new(total: usize, root: &Path) -> Self {
        let bar = if total == 0 {
            ProgressBar::hidden()
        } else {
            ProgressBar::with_draw_target(Some(total as u64), ProgressDrawTarget::stderr())
        };
        bar.set_style(
            ProgressStyle::with_template(
                "decoding into the cache {bar:30} {pos}/{len} images, {per_sec}, ETA {eta}",
            )
            .expect("valid template"),
        );
        Progress {
            bar,
            total,
            start: Instant::now(),
            last_line: std::cell::Cell::new(Instant::now()),
            done: std::cell::Cell::new(0),
            root: root.to_path_buf(),
        }
    }

    pub(super) fn advance(&self, n: usize) {
        self.bar.inc(n as u64);
        self.done.set(self.done.get() + n);
        if self.bar.is_hidden() && self.last_line.get().elapsed() > Duration::from_secs(30) {
            self.last_line.set(Instant::now());
            let s = self.start.elapsed().as_secs_f64();
            eprintln!(
                "decoding into the cache: {}/{} images, {:.0} images/s",
                self.done.get(),
                self.total,
                self.done.get() as f64 / s
            );
        }
    }

    pub(super) fn finish(&self, reused: usize) {
        self.bar.finish_and_clear();
        let s = self.start.elapsed().as_secs_f64();
        if self.total > 0 {
            eprintln!(
                "cache: {}: decoded {} images in {s:.1} s ({:.0} images/s), {reused} taken from the cache",
                self.root.display(),
                self.done.get(),
                self.done.get() as f64 / s.max(1e-9)
            );
        } else {
            eprintln!(
                "cache: {}: all {reused} images taken from the cache",
                self.root.display()
            );
        }
    }
}
