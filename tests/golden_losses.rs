//! Behaviour fixture for the registry redesign (issue 14): the per-step losses of a short
//! fixed-seed run of every method and of every two-view loss, on the tests' tiny synthetic
//! data, recorded in `tests/fixtures/golden_losses.json` before the refactor. A refactor that
//! changes what any method computes changes these numbers.
//!
//! The kernels are pinned so that the figures are the same on every x86-64 CPU: oneDNN and
//! ATen take their AVX2 code (`ONEDNN_MAX_CPU_ISA`, `ATEN_CPU_CAPABILITY`), MKL its AVX2
//! reproducible path (`MKL_CBWR`), one thread. Re-record (only when a change of numbers is
//! intended, and say so in the commit) with `SELFSUP_BLESS=1 cargo test --test golden_losses`.
//! `SELFSUP_BLESS=new` records only the cases the fixture lacks (a new method), keeping the rest.

mod common;

use common::{run, selfsup, text, tiny};
use std::collections::BTreeMap;
use std::path::Path;

/// The fixture of this machine's CPU vendor. The AVX2 pins make CPUs of one vendor agree, not
/// AMD and Intel: on an Intel Xeon every case differs from the AMD EPYC recording at ~1e-7 from
/// step 1 and BYOL's drift reaches 45 % by step 10 (2026-12-07, before and after issue 33 alike;
/// the statically linked MKL dispatches by vendor, the likely cause). So each vendor has its own
/// recording of the same code: `golden_losses.json` (AMD, and any other vendor) and
/// `golden_losses.GenuineIntel.json`, recorded from cd505fe's behaviour (issue 33 changed no loss).
fn fixture() -> &'static str {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    match cpuinfo.lines().find(|l| l.starts_with("vendor_id")) {
        Some(l) if l.contains("GenuineIntel") => "tests/fixtures/golden_losses.GenuineIntel.json",
        _ => "tests/fixtures/golden_losses.json",
    }
}

/// Relative tolerance: 0 would demand bit-exact equality; a refactor that legitimately
/// reorders an operation may move a loss by ~1e-7. Anything real moves it by far more.
const RELATIVE_TOLERANCE: f64 = 1e-6;

/// Every method (with the tests' tiny settings for it) and every two-view loss of simclr.
fn cases() -> Vec<(&'static str, Vec<&'static str>)> {
    let m = |name| vec!["--method", name];
    vec![
        ("simclr", m("simclr")),
        (
            "moco",
            vec!["--method", "moco", "--set", "method.queue_size=64"],
        ),
        ("byol", m("byol")),
        ("simsiam", m("simsiam")),
        ("barlow_twins", m("barlow_twins")),
        ("vicreg", m("vicreg")),
        (
            "swav",
            vec![
                "--method",
                "swav",
                "--small-crops",
                "2",
                "--set",
                "method.prototypes=20",
            ],
        ),
        (
            "dino",
            vec![
                "--method",
                "dino",
                "--small-crops",
                "2",
                "--set",
                "method.prototypes=32",
            ],
        ),
        (
            "deepcluster",
            vec![
                "--method",
                "deepcluster",
                "--small-crops",
                "2",
                "--set",
                "method.prototypes=20",
            ],
        ),
        ("supcon", m("supcon")),
        (
            "nnclr",
            vec!["--method", "nnclr", "--set", "method.queue_size=64"],
        ),
        ("rotation", m("rotation")),
        ("relative_patch", m("relative_patch")),
        (
            "jigsaw",
            vec!["--method", "jigsaw", "--set", "method.permutations=10"],
        ),
        (
            "temporal_order",
            vec!["--method", "temporal_order", "--set", "method.frames=3"],
        ),
        ("mae", vec!["--method", "mae", "--backbone", "vit_tiny"]),
        ("denoising_ae", m("denoising_ae")),
        ("context_encoder", m("context_encoder")),
        ("clip", m("clip")),
        (
            "loss=nt_xent_tiled",
            vec!["--loss", "nt_xent_tiled", "--set", "method.tile_rows=5"],
        ),
        ("loss=dcl", vec!["--loss", "dcl"]),
        ("loss=info_nce", vec!["--loss", "info_nce"]),
        (
            "loss=info_nce_tiled",
            vec!["--loss", "info_nce_tiled", "--set", "method.tile_rows=5"],
        ),
        ("loss=n_pair", vec!["--loss", "n_pair"]),
        ("loss=triplet", vec!["--loss", "triplet"]),
        ("loss=margin", vec!["--loss", "margin"]),
        ("loss=barlow_twins", vec!["--loss", "barlow_twins"]),
        ("loss=vicreg", vec!["--loss", "vicreg"]),
    ]
}

