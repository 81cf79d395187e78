//! Data-parallel training on MPI: 2 ranks on this machine (`mpirun --oversubscribe -np 2`, one
//! libtorch thread each). Built only with `--features mpi` (`.ci/run` installs OpenMPI and runs
//! them: `cargo test --features mpi --test mpi`).
//!
//! - gradient equivalence: 2 ranks × K/2 images give the loss and summed gradients of one
//!   process × K (NT-Xent, InfoNCE with a queue, Barlow Twins), to 1e-5;
//! - a 2-rank run trains, checkpoints, loses a rank (SIGKILL): the job ends within seconds
//!   naming the rank; the resumed 2-rank run repeats the uninterrupted run's losses exactly;
//! - a rank that hangs (SIGSTOP) ends the job after `train.collective_timeout`;
//! - every method trains with 2 ranks, which stay in sync (checked at every checkpoint);
//! - without BatchNorm (MAE on a ViT) 2 ranks train the losses of one process;
//! - a batch that does not split over the ranks is refused.
#![cfg(feature = "mpi")]

mod common;

use common::{text, tiny};
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// `mpirun -np <ranks> selfsup <args>` on this machine (as root too), a thread per rank.
fn mpirun(ranks: usize, args: &[String]) -> Command {
    let mut c = Command::new("mpirun");
    c.args(["--oversubscribe", "-np", &ranks.to_string()])
        .arg(env!("CARGO_BIN_EXE_selfsup"))
        .args(args)
        .env("SELFSUP_CACHE", env!("CARGO_TARGET_TMPDIR"))
        .env("OMPI_ALLOW_RUN_AS_ROOT", "1")
        .env("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1")
        .env("OMPI_MCA_rmaps_base_oversubscribe", "1");
    c
}

fn run(c: &mut Command) -> Output {
    c.output()
        .expect("mpirun runs (apt-get install openmpi-bin)")
}

fn strings(a: &[&str]) -> Vec<String> {
    a.iter().map(|s| s.to_string()).collect()
}

/// A tiny run of 30 epochs (150 steps of 16 images), a metrics line every step.
fn tiny_run(out: &Path, extra: &[&str]) -> Vec<String> {
    let mut a = vec!["pretrain".to_string()];
    a.extend(tiny(out));
    a.extend(strings(&[
        "--epochs",
        "30",
        "--no-eval",
        "--set",
        "train.log_every=1",
        "--set",
        "train.checkpoint_every=2",
        "--set",
        "train.prefetch=0",
    ]));
    a.extend(strings(extra));
    a
}

