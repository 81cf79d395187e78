//! Interrupting and resuming runs: kill a run past a step, read its checkpoint's step and its
//! metrics, and check that a resumed run repeats the uninterrupted one's losses exactly.

use super::{run, selfsup, text, tiny};
use selfsup::train::load_checkpoint;
use std::path::Path;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

/// `args`, without `--resume` while the `--out` folder holds no checkpoint yet (a resume of
/// nothing is refused): the tests' "start, or continue after a kill".
pub fn start_or_resume(args: &[String]) -> Vec<String> {
    let out = args
        .iter()
        .position(|a| a == "--out")
        .map(|i| Path::new(&args[i + 1]).join("checkpoint.safetensors"));
    let has_checkpoint = out.is_some_and(|c| c.exists());
    args.iter()
        .filter(|a| has_checkpoint || *a != "--resume")
        .cloned()
        .collect()
}

pub fn spawn_pretrain(args: &[String]) -> Child {
    selfsup()
        .arg("pretrain")
        .args(start_or_resume(args))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

/// The step of the run folder's checkpoint, if it has one (it must then load).
pub fn checkpoint_step(out: &Path) -> Option<u64> {
    let ckpt = out.join("checkpoint.safetensors");
    ckpt.exists().then(|| {
        load_checkpoint(&ckpt)
            .unwrap_or_else(|e| panic!("{} does not load: {e:#}", ckpt.display()))
            .state
            .step
    })
}

/// Kills the run writing to `out` once its checkpoint has reached step `step`.
pub fn kill_past_step(mut child: Child, out: &Path, step: u64) {
    let start = Instant::now();
    while checkpoint_step(out).unwrap_or(0) < step {
        assert!(
            start.elapsed() < Duration::from_secs(120),
            "no checkpoint past step {step}"
        );
        assert!(
            child.try_wait().unwrap().is_none(),
            "the run ended before it could be killed"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    child.kill().unwrap();
    child.wait().unwrap();
}

/// (step, value of `key`) of every training line of metrics.jsonl.
pub fn series(out: &Path, key: &str) -> Vec<(u64, f64)> {
    std::fs::read_to_string(out.join("metrics.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter(|v| v.get(key).is_some())
        .map(|v| (v["step"].as_u64().unwrap(), v[key].as_f64().unwrap()))
        .collect()
}

pub fn losses(out: &Path) -> Vec<(u64, f64)> {
    series(out, "loss")
}

/// Runs `tiny` settings (plus `extra`) for 8 epochs whole, then again killed past step 9 and
/// resumed; the losses of every step must be equal.
pub fn resumes_exactly(extra: &[&str]) {
    let dir = tempfile::tempdir().unwrap();
    let settings = |out: &Path| {
        let mut a = tiny(out);
        a.extend(extra.iter().map(|s| s.to_string()));
        a.extend(
            [
                "--epochs",
                "8",
                "--set",
                "train.log_every=1",
                "--set",
                "train.checkpoint_every=3",
                "--no-eval",
                "--resume",
            ]
            .map(String::from),
        );
        a
    };
    let whole = dir.path().join("whole");
    let o = run(selfsup()
        .arg("pretrain")
        .args(start_or_resume(&settings(&whole))));
    assert!(o.status.success(), "{}", text(&o));
    let want = losses(&whole);
    assert_eq!(want.len(), 40, "5 steps × 8 epochs, one line each");

    // The same run, killed once its checkpoint has passed step 9, then resumed.
    let cut = dir.path().join("cut");
    kill_past_step(spawn_pretrain(&settings(&cut)), &cut, 9);
    let resumed_from = checkpoint_step(&cut).unwrap();
    assert!(resumed_from < 40, "killed too late to test a resume");
    let o = run(selfsup()
        .arg("pretrain")
        .args(start_or_resume(&settings(&cut))));
    assert!(o.status.success(), "{}", text(&o));
    assert!(
        text(&o).contains(&format!("at step {resumed_from}/40")),
        "{}",
        text(&o)
    );

    let got = losses(&cut);
    let steps: Vec<u64> = got.iter().map(|(s, _)| *s).collect();
    assert_eq!(
        steps,
        (1..=40).collect::<Vec<_>>(),
        "every step logged exactly once"
    );
    for ((s, a), (_, b)) in want.iter().zip(&got) {
        assert_eq!(
            a, b,
            "step {s}: loss {a} uninterrupted vs {b} resumed (resumed from step {resumed_from})"
        );
    }
}
