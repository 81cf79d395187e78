//! libtorch's CUDA half is loaded at start-up, not linked (src/device/cuda_libs.rs): the binary
//! starts on a CPU install without the CUDA libraries, asks for them by name where `--device
//! cuda` needs them, and where they are there (`scripts/setup-libtorch.sh --cuda`, as `make
//! test` installs) the load registers ATen's CUDA hooks, which needs no GPU to check.
use std::process::Command;

/// The binary links libtorch_cpu and c10, never libtorch_cuda (else it would not start where
/// cuBLAS and cuDNN are absent).
#[test]
fn the_binary_does_not_link_libtorch_cuda() {
    let o = Command::new("readelf")
        .args(["-d", env!("CARGO_BIN_EXE_selfsup")])
        .output()
        .expect("readelf (binutils) runs");
    let t = String::from_utf8_lossy(&o.stdout);
    assert!(t.contains("[libtorch_cpu.so]"), "{t}");
    assert!(!t.contains("libtorch_cuda"), "linked: {t}");
}

/// Where libtorch_cuda.so cannot load (here: a broken one found first on LD_LIBRARY_PATH, as a
/// missing cuBLAS would make it), `--device cuda` fails with the loader's reason and the fix,
/// writes nothing, and the CPU still runs.
#[test]
fn without_the_cuda_libraries_device_cuda_says_how_to_add_them() {
    let dir = tempfile::tempdir().unwrap();
    let libs = dir.path().join("libs");
    std::fs::create_dir(&libs).unwrap();
    std::fs::write(libs.join("libtorch_cuda.so"), b"not a library").unwrap();
    let out = dir.path().join("run");
    let o = Command::new(env!("CARGO_BIN_EXE_selfsup"))
        .args(["pretrain", "--device", "cuda", "--out"])
        .arg(&out)
        .env("LD_LIBRARY_PATH", &libs)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(
        err.contains("no CUDA libraries")
            && err.contains("libtorch_cuda.so does not load")
            && err.contains("setup-libtorch.sh --cuda")
            && err.contains("--device cpu"),
        "{err}"
    );
    assert!(!err.contains("panicked"), "{err}");
    assert!(!out.exists());
    // the same process setup on the CPU trains
    let o = Command::new(env!("CARGO_BIN_EXE_selfsup"))
        .args([
            "bench",
            "--device",
            "cpu",
            "--width",
            "0.125",
            "--batch-size",
            "8",
        ])
        .args(["--steps", "1", "--warm", "0", "--e2e-steps", "0"])
        .env("LD_LIBRARY_PATH", &libs)
        .output()
        .unwrap();
    let t = String::from_utf8_lossy(&o.stdout);
    assert!(
        o.status.success(),
        "{t}{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(t.contains("train_views_per_s="), "{t}");
}

/// This process loads the CUDA half first thing, as `main` does: where the install has the
/// CUDA libraries, ATen then answers with the CUDA runtime it was built with (13.0 for torch
/// 2.11); where it has not, the loader names the library that is missing and ATen has none.
#[test]
fn loading_first_registers_atens_cuda_hooks_where_the_libraries_are() {
    let loaded = selfsup::device::cuda_libs::load();
    let version = selfsup::device::cuda_libs::runtime_version();
    let torch_imports = Command::new(concat!(env!("CARGO_MANIFEST_DIR"), "/.venv/bin/python"))
        .args(["-c", "import torch"])
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    // the binary's `main` does the same before parsing: `--version` says what loaded
    let o = Command::new(env!("CARGO_BIN_EXE_selfsup"))
        .arg("--version")
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&o.stdout);
    assert!(
        o.status.success() && said.contains("libtorch 2.11"),
        "{said}"
    );
    match loaded {
        Ok(()) => {
            assert!(said.contains("CUDA 13.0 libraries loaded"), "{said}");
            assert!(
                torch_imports,
                "libtorch_cuda loads, so Python's torch should too"
            );
            let v = version.expect("loaded, yet ATen has only its CPU stubs for CUDA");
            assert_eq!(v / 1000, 13, "CUDA runtime {v}");
        }
        Err(why) => {
            assert!(said.contains("CPU install: no CUDA libraries"), "{said}");
            assert!(!torch_imports, "Python's torch imports, yet: {why}");
            assert!(why.contains(".so"), "{why}");
            assert_eq!(version, None);
        }
    }
}
