//! What a run shows the person watching: a progress bar on a terminal, plain lines elsewhere
//! (a log file, CI, nohup), and messages above the bar. Rank 0 alone speaks.

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::io::IsTerminal;

pub struct Console {
    pub bar: ProgressBar,
    /// Plain progress lines are wanted: no terminal draws the bar (rank 0 only).
    pub plain: bool,
    /// Tests: the lines said, kept instead of printed.
    captured: Option<Vec<String>>,
}

impl Console {
    /// The bar of a run of `total` steps starting at `start`, on stderr (rank 0).
    pub fn new(total: u64, start: u64) -> Self {
        let root = crate::dist::is_root();
        let target = match root {
            true => ProgressDrawTarget::stderr_with_hz(4),
            false => ProgressDrawTarget::hidden(),
        };
        let bar = ProgressBar::with_draw_target(Some(total), target);
        bar.set_style(
            ProgressStyle::with_template(
                "{bar:30} {pos}/{len} steps | {msg} | {elapsed_precise} ETA {eta_precise}",
            )
            .expect("valid template"),
        );
        bar.set_position(start);
        bar.reset_eta();
        Console {
            bar,
            plain: !std::io::stderr().is_terminal() && root,
            captured: None,
        }
    }

    /// A console that keeps its lines (plain progress on) for a test to read.
    pub fn captured() -> Self {
        Console {
            bar: ProgressBar::hidden(),
            plain: true,
            captured: Some(Vec::new()),
        }
    }

    /// The lines kept by a [`captured`](Self::captured) console.
    pub fn lines(&self) -> &[String] {
        self.captured.as_deref().unwrap_or_default()
    }

    /// A line for the user (rank 0): above the progress bar, or on stderr where the bar is
    /// hidden.
    pub fn say(&mut self, line: String) {
        if let Some(kept) = &mut self.captured {
            kept.push(line);
            return;
        }
        match (crate::dist::is_root(), self.bar.is_hidden()) {
            (false, _) => {}
            (true, false) => self.bar.println(line),
            (true, true) => eprintln!("{line}"),
        }
    }
}
