//! The device check's dry run: `scripts/gpu/check.sh --cpu`, the script a lent GPU machine runs
//! from the bundle (scripts/gpu-bundle.sh), here on the CPU and small, with the test build's
//! binary and the project's torch (.venv): so that the first GPU run is not its first run.
use std::path::Path;
use std::process::Command;

#[test]
fn the_device_checks_dry_run_prints_its_whole_summary() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let python = root.join(".venv/bin/python");
    assert!(
        python.exists(),
        "{} is missing: run scripts/setup-libtorch.sh",
        python.display()
    );
    // CIFAR-10 where the shared data is (as in the bundle); else the built-in shapes
    let tar = root.join("../shared/data/cifar10-jpg.tar.gz");
    let o = Command::new("bash")
        .arg(root.join("scripts/gpu/check.sh"))
        .arg("--cpu")
        .env("PYTHON", &python)
        .env("SELFSUP_BIN", env!("CARGO_BIN_EXE_selfsup"))
        .env("CHECK_DATA", &tar)
        .env("SELFSUP_CACHE", env!("CARGO_TARGET_TMPDIR"))
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&o.stdout);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{out}\n{err}");
    assert!(out.contains("== selfsup device check"), "{out}");
    assert!(out.contains("torch 2.11"), "{out}");
    // the binary says what it loaded: `make test` installs the CUDA libraries (no GPU needed)
    assert!(
        out.contains("CUDA 13.0 libraries loaded, 0 GPU(s)"),
        "{out}"
    );
    // four step lines (two widths × fp32, bf16), each with both figures and a ratio
    let steps: Vec<&str> = out.lines().filter(|l| l.starts_with("step ")).collect();
    assert_eq!(steps.len(), 4, "{out}");
    for l in &steps {
        assert!(l.contains("selfsup") && l.contains("PyTorch"), "{l}");
        let ratio: f64 = l.rsplit("ratio ").next().unwrap().trim().parse().unwrap();
        assert!(ratio > 0.1 && ratio < 10.0, "{l}");
    }
    let knn = out
        .lines()
        .find(|l| l.contains("kNN top-1"))
        .unwrap_or_else(|| panic!("no kNN line: {out}"));
    assert!(
        knn.contains("loader wait") && knn.contains("end to end"),
        "{knn}"
    );
    assert!(!knn.contains("kNN top-1 n/a"), "{knn}");
}
