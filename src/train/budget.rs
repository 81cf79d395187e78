//! A wall-clock budget (`train.minutes`): how many steps fit, measured before the run starts.
//!
//! The schedules (warm-up + cosine learning rate, EMA momentum) need the run's length in steps
//! from step 0. Under a budget of `T` seconds, a throw-away copy of the model runs
//! `SKIP + MEASURE` real steps (loader, augmentation, forward, backward, SGD at learning rate 0)
//! on the run's first batches, through the same loop as training ([`Trainer::run`]). With `c`
//! the seconds this calibration took, `e` how much longer its first step took than the median
//! (a method's one-time work at step 0, such as DeepCluster embedding and clustering every
//! image, which the run's own first step repeats) and `t` the median seconds per measured step,
//! ```text
//! total = clamp(⌊(T − c − e) / t⌋, 1, bound)
//! ```
//! where `bound` is the length `train.epochs` allows. The run then trains `total` steps with
//! schedules fitted to them; the total is stored in every checkpoint (`RunState::fitted`), so a
//! resumed run keeps it. Checkpoint writes and evaluation are not in the estimate.

use super::trainer::{median, LoaderBatches, Schedule, Timing, Trainer};
use super::{build_model, Loader, LoaderData, LoaderSpec};
use crate::augment::Views;
use crate::config::TrainConfig;
use std::sync::Arc;
use std::time::Instant;

/// Steps not timed (the allocator's heap and libtorch's caches grow over the first few).
pub const SKIP: u64 = 5;
/// Steps timed to estimate seconds per step.
pub const MEASURE: u64 = 10;

/// The steps that fit in `budget_s` seconds at `seconds_per_step` after `spent_s` seconds of
/// calibration, at least 1 and at most `bound`.
pub fn steps_that_fit(budget_s: f64, spent_s: f64, seconds_per_step: f64, bound: u64) -> u64 {
    let left = (budget_s - spent_s).max(0.0);
    ((left / seconds_per_step.max(1e-9)).floor() as u64).clamp(1, bound.max(1))
}

/// What the calibration measured.
#[derive(Debug, Clone, Copy)]
pub struct Calibration {
    /// Median seconds per timed step.
    pub seconds_per_step: f64,
    /// Wall-clock seconds the whole calibration took (counted against the budget).
    pub seconds: f64,
    /// Seconds the first step took beyond the median: one-time work of step 0 that the run's
    /// first step repeats.
    pub first_step_extra_s: f64,
}

/// Times `SKIP + MEASURE` training steps of a fresh copy of the model on `data` (learning rate
/// 0, so nothing can diverge); the run's own model is untouched.
pub fn calibrate(
    cfg: &TrainConfig,
    data: &LoaderData,
    views: &[Arc<dyn Views>],
) -> anyhow::Result<Calibration> {
    let start = Instant::now();
    let mut model = build_model(cfg, Some(data.images.clone()))?;
    let total = SKIP + MEASURE;
    let schedule = Schedule::new(cfg, data.images.len())
        .constant(0.0)
        .fitted(total);
    let t = &cfg.train;
    let loader = Loader::spawn(LoaderSpec {
        data: data.clone(),
        views: views.to_vec(),
        batch_size: t.batch_size,
        steps_per_epoch: schedule.steps_per_epoch,
        seed: t.seed,
        steps: 0..total,
        prefetch: t.prefetch,
        shard: LoaderSpec::shard_of_this_rank(),
    });
    let mut batches = LoaderBatches {
        loader,
        channels_last: cfg.model.uses_channels_last(),
        device: model.vs.device(),
    };
    let mut timing = Timing::start();
    Trainer::new(&mut model, cfg, schedule).run(0..total, &mut batches, &mut timing)?;
    let per_step = median(&timing.step_s[SKIP as usize..]);
    Ok(Calibration {
        seconds_per_step: per_step,
        seconds: start.elapsed().as_secs_f64(),
        first_step_extra_s: (timing.step_s[0] - per_step).max(0.0),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_budget_left_after_calibration_sets_the_length() {
        // 600 s, 12 s of calibration, 0.5 s/step: ⌊588 / 0.5⌋ = 1176 steps
        assert_eq!(steps_that_fit(600.0, 12.0, 0.5, 100_000), 1176);
        // the epoch bound wins; a spent budget still trains one step
        assert_eq!(steps_that_fit(600.0, 12.0, 0.5, 500), 500);
        assert_eq!(steps_that_fit(10.0, 12.0, 0.5, 500), 1);
    }

    #[test]
    fn calibration_times_real_steps() {
        let mut cfg = TrainConfig::default();
        cfg.model.width = 0.125;
        cfg.model.projection_dim = 16;
        cfg.train.batch_size = 8;
        cfg.train.prefetch = 0;
        cfg.data.synthetic_train_per_class = 2;
        cfg.data.synthetic_test_per_class = 1;
        cfg.data.synthetic_size = 16;
        let splits = crate::train::load_data(&cfg).unwrap();
        let data = LoaderData {
            images: std::sync::Arc::new(splits.train.images.clone()),
            targets: None,
        };
        let spec = cfg.method.spec().unwrap();
        let views = crate::train::method_views(&cfg.data, spec.as_ref(), 16).unwrap();
        let c = calibrate(&cfg, &data, &views).unwrap();
        assert!(c.seconds_per_step > 0.0 && c.seconds >= c.seconds_per_step * MEASURE as f64);
    }
}
