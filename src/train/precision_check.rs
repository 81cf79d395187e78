//! bf16 against fp32, for every method: 20 steps of a tiny fp32 run, and at each step the
//! same step computed in bf16 on a copy of the fp32 run's state (weights, queues, centres:
//! the whole VarStore) and the same batch. Teacher-forced like this, the difference is bf16's
//! rounding alone; two free-running trajectories would also measure the chaos of training on
//! 40 tiny images (fp32 against fp32 on another CPU drifts 45 % in 10 steps, see
//! tests/golden_losses.rs).

use super::loader::{Loader, LoaderSpec};
use super::step::{sgd_step, StepMode};
use super::trainer::{Batches, LoaderBatches, Schedule};
use super::{build_model, load_data, preflight::preflight};
use crate::config::TrainConfig;
use crate::precision::Precision;

/// Largest |bf16 − fp32| / max(|fp32|, 0.1) of any step's loss. bf16 keeps 8 bits of
/// mantissa (relative rounding 2⁻⁹ ≈ 0.2 % per value); through a network and a loss the
/// measured worst case is 1.4 % (NNCLR; BYOL 1.4 %, Barlow Twins 1.3 %, SimCLR 0.3 %, MAE
/// 0.1 %: 2026-12-07, Intel Xeon, libtorch 2.11, `cargo test --lib precision_check --
/// --nocapture`), so 3 % is the bound.
const BF16_TOLERANCE: f64 = 0.03;
const STEPS: u64 = 20;

/// The tiny settings of every method (as tests/golden_losses.rs uses them).
fn settings(method: &str) -> Vec<String> {
    let mut s: Vec<String> = [
        "model.width=0.0625",
        "train.batch_size=16",
        "train.threads=1",
        "data.synthetic_train_per_class=8",
        "data.synthetic_test_per_class=4",
        "data.synthetic_size=16",
        "train.prefetch=0",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    s.push(format!("method.name={method:?}"));
    let extra: &[&str] = match method {
        "moco" | "nnclr" => &["method.queue_size=64"],
        "swav" | "deepcluster" => &["data.small_crops=2", "method.prototypes=20"],
        "dino" => &["data.small_crops=2", "method.prototypes=32"],
        "jigsaw" => &["method.permutations=10"],
        "temporal_order" => &["method.frames=3"],
        "mae" | "simmim" | "ijepa" => &["model.backbone=\"vit_tiny\""],
        "ibot" => &[
            "model.backbone=\"vit_tiny\"",
            "data.small_crops=2",
            "method.prototypes=32",
        ],
        _ => &[],
    };
    s.extend(extra.iter().map(|e| e.to_string()));
    if method == "distill" {
        s.push(format!("method.teacher={:?}", tiny_teacher()));
    }
    s
}

/// A random 16-px teacher for `distill`, written once per test process.
fn tiny_teacher() -> &'static str {
    static PATH: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    PATH.get_or_init(|| {
        let name = format!("selfsup-precision-teacher-{}.pt", std::process::id());
        let path = std::env::temp_dir().join(name);
        crate::export::torchscript::save_random_resnet(&path, 16, 0).unwrap();
        path.to_str().unwrap().to_string()
    })
}

/// (fp32 loss, `precision` loss) of each of the first [`STEPS`] steps of `method`.
fn teacher_forced(method: &str, precision: Precision) -> Vec<(f64, f64)> {
    let mut cfg = TrainConfig::load(None, &settings(method)).unwrap();
    let splits = load_data(&cfg).unwrap();
    cfg.model.crop_size = Some(cfg.crop_size(&splits.train.images));
    let spec = cfg.method.spec().unwrap();
    let (data, views, _) = preflight(&cfg, &splits, spec.as_ref()).unwrap();
    let mut exact = build_model(&cfg, Some(&data), None).unwrap();
    let mut low = build_model(&cfg, Some(&data), None).unwrap();
    let schedule = Schedule::new(&cfg, data.images.len()).constant(0.05);
    let mut trainer = super::Trainer::new(&mut exact, &cfg, schedule);
    let mut batches = LoaderBatches {
        loader: Loader::spawn(LoaderSpec {
            data: data.clone(),
            views,
            batch_size: cfg.train.batch_size,
            steps_per_epoch: trainer.schedule.steps_per_epoch,
            seed: 0,
            steps: 0..STEPS,
            prefetch: 0,
            shard: (0, 1),
            early: None,
        }),
        channels_last: cfg.model.uses_channels_last(),
        device: tch::Device::Cpu,
    };
    (0..STEPS)
        .map(|s| {
            let batch = batches.next_batch().unwrap();
            let ctx = trainer.schedule.at(s);
            low.vs.copy(&trainer.model.vs).unwrap();
            tch::manual_seed(s as i64);
            let out = crate::precision::training(precision, tch::Device::Cpu, || {
                low.method.step(&batch.views, batch.targets.as_ref(), &ctx)
            })
            .unwrap();
            let low_loss = out.loss.double_value(&[]);
            tch::manual_seed(s as i64);
            let done = sgd_step(
                trainer.model,
                &mut trainer.opt,
                &trainer.shared,
                &batch.views,
                batch.targets.as_ref(),
                &ctx,
                &mut StepMode::new(Precision::Fp32),
            )
            .unwrap();
            (done.loss, low_loss)
        })
        .collect()
}

#[test]
fn every_method_computes_its_loss_in_bf16_within_tolerance_of_fp32_over_20_steps() {
    let mut worst = (0.0f64, String::new());
    for method in crate::method::registry::names() {
        let pairs = teacher_forced(method, Precision::Bf16);
        let rel = pairs
            .iter()
            .map(|(a, b)| (a - b).abs() / a.abs().max(0.1))
            .fold(0.0, f64::max);
        eprintln!(
            "{method:16} bf16 vs fp32: largest relative difference {rel:.2e} over {STEPS} steps"
        );
        assert!(pairs.iter().all(|(a, b)| a.is_finite() && b.is_finite()));
        if rel > worst.0 {
            worst = (rel, method.to_string());
        }
    }
    assert!(
        worst.0 <= BF16_TOLERANCE,
        "{}: bf16 differs from fp32 by {:.2e} (tolerance {BF16_TOLERANCE})",
        worst.1,
        worst.0
    );
    let _ = std::fs::remove_file(tiny_teacher());
    assert!(worst.0 > 0.0, "bf16 changed nothing: autocast did not run");
}
