//! Helpers shared by the integration tests: the binary, tiny run settings, output text.
#![allow(dead_code)]

pub mod resume;

use std::path::Path;
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::time::{Duration, Instant};

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

/// `selfsup pretrain` with the tests' tiny settings into `out` (5 steps an epoch), then `extra`.
pub fn pretrain_tiny(out: &Path, extra: &[&str]) -> Output {
    run(selfsup().arg("pretrain").args(tiny(out)).args(extra))
}

/// A tiny run of `epochs` epochs into `out`, without evaluation.
pub fn tiny_run(out: &Path, epochs: &str) -> Output {
    pretrain_tiny(out, &["--epochs", epochs, "--no-eval"])
}

/// Waits for `child` at most `secs` seconds; kills it and fails when it does not end.
pub fn wait_for(child: &mut Child, secs: u64) -> ExitStatus {
    let t = Instant::now();
    loop {
        if let Some(s) = child.try_wait().unwrap() {
            return s;
        }
        if t.elapsed() > Duration::from_secs(secs) {
            let _ = child.kill();
            panic!("the process did not end within {secs} s");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Waits until `path` exists and holds `needle`.
pub fn wait_until_contains(path: &Path, needle: &str, secs: u64) {
    let t = Instant::now();
    while !std::fs::read_to_string(path).is_ok_and(|s| s.contains(needle)) {
        assert!(
            t.elapsed() < Duration::from_secs(secs),
            "{} never held {needle:?}",
            path.display()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

pub fn long_run(out: &Path) -> Command {
    let mut c = selfsup();
    c.arg("pretrain")
        .args(tiny(out))
        .args(["--epochs", "4000", "--no-eval"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    c
}

/// A long tiny run into `out`, sent `signal` once metrics.jsonl has logged step `after`: its
/// exit status and stderr.
pub fn interrupted_run(out: &Path, signal: i32, after: u64) -> (ExitStatus, String) {
    let mut child = long_run(out).spawn().unwrap();
    wait_until_contains(&out.join("metrics.jsonl"), &format!("\"step\":{after}"), 60);
    // SAFETY: kill(2) on our own child's pid
    unsafe { libc::kill(child.id() as i32, signal) };
    let status = wait_for(&mut child, 60);
    let mut err = String::new();
    std::io::Read::read_to_string(child.stderr.as_mut().unwrap(), &mut err).unwrap();
    (status, err)
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

/// One CLI run per registered method (and a few `--loss` variants of SimCLR), at settings that
/// fit the tiny data: the extra arguments of `pretrain`. The tests that cover every method
/// (tests/cli.rs, tests/mpi.rs) take these; tests/cli.rs fails when a registered method has none.
pub fn method_runs() -> Vec<Vec<&'static str>> {
    vec![
        vec!["--method", "moco", "--set", "method.queue_size=64"],
        vec!["--method", "mocov3"],
        vec!["--method", "byol"],
        vec!["--method", "simsiam"],
        vec!["--method", "fastsiam"],
        vec!["--method", "barlow_twins"],
        vec!["--method", "vicreg"],
        vec![
            "--method",
            "swav",
            "--small-crops",
            "2",
            "--set",
            "method.prototypes=20",
        ],
        vec![
            "--method",
            "dino",
            "--small-crops",
            "2",
            "--set",
            "method.prototypes=32",
        ],
        vec!["--method", "supcon"],
        vec![
            "--method",
            "deepcluster",
            "--small-crops",
            "2",
            "--set",
            "method.prototypes=20",
            "--set",
            "train.epochs=2", // re-clusters at the start of epoch 2
        ],
        vec!["--method", "nnclr", "--set", "method.queue_size=64"],
        // the pretext tasks at their default sizes (the 16-px shapes upsampled to 64 and 96)
        vec!["--method", "rotation"],
        vec!["--method", "relative_patch"],
        vec!["--method", "jigsaw", "--set", "method.permutations=10"],
        // on still images each "frame" is a strip of the image: a smoke test of the method
        vec!["--method", "temporal_order", "--set", "method.frames=3"],
        // self-prediction, and DINO on a ViT
        vec!["--method", "mae", "--backbone", "vit_tiny"],
        vec!["--method", "simmim", "--backbone", "vit_tiny"],
        vec!["--method", "ijepa", "--backbone", "vit_tiny"],
        vec![
            "--method",
            "ibot",
            "--backbone",
            "vit_tiny",
            "--set",
            "method.prototypes=32",
        ],
        vec!["--method", "denoising_ae"],
        vec!["--method", "context_encoder"],
        // images and captions (the built-in set's captions name the class)
        vec!["--method", "clip"],
        vec![
            "--method",
            "dino",
            "--backbone",
            "vit_tiny",
            "--set",
            "method.prototypes=32",
        ],
        vec!["--loss", "dcl"],
        vec!["--loss", "nt_xent_tiled", "--set", "method.tile_rows=5"],
        vec!["--loss", "triplet"],
        // a teacher you bring
        vec!["--method", "distill", "--teacher", tiny_teacher()],
    ]
}

/// A TorchScript teacher for `--method distill`, written once per test process: a seeded,
/// randomly initialised ResNet-18 at width 0.125 (64-d features), traced for the tiny runs'
/// 16-px views with `selfsup export`'s own code.
pub fn tiny_teacher() -> &'static str {
    static PATH: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    PATH.get_or_init(|| {
        let dir =
            Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("teacher-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("teacher.pt");
        selfsup::export::torchscript::save_random_resnet(&path, 16, 0).unwrap();
        path.to_str().unwrap().to_string()
    })
}
