//! Never lose a run: SIGKILL at random moments always leaves a loadable checkpoint, and an
//! interrupted then resumed run computes exactly the losses of the uninterrupted run.

mod common;

use common::resume::{
    checkpoint_step, kill_past_step, losses, resumes_exactly, series, spawn_pretrain,
    start_or_resume,
};
use common::{run, selfsup, text, tiny};
use selfsup::optim::warmup_cosine;
use selfsup::train::load_checkpoint;
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

#[test]
fn sigkill_at_random_moments_always_leaves_a_loadable_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("run");
    let mut args = tiny(&out);
    args.extend(
        [
            "--epochs",
            "100",
            "--set",
            "train.checkpoint_every=1",
            "--no-eval",
            "--resume",
        ]
        .map(String::from),
    );
    // Kill delays from a fixed LCG: reproducible, spread over 0.1–2.5 s after the start
    // (start-up, data generation, mid-step and mid-checkpoint moments all get hit). The debug
    // binary alone takes 0.6–0.8 s to start where the CUDA libraries load (src/device/
    // cuda_libs.rs), more beside the suite's other tests: a window ending at 1.6 s once saw
    // no checkpoint in any of the six rounds.
    let mut x: u64 = 0x5eed;
    let mut last = 0;
    let mut killed_mid_run = 0;
    for round in 0..6 {
        x = x
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let delay = Duration::from_millis(100 + (x >> 33) % 2400);
        let mut child = spawn_pretrain(&args);
        std::thread::sleep(delay);
        if child.try_wait().unwrap().is_none() {
            killed_mid_run += 1;
        }
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        if let Some(step) = checkpoint_step(&out) {
            assert!(
                step >= last,
                "round {round}: checkpoint went back from step {last} to {step}"
            );
            last = step;
        }
    }
    assert!(
        killed_mid_run >= 4,
        "only {killed_mid_run} of 6 kills hit a running process"
    );
    assert!(last > 0, "no checkpoint was ever written");
    // Without --resume the folder is protected.
    let fresh: Vec<String> = args.iter().filter(|a| *a != "--resume").cloned().collect();
    let o = run(selfsup().arg("pretrain").args(&fresh));
    assert!(
        !o.status.success() && text(&o).contains("--resume"),
        "{}",
        text(&o)
    );
    let o = run(selfsup().arg("pretrain").args(start_or_resume(&args)));
    assert!(o.status.success(), "{}", text(&o));
    let t = text(&o);
    assert!(t.contains("resuming") && t.contains("(of 500)"), "{t}");
    assert_eq!(checkpoint_step(&out), Some(500));
}

#[test]
fn an_interrupted_and_resumed_run_repeats_the_uninterrupted_losses_exactly() {
    resumes_exactly(&[]);
}

/// DeepCluster's memory bank and clustering are in the checkpoint: the resumed run sees the
/// same pseudo-labels (and re-clusters at the same epoch starts).
#[test]
fn an_interrupted_and_resumed_deepcluster_run_repeats_its_losses_exactly() {
    resumes_exactly(&["--method", "deepcluster", "--set", "method.prototypes=20"]);
}

/// FastSiam's four views are drawn from the same per-image streams as two: the resumed run
/// sees the same views and repeats the same losses.
#[test]
fn an_interrupted_and_resumed_fastsiam_run_repeats_its_losses_exactly() {
    resumes_exactly(&["--method", "fastsiam"]);
}

/// MoCo v3's momentum encoder is in the checkpoint and its momentum follows the step: the
/// resumed run's keys are the uninterrupted run's.
#[test]
fn an_interrupted_and_resumed_mocov3_run_repeats_its_losses_exactly() {
    resumes_exactly(&["--method", "mocov3"]);
}

/// Micro-batched (gradient caching, with LARS): the second pass's random state and BatchNorm's
/// statistics are functions of the step, so the resumed run repeats the uninterrupted one.
#[test]
fn an_interrupted_and_resumed_micro_batched_lars_run_repeats_its_losses_exactly() {
    resumes_exactly(&["--micro-batch", "3", "--optimizer", "lars"]);
}