/// The losses of steps 1..=10 (2 epochs of 5 steps, lr 0.05: at 0.3 VICReg diverges on this
/// tiny set by step 6) of one case.
fn losses(out: &Path, extra: &[&str]) -> Vec<f64> {
    let o = run(selfsup()
        .env("ONEDNN_MAX_CPU_ISA", "AVX2")
        .env("ATEN_CPU_CAPABILITY", "avx2")
        .env("MKL_CBWR", "AVX2")
        .arg("pretrain")
        .args(tiny(out))
        .args([
            "--epochs",
            "2",
            "--lr",
            "0.05",
            "--no-eval",
            "--set",
            "train.log_every=1",
        ])
        .args(extra));
    assert!(o.status.success(), "{extra:?}: {}", text(&o));
    std::fs::read_to_string(out.join("metrics.jsonl"))
        .unwrap()
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["loss"]
                .as_f64()
                .unwrap()
        })
        .collect()
}

#[test]
fn every_registered_method_and_loss_has_a_case() {
    let names: Vec<String> = cases().into_iter().map(|(n, _)| n.to_string()).collect();
    for m in selfsup::method::registry::names() {
        assert!(names.iter().any(|n| n == m), "method {m}: add a case");
    }
    for l in selfsup::loss::two_view::NAMES.iter().skip(1) {
        assert!(names.contains(&format!("loss={l}")), "loss {l}: add a case");
    }
}

#[test]
fn every_method_and_loss_computes_its_recorded_losses() {
    let dir = tempfile::tempdir().unwrap();
    let got: BTreeMap<String, Vec<f64>> = cases()
        .into_iter()
        .map(|(name, extra)| {
            let out = dir.path().join(name.replace('=', "_"));
            (name.to_string(), losses(&out, &extra))
        })
        .collect();
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(fixture());
    let want: BTreeMap<String, Vec<f64>> = match std::fs::read_to_string(&path) {
        Ok(text) => serde_json::from_str(&text).unwrap(),
        Err(_) => BTreeMap::new(), // a vendor's first recording (SELFSUP_BLESS=1)
    };
    if let Some(bless) = std::env::var_os("SELFSUP_BLESS") {
        // "new": record the cases the fixture lacks and keep the others as recorded
        let mut record = got.clone();
        if bless == "new" {
            record.extend(want.clone());
        }
        std::fs::write(&path, serde_json::to_string_pretty(&record).unwrap() + "\n").unwrap();
        return;
    }
    assert_eq!(
        want.keys().collect::<Vec<_>>(),
        got.keys().collect::<Vec<_>>(),
        "the cases changed: re-record the fixture"
    );
    let mut worst = (0.0f64, String::new());
    for (name, w) in &want {
        let g = &got[name];
        assert_eq!(w.len(), g.len(), "{name}: steps");
        for (s, (a, b)) in w.iter().zip(g).enumerate() {
            let rel = (a - b).abs() / a.abs().max(1e-12);
            if rel > worst.0 {
                worst = (rel, format!("{name} step {}: {a} recorded, {b} now", s + 1));
            }
        }
    }
    assert!(
        worst.0 <= RELATIVE_TOLERANCE,
        "losses changed (largest relative difference {:.2e}): {} (fixture {})",
        worst.0,
        worst.1,
        fixture()
    );
}