/// (step, loss) of every training line of the run's metrics.
fn losses(out: &Path) -> Vec<(u64, f64)> {
    std::fs::read_to_string(out.join("metrics.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter(|v| v.get("loss").is_some())
        .map(|v| (v["step"].as_u64().unwrap(), v["loss"].as_f64().unwrap()))
        .collect()
}

fn checkpoint_step(out: &Path) -> u64 {
    let c = out.join("checkpoint.safetensors");
    match c.exists() {
        true => selfsup::train::load_checkpoint(&c).unwrap().state.step,
        false => 0,
    }
}

/// The pids of `mpirun`'s ranks (its children on this machine), in start order.
fn ranks_of(mpirun: &Child) -> Vec<u32> {
    let out = Command::new("pgrep")
        .args(["-P", &mpirun.id().to_string()])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .map(|p| p.parse().unwrap())
        .collect()
}

/// Waits for `child` to end, at most `limit`; its output and how long it took.
fn wait_bounded(child: Child, limit: Duration) -> (Output, Duration) {
    let start = Instant::now();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || tx.send(child.wait_with_output()));
    let out = rx
        .recv_timeout(limit)
        .unwrap_or_else(|_| panic!("the job did not end within {limit:?}"))
        .unwrap();
    (out, start.elapsed())
}

/// Starts `args` under 2 ranks and waits until its checkpoint reaches `step`.
fn start_until_checkpoint(args: &[String], out: &Path, step: u64) -> Child {
    let child = mpirun(2, args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let start = Instant::now();
    while checkpoint_step(out) < step {
        assert!(
            start.elapsed() < Duration::from_secs(120),
            "no checkpoint at step {step}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    child
}

fn signal(pid: u32, sig: &str) {
    assert!(Command::new("kill")
        .args([sig, &pid.to_string()])
        .status()
        .unwrap()
        .success());
}

#[test]
fn two_ranks_give_the_loss_and_gradients_of_one_process() {
    let o = run(&mut mpirun(
        2,
        &strings(&["dist-check", "--images", "16", "--tolerance", "1e-5"]),
    ));
    let t = text(&o);
    assert!(o.status.success(), "{t}");
    for loss in ["nt_xent", "info_nce_queue", "barlow_twins"] {
        assert!(
            t.contains(&format!("{loss:<15} 2 ranks x 8 vs 1 process x 16")),
            "{t}"
        );
    }
    assert!(t.contains("ok: 2 ranks agree with one process"), "{t}");
}

#[test]
fn a_killed_rank_ends_the_job_and_the_resumed_run_repeats_the_uninterrupted_losses() {
    let dir = tempfile::tempdir().unwrap();
    let (whole, cut) = (dir.path().join("whole"), dir.path().join("cut"));
    let o = run(&mut mpirun(2, &tiny_run(&whole, &[])));
    assert!(o.status.success(), "{}", text(&o));
    let reference = losses(&whole);
    assert_eq!(reference.len(), 150, "{reference:?}");
    assert!(reference.iter().all(|(_, l)| l.is_finite()));

    let job = start_until_checkpoint(&tiny_run(&cut, &[]), &cut, 4);
    let ranks = ranks_of(&job);
    assert_eq!(ranks.len(), 2, "{ranks:?}");
    signal(ranks[1], "-KILL");
    let (o, took) = wait_bounded(job, Duration::from_secs(60));
    let t = text(&o);
    assert!(!o.status.success(), "{t}");
    assert!(t.contains("rank 1"), "the message names the rank: {t}");
    assert!(took < Duration::from_secs(30), "took {took:?}");

    // the checkpoint left is valid; resume it with the same 2 ranks
    let at = checkpoint_step(&cut);
    assert!((4..150).contains(&at), "killed at step {at}");
    let o = run(&mut mpirun(2, &tiny_run(&cut, &["--resume"])));
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(losses(&cut), reference, "resumed at step {at}");
}

#[test]
fn a_hung_rank_ends_the_job_after_the_collective_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("hung");
    let args = tiny_run(
        &out,
        &[
            "--set",
            "train.epochs=400",
            "--set",
            "train.collective_timeout=3",
        ],
    );
    let job = start_until_checkpoint(&args, &out, 2);
    let ranks = ranks_of(&job);
    signal(ranks[1], "-STOP");
    let (o, took) = wait_bounded(job, Duration::from_secs(60));
    let t = text(&o);
    let _ = Command::new("kill")
        .args(["-CONT", &ranks[1].to_string()])
        .status();
    assert!(!o.status.success(), "{t}");
    assert!(
        t.contains("rank 0 waited") && t.contains("train.collective_timeout = 3 s"),
        "{t}"
    );
    assert!(took < Duration::from_secs(30), "took {took:?}");
    assert!(checkpoint_step(&out) >= 2, "the checkpoint stays valid");
}

/// One epoch (5 steps; DeepCluster's run asks for 2) of `extra` on 2 ranks; the ranks compare a checksum of every variable
/// at each checkpoint (every 2 steps and the last), so success means they stayed in sync.
fn trains_on_two_ranks(dir: &Path, i: usize, extra: &[&str]) {
    let out = dir.join(format!("m{i}"));
    let mut args = tiny_run(&out, &["--set", "train.epochs=1"]);
    args.extend(strings(extra));
    let o = run(&mut mpirun(2, &args));
    let t = text(&o);
    assert!(o.status.success(), "{extra:?}: {t}");
    let l = losses(&out);
    assert!(l.len() >= 5, "{extra:?}: {l:?}");
    assert_eq!(
        l.last().map(|x| x.0),
        Some(checkpoint_step(&out)),
        "{extra:?}"
    );
    assert!(l.iter().all(|(_, v)| v.is_finite()), "{extra:?}: {l:?}");
}

#[test]
fn every_method_trains_on_two_ranks_that_stay_in_sync() {
    let dir = tempfile::tempdir().unwrap();
    let runs = common::method_runs();
    for (i, extra) in runs.iter().enumerate() {
        trains_on_two_ranks(dir.path(), i, extra);
    }
}

#[test]
fn without_batchnorm_two_ranks_train_the_losses_of_one_process() {
    let dir = tempfile::tempdir().unwrap();
    let (one, two) = (dir.path().join("one"), dir.path().join("two"));
    let extra = [
        "--method",
        "mae",
        "--backbone",
        "vit_tiny",
        "--set",
        "train.epochs=1",
    ];
    let o = run(common::selfsup().args(tiny_run(&one, &extra)));
    assert!(o.status.success(), "{}", text(&o));
    let o = run(&mut mpirun(2, &tiny_run(&two, &extra)));
    assert!(o.status.success(), "{}", text(&o));
    let (a, b) = (losses(&one), losses(&two));
    assert_eq!(a.len(), 5);
    assert_eq!(a.len(), b.len());
    for ((s, x), (_, y)) in a.iter().zip(&b) {
        assert!(
            (x - y).abs() <= 1e-4 * x.abs(),
            "step {s}: {x} in one process, {y} on 2 ranks"
        );
    }
}

#[test]
fn a_batch_that_does_not_split_over_the_ranks_is_refused_before_training() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("r");
    let o = run(&mut mpirun(
        2,
        &tiny_run(&out, &["--set", "train.batch_size=15"]),
    ));
    let t = text(&o);
    assert!(
        !o.status.success() && t.contains("does not split evenly"),
        "{t}"
    );
    assert!(!out.join("checkpoint.safetensors").exists());
}
