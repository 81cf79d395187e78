//! A wall-clock budget (`train.minutes`): how many steps fit, measured before the run starts.
//!
//! The schedules (warm-up + cosine learning rate, EMA momentum) need the run's length in steps
//! from step 0. Under a budget of `T` seconds, a throw-away copy of the model runs
//! `SKIP + MEASURE` real steps (loader, augmentation, forward, backward, SGD at learning rate 0)
//! on the run's first batches; with `c` the seconds this calibration and the method's
//! [`prepare`](crate::method::Method::prepare) took (DeepCluster embeds and clusters every image
//! there, once for the throw-away model and once for the run's) and `t` the median seconds per
//! measured step,
//! ```text
//! total = clamp(⌊(T − c) / t⌋, 1, bound)
//! ```
//! where `bound` is the length `train.epochs` allows. The run then trains `total` steps with
//! schedules fitted to them; the total is stored in every checkpoint (`RunState::fitted`), so a
//! resumed run keeps it. Checkpoint writes and evaluation are not in the estimate.

use super::{build_model, sgd_step, Loader, LoaderData};
use crate::augment::ViewRecipe;
use crate::config::TrainConfig;
use crate::optim::Sgd;
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
}

/// Times `SKIP + MEASURE` training steps of a fresh copy of the model on `data` (learning rate
/// 0, so nothing can diverge); the run's own model is untouched.
pub fn calibrate(
    cfg: &TrainConfig,
    data: &LoaderData,
    recipes: &[ViewRecipe],
) -> anyhow::Result<Calibration> {
    let start = Instant::now();
    let model = build_model(cfg)?;
    let steps_per_epoch = (data.images.len() / cfg.train.batch_size) as u64;
    model.method.prepare(&data.images, 0, steps_per_epoch)?;
    let mut opt = Sgd::new(&model.vs, cfg.optim.momentum, cfg.optim.weight_decay);
    let total = SKIP + MEASURE;
    let t = &cfg.train;
    let mut loader = Loader::spawn(
        data.clone(),
        recipes.to_vec(),
        t.batch_size,
        t.seed,
        0,
        total,
        t.prefetch,
    );
    let mut times = Vec::new();
    for s in 0..total {
        let step_start = Instant::now();
        let batch = loader
            .next()
            .ok_or_else(|| anyhow::anyhow!("the data loader stopped during calibration"))?;
        let (views, targets) = batch.to_tensors(cfg.model.uses_channels_last());
        sgd_step(&model, &mut opt, &views, targets.as_ref(), 0.0, (s, total))?;
        if s >= SKIP {
            times.push(step_start.elapsed().as_secs_f64());
        }
    }
    times.sort_by(f64::total_cmp);
    Ok(Calibration {
        seconds_per_step: times[times.len() / 2],
        seconds: start.elapsed().as_secs_f64(),
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
        let mut cfg = crate::method::testing::tiny_config("simclr");
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
        let recipes = crate::train::view_recipes(&cfg, 16);
        let c = calibrate(&cfg, &data, &recipes).unwrap();
        assert!(c.seconds_per_step > 0.0 && c.seconds >= c.seconds_per_step * MEASURE as f64);
    }
}
