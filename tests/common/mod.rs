//! Helpers shared by the integration tests: the binary, tiny run settings, output text.
#![allow(dead_code)]

use std::path::Path;
use std::process::{Command, Output};

/// The binary, with its image cache in a folder of the test build (not the user's
/// `~/.cache`): `target/tmp`.
pub fn selfsup() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_selfsup"));
    c.env("SELFSUP_CACHE", env!("CARGO_TARGET_TMPDIR"));
    c
}

/// Settings for a run of a few seconds on tiny synthetic images.
pub fn tiny(out: &Path) -> Vec<String> {
    [
        "--out",
        out.to_str().unwrap(),
        "--width",
        "0.0625",
        "--batch-size",
        "16",
        "--threads",
        "1",
        "--set",
        "data.synthetic_train_per_class=8",
        "--set",
        "data.synthetic_test_per_class=4",
        "--set",
        "data.synthetic_size=16",
        "--set",
        "eval.linear_epochs=2",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

pub fn run(cmd: &mut Command) -> Output {
    cmd.output().expect("selfsup runs")
}

pub fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}