/// A pretext task's views draw their labels (here the permutation of the tiles) from the
/// same per-image streams as the crops: the resumed run sees the same puzzles.
#[test]
fn an_interrupted_and_resumed_jigsaw_run_repeats_its_losses_exactly() {
    resumes_exactly(&["--method", "jigsaw", "--set", "method.permutations=10"]);
}

/// The context encoder's discriminator and its AdamW moments are in the store: the resumed
/// run's adversary is the same.
#[test]
fn an_interrupted_and_resumed_context_encoder_run_repeats_its_losses_exactly() {
    resumes_exactly(&["--method", "context_encoder"]);
}

/// MAE trains with AdamW: its moments and step count are in the checkpoint, and its masks are
/// drawn from (seed, step, index).
#[test]
fn an_interrupted_and_resumed_mae_run_repeats_its_losses_exactly() {
    resumes_exactly(&[
        "--method",
        "mae",
        "--backbone",
        "vit_tiny",
        "--set",
        "method.decoder_depth=1",
    ]);
}

/// SimMIM's unit masks are drawn from (seed, step, index) and its mask token is in the store:
/// the resumed run hides the same patches behind the same token.
#[test]
fn an_interrupted_and_resumed_simmim_run_repeats_its_losses_exactly() {
    resumes_exactly(&["--method", "simmim", "--backbone", "vit_tiny"]);
}

/// I-JEPA's block masks are drawn from (seed, step, index) and its target encoder and
/// predictor are in the store: the resumed run predicts the same blocks.
#[test]
fn an_interrupted_and_resumed_ijepa_run_repeats_its_losses_exactly() {
    resumes_exactly(&["--method", "ijepa", "--backbone", "vit_tiny"]);
}

/// iBOT's two centres, mask token and teacher are in the store and its block masks are drawn
/// from (seed, step, index): the resumed run repeats the same losses.
#[test]
fn an_interrupted_and_resumed_ibot_run_repeats_its_losses_exactly() {
    resumes_exactly(&[
        "--method",
        "ibot",
        "--backbone",
        "vit_tiny",
        "--set",
        "method.prototypes=32",
    ]);
}

/// Distillation reads its teacher again on resume (a frozen file, not in the checkpoint): the
/// resumed run's targets and losses are the uninterrupted run's.
#[test]
fn an_interrupted_and_resumed_distill_run_repeats_its_losses_exactly() {
    resumes_exactly(&["--method", "distill", "--teacher", common::tiny_teacher()]);
}

/// With the feature cache, the cached rows and their flags are in the checkpoint: the resumed
/// run does not recompute (or miss) a row the uninterrupted one had.
#[test]
fn an_interrupted_and_resumed_cached_distill_run_repeats_its_losses_exactly() {
    resumes_exactly(&[
        "--method",
        "distill",
        "--teacher",
        common::tiny_teacher(),
        "--set",
        "method.cache=true",
    ]);
}

/// Progressive resolution: 8-px views for the first half of the steps, then the images' 16;
/// the resumed session crosses the switch where the uninterrupted run did.
#[test]
fn an_interrupted_and_resumed_progressive_resolution_run_repeats_its_losses_exactly() {
    resumes_exactly(&[
        "--set",
        "data.progressive_size=8",
        "--set",
        "data.progressive_fraction=0.5",
    ]);
}

