//! `selfsup export --format onnx`, end to end: ONNX Runtime reproduces `selfsup embed` at batch
//! sizes 1, 3 and 40 (scripts/check_onnx.py, with the project's .venv: `make test` installs
//! onnx and onnxruntime there, scripts/setup-onnx-check.sh) for every backbone family and
//! pooling, with and without normalisation inside; bad input gets one message, nothing written.

mod common;
use common::{run, selfsup, text, tiny};
use std::path::{Path, PathBuf};
use std::process::Command;

/// A one-epoch tiny run with `extra` settings, in `dir/name`.
fn tiny_run(dir: &Path, name: &str, extra: &[&str]) -> PathBuf {
    let out = dir.join(name);
    let o = run(selfsup()
        .arg("pretrain")
        .args(tiny(&out))
        .args(["--epochs", "1", "--no-eval"])
        .args(extra));
    assert!(o.status.success(), "{}", text(&o));
    out
}

/// scripts/check_onnx.py on `run` (its last lines: one per batch size).
fn check(run_dir: &Path, extra: &[&str]) -> String {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let python = root.join(".venv/bin/python");
    let o = Command::new(&python)
        .arg(root.join("scripts/check_onnx.py"))
        .arg(env!("CARGO_BIN_EXE_selfsup"))
        .arg(run_dir)
        .args(extra)
        .env("SELFSUP_CACHE", env!("CARGO_TARGET_TMPDIR"))
        .output()
        .unwrap_or_else(|e| panic!("{}: {e}: run scripts/setup-onnx-check.sh", python.display()));
    let t = text(&o);
    assert!(
        !t.contains("No module named"),
        "{t}\nrun scripts/setup-onnx-check.sh (make test does)"
    );
    assert!(o.status.success(), "{t}");
    for b in [" 1:", " 3:", "40:"] {
        assert!(t.contains(&format!("batch {b} features")), "{t}");
    }
    assert!(t.contains("onnx.checker (full): ok"), "{t}");
    t
}

#[test]
fn onnx_runtime_reproduces_embed_for_every_backbone_and_pooling() {
    let dir = tempfile::tempdir().unwrap();
    let r18 = tiny_run(dir.path(), "r18", &[]);
    let t = check(&r18, &[]);
    assert!(t.contains("ResNet-18 (Cifar stem"), "{t}");
    let t = check(&r18, &["--with-normalisation"]);
    assert!(t.contains("input: uint8 [N, 16, 16, 3]"), "{t}");
    let r50 = tiny_run(
        dir.path(),
        "r50",
        &[
            "--backbone",
            "resnet50",
            "--set",
            "model.stem=imagenet",
            "--crop-size",
            "32",
        ],
    );
    assert!(check(&r50, &[]).contains("ResNet-50 (Imagenet stem"));
    let vit = tiny_run(dir.path(), "vit", &["--backbone", "vit_tiny"]);
    assert!(check(&vit, &[]).contains("Cls pooling, Sincos positions"));
    let mean = [
        "--set",
        "model.pool=mean",
        "--set",
        "model.pos_embed=learned",
    ];
    let vit_mean = tiny_run(
        dir.path(),
        "vit_mean",
        &[&["--backbone", "vit_tiny"][..], &mean].concat(),
    );
    assert!(check(&vit_mean, &[]).contains("Mean pooling, Learned positions"));
}

#[test]
fn bad_onnx_exports_get_one_message_and_write_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let s = |p: &Path| p.to_str().unwrap().to_string();
    let fails = |args: &[String], needle: &str| {
        let o = run(selfsup().args(args));
        let t = text(&o);
        assert!(!o.status.success() && t.contains(needle), "{args:?}: {t}");
        assert!(!t.contains("panicked"), "{t}");
    };
    let export = |run: &Path, out: &Path| {
        [
            "export",
            "--run",
            &s(run),
            "--format",
            "onnx",
            "--out",
            &s(out),
        ]
        .map(String::from)
        .to_vec()
    };
    // a folder that is not a run
    let empty = dir.path().join("empty");
    std::fs::create_dir(&empty).unwrap();
    fails(
        &export(&empty, &dir.path().join("a.onnx")),
        "has no checkpoint.safetensors",
    );
    assert!(!dir.path().join("a.onnx").exists());
    let r = tiny_run(dir.path(), "run", &[]);
    // an existing file is not replaced
    let existing = dir.path().join("taken.onnx");
    std::fs::write(&existing, "mine").unwrap();
    fails(
        &export(&r, &existing),
        "exists: delete it or choose another --out",
    );
    assert_eq!(std::fs::read_to_string(&existing).unwrap(), "mine");
    // a folder that does not exist, and one that cannot be written
    fails(&export(&r, &dir.path().join("no/such/x.onnx")), "--out");
    // a folder nobody may create files in, root included
    let proc_file = Path::new("/proc/selfsup-onnx-test.onnx");
    fails(
        &export(&r, proc_file),
        "cannot write /proc/selfsup-onnx-test.onnx",
    );
    // --with-normalisation belongs to ONNX
    let mut pt = export(&r, &dir.path().join("x.pt"));
    pt[4] = "torchscript".into();
    pt.push("--with-normalisation".into());
    fails(&pt, "--with-normalisation is an option of --format onnx");
    // the default file is the run's encoder.onnx, once
    let o = run(selfsup().args(["export", "--run", &s(&r), "--format", "onnx"]));
    assert!(
        o.status.success() && r.join("encoder.onnx").exists(),
        "{}",
        text(&o)
    );
    let o = run(selfsup().args(["export", "--run", &s(&r), "--format", "onnx"]));
    assert!(
        !o.status.success() && text(&o).contains("encoder.onnx exists"),
        "{}",
        text(&o)
    );
}