#[test]
fn a_resumed_time_budget_run_keeps_its_fitted_length_and_schedule() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("budget");
    let mut args = tiny(&out);
    args.extend(
        [
            "--epochs",
            "400",
            "--minutes",
            "0.1",
            "--set",
            "train.log_every=1",
            "--set",
            "train.checkpoint_every=3",
            "--no-eval",
            "--resume",
        ]
        .map(String::from),
    );
    kill_past_step(spawn_pretrain(&args), &out, 9);
    let state = load_checkpoint(&out.join("checkpoint.safetensors"))
        .unwrap()
        .state;
    assert!(
        state.budget.fitted,
        "the first checkpoint already holds the fitted length"
    );
    let o = run(selfsup().arg("pretrain").args(start_or_resume(&args)));
    let t = text(&o);
    assert!(o.status.success(), "{t}");
    assert!(
        !t.contains("time budget"),
        "a resumed run does not measure again: {t}"
    );
    // the resumed session re-timed the run 25 steps after it started (then every tenth)
    let last = load_checkpoint(&out.join("checkpoint.safetensors"))
        .unwrap()
        .state;
    let at = *last.budget.retimed_at.first().expect("the run re-timed");
    assert!(
        at > state.step && t.contains(&format!("re-timed at step {at}")),
        "{t}"
    );
    assert!(t.contains(&format!("(of {})", last.total_steps)), "{t}");
    // every step, before and after the kill, follows the schedule fitted to the budget, and
    // from the re-timing on the refitted one: 5 steps per epoch, warm-up
    // min(round(0.5 × 5), calibrated total / 4) throughout, peak 0.3
    let (calibrated, total) = (state.total_steps, last.total_steps);
    assert_eq!(last.budget.retimed_lengths.last(), Some(&total));
    let warmup = 3u64.min(calibrated / 4);
    assert_eq!(last.budget.warmup_steps, Some(warmup));
    let got: Vec<f64> = series(&out, "lr").into_iter().map(|(_, lr)| lr).collect();
    assert_eq!(got.len() as u64, total);
    for (s, lr) in got.iter().enumerate() {
        // the length in force: the calibrated one, then each re-timing's from its step on
        let length = last
            .budget
            .retimed_at
            .iter()
            .zip(&last.budget.retimed_lengths)
            .rfind(|(a, _)| s as u64 >= **a)
            .map_or(calibrated, |(_, l)| *l);
        let want = warmup_cosine(s as u64, length, warmup, 0.3, 0.0);
        assert!(
            (lr - want).abs() < 1e-12,
            "step {}: lr {lr}, schedule {want}",
            s + 1
        );
    }
}

/// Fine-tuning runs on the same trainer: Ctrl-C stops it with a checkpoint and the command
/// that continues, and `--resume` then gives exactly the uninterrupted fine-tuning's losses
/// and test accuracy.
#[test]
fn an_interrupted_and_resumed_finetuning_repeats_the_uninterrupted_one_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let pre = dir.path().join("run");
    let o = run(selfsup().arg("pretrain").args(tiny(&pre)).args([
        "--epochs",
        "1",
        "--no-eval",
        "--set",
        "train.log_every=1",
        "--set",
        "train.checkpoint_every=3",
    ]));
    assert!(o.status.success(), "{}", text(&o));
    let finetune = |out: &Path| {
        let mut c = selfsup();
        c.args(["finetune", "--run", pre.to_str().unwrap(), "--out"])
            .arg(out)
            .args(["--epochs", "60", "--batch-size", "16"]);
        c
    };
    let score = |t: &str| t.split("test top-1 ").nth(1).map(|r| r[..6].to_string());
    let whole = dir.path().join("whole");
    let o = run(&mut finetune(&whole));
    let t = text(&o);
    assert!(
        o.status.success() && t.contains("fine-tuned 300 steps"),
        "{t}"
    );
    let want = (losses(&whole), score(&t));
    assert_eq!(want.0.len(), 300, "one line a step");

    let cut = dir.path().join("cut");
    let mut child = finetune(&cut)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    common::wait_until_contains(&cut.join("metrics.jsonl"), "\"step\":20,", 120);
    // SAFETY: kill(2) on our own child's pid
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    let status = common::wait_for(&mut child, 60);
    let mut err = String::new();
    std::io::Read::read_to_string(child.stderr.as_mut().unwrap(), &mut err).unwrap();
    assert_eq!(status.code(), Some(130), "{err}");
    assert!(
        err.contains("the same `selfsup finetune` command with --resume"),
        "{err}"
    );
    let stopped = checkpoint_step(&cut).unwrap();
    assert!((20..300).contains(&stopped), "stopped at {stopped}");

    let o = run(finetune(&cut).arg("--resume"));
    let t = text(&o);
    assert!(o.status.success(), "{t}");
    assert!(t.contains(&format!("at step {stopped}/300")), "{t}");
    assert_eq!((losses(&cut), score(&t)), want);
    // other flags than the checkpoint's are refused
    let o = run(finetune(&cut).args(["--resume", "--lr", "0.01"]));
    assert!(
        !o.status.success() && text(&o).contains("cannot resume"),
        "{}",
        text(&o)
    );
}
