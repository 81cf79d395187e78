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
//! where `bound` is the length `train.epochs` allows ([`fit_length`]; with progressive
//! resolution both sizes are calibrated and the early steps are the cheaper ones). The run
//! starts with schedules fitted to `total` steps.
//!
//! **Re-timing.** The calibration's steps run faster or slower than the run's own (measured:
//! `--minutes 6` ran 5.0 to 7.2 minutes, and 30 ran 37.9): the loader's prefetch is full, the
//! caches are cold, the augmentation thread has not yet settled into its share of the cores. So
//! at step `r` ([`retime_step`]: the end of the warm-up, or 5 % of the run if that comes first,
//! and at least [`RETIME_AFTER`] steps into the session) the run measures its own mean seconds
//! per step `t'` since step `start + SKIP` (loader waits and checkpoints included) and, with
//! `E` the budget's seconds spent so far, refits
//! ```text
//! total' = r + clamp(⌊(T − E) / t'⌋, 1, bound − r)
//! ```
//! (progressive resolution: the full-size steps still to come are priced at the calibration's
//! ratio of the two sizes, and the run re-times once more [`RETIME_AFTER`] steps after the
//! switch, at the full size). It then re-times every tenth of the run, each time from the
//! speed of the steps since the last re-timing, but not in the last tenth: steps slow down
//! later in a run too (measured: a 10-minute run re-timed once at step 25 from 1.05 s/step
//! ran at 1.27 s/step by minute 5). Only the cosine tail moves: the warm-up keeps its length ([`Schedule::refitted`]), so no
//! step already taken changes. The fitted length, the warm-up and the step of the re-timing are
//! stored in every checkpoint (`RunState`), so a resumed run keeps them and is bitwise the
//! uninterrupted one (a run stopped before `r` re-times when it reaches `r`). Evaluations on
//! the way (`train.eval_at_minutes`) stop the budget's clock; the final evaluation is not in
//! the budget.

use super::trainer::{median, LoaderBatches, Schedule, Timing, Trainer};
use super::{build_model, Loader, LoaderData, LoaderSpec, RunState};
use crate::augment::Views;
use crate::config::TrainConfig;
use std::sync::Arc;
use std::time::Instant;

/// Steps not timed (the allocator's heap and libtorch's caches grow over the first few).
pub const SKIP: u64 = 5;
/// Steps timed to estimate seconds per step.
pub const MEASURE: u64 = 10;

/// Steps of a session measured before its run is re-timed (at least; the first `SKIP` of
/// them are not timed).
pub const RETIME_AFTER: u64 = 25;

/// The step at which a budgeted run of `total` steps with `warmup` warm-up steps, whose
/// session started at `start`, re-times itself: the end of the warm-up or 5 % of the run,
/// whichever comes first, but at least [`RETIME_AFTER`] steps into the session. None when the
/// run ends before it.
pub fn retime_step(total: u64, warmup: u64, start: u64) -> Option<u64> {
    let r = (total / 20).min(warmup.max(1)).max(start + RETIME_AFTER);
    (r < total).then_some(r)
}

/// The run's length in steps when `left_s` seconds of the budget are left after `done` steps
/// that now take `t` seconds each:
/// - at one resolution, `N = done + ⌊left / t⌋`;
/// - with progressive resolution still to switch, `switch = Some((f, ρ))`: the steps from
///   `⌊f·N⌋` on take `ρ·t`, so `(f·N − done)·t + (1 − f)·N·ρ·t = left` and
///   `N = ⌊(left + done·t) / ((f + (1 − f)·ρ)·t)⌋` (if that puts the switch before `done`:
///   `N = done + ⌊left / (ρ·t)⌋`);
///
/// at least `done + 1` and at most `bound` (unless `done` is already past it).
pub fn fit_length(left_s: f64, done: u64, t: f64, switch: Option<(f64, f64)>, bound: u64) -> u64 {
    let (left, t, d) = (left_s.max(0.0), t.max(1e-9), done as f64);
    let n = match switch {
        None => d + left / t,
        Some((f, rho)) => {
            let n = (left + d * t) / ((f + (1.0 - f) * rho) * t);
            match f * n >= d {
                true => n,
                false => d + left / (rho * t),
            }
        }
    };
    (n.floor() as u64).clamp(done + 1, bound.max(done + 1))
}

/// Progressive resolution: the first full-size step of a run of `total` steps.
pub fn switch_step(fraction: f64, total: u64) -> u64 {
    (fraction * total as f64).floor() as u64
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
    let mut model = build_model(cfg, Some(data), None)?;
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
        early: None,
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

/// Fits a run not yet fitted to a budget of `minutes`: calibrates (both sizes with
/// progressive resolution), sets the run's length, warm-up and the ratio of the sizes' speeds
/// in `state`, fits `schedule`, and counts the calibration on the training clock.
pub fn fit(
    cfg: &TrainConfig,
    minutes: f64,
    data: &LoaderData,
    views: &[Arc<dyn Views>],
    early_views: Option<&[Arc<dyn Views>]>,
    state: &mut RunState,
    schedule: &mut Schedule,
) -> anyhow::Result<()> {
    let fraction = cfg.data.progressive_fraction;
    let c = calibrate(cfg, data, views)?;
    // the run's own first step repeats the calibration's one-time work
    let mut measured = c.seconds;
    let first_step_extra = match state.step {
        0 => c.first_step_extra_s,
        _ => 0.0,
    };
    let mut per_step = c.seconds_per_step;
    if let Some(early) = early_views {
        // progressive resolution: the early steps' own speed, and the ratio of the two
        let e = calibrate(cfg, data, early)?;
        measured += e.seconds;
        per_step = e.seconds_per_step;
        state.budget.late_over_early = Some(c.seconds_per_step / e.seconds_per_step.max(1e-9));
    }
    let switch = state.budget.late_over_early.map(|rho| (fraction, rho));
    let mut total = [fit_length(
        minutes * 60.0 - measured - first_step_extra,
        0,
        per_step,
        switch,
        schedule.total,
    ) as f64];
    // every rank runs rank 0's count (each measured its own speed)
    crate::dist::world().broadcast_f64(&mut total, "broadcast of the time budget's steps");
    let total = total[0] as u64;
    *schedule = schedule.fitted(total);
    (state.total_steps, state.budget.fitted) = (total, true);
    state.budget.warmup_steps = Some(schedule.warmup);
    // the clock counts the calibration; the run's own slow first step it will see itself
    state.train_seconds += measured;
    crate::dist::is_root().then(|| eprintln!(
            "time budget {minutes} min: {total} steps ({:.2} epochs) fit at {:.3} s/step{} (measured in {:.0} s)",
            total as f64 / schedule.steps_per_epoch as f64,
            per_step,
            match state.budget.late_over_early {
                Some(rho) => format!(" early, {:.3} s/step at full size", rho * per_step),
                None => String::new(),
            },
            measured
        ));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_budget_left_after_calibration_sets_the_length() {
        // 600 s, 12 s of calibration, 0.5 s/step: ⌊588 / 0.5⌋ = 1176 steps
        assert_eq!(fit_length(588.0, 0, 0.5, None, 100_000), 1176);
        // the epoch bound wins; a spent budget still trains one step
        assert_eq!(fit_length(588.0, 0, 0.5, None, 500), 500);
        assert_eq!(fit_length(-2.0, 0, 0.5, None, 500), 1);
    }

    #[test]
    fn progressive_resolution_prices_the_full_size_steps_still_to_come() {
        // 600 s left at 0.25 s/early step, full-size steps twice as dear, 3/4 of the run early:
        // N·(0.75·0.25 + 0.25·0.5) = 600 → N = 1920 (1440 early, 480 full size)
        let n = fit_length(600.0, 0, 0.25, Some((0.75, 2.0)), 100_000);
        assert_eq!((n, switch_step(0.75, n)), (1920, 1440));
        let spent = 1440.0 * 0.25 + 480.0 * 0.5;
        assert!((spent - 600.0f64).abs() < 1e-9);
        // re-timed after 100 early steps with 575 s left at the same speed: the same run
        assert_eq!(
            fit_length(575.0, 100, 0.25, Some((0.75, 2.0)), 100_000),
            1920
        );
        // past the switch already: the rest at full size
        assert_eq!(
            fit_length(10.0, 1500, 0.25, Some((0.75, 2.0)), 100_000),
            1520
        );
    }

    #[test]
    fn the_run_retimes_at_the_end_of_its_warm_up_or_five_percent_in() {
        // 2000 steps, warm-up 97: 5 % is 100, the warm-up ends first
        assert_eq!(retime_step(2000, 97, 0), Some(97));
        // a short warm-up is no earlier than 25 steps into the session
        assert_eq!(retime_step(2000, 10, 0), Some(25));
        assert_eq!(retime_step(2000, 0, 0), Some(25));
        // a long run re-times at 5 %
        assert_eq!(retime_step(10_000, 1000, 0), Some(500));
        // a session resumed at step 90 measures its own 25 steps first
        assert_eq!(retime_step(2000, 97, 90), Some(115));
        // a run too short to measure is not re-timed
        assert_eq!(retime_step(20, 5, 0), None);
    }

    #[test]
    fn a_retimed_length_spends_what_is_left() {
        // 360 s budget, 60 s spent at step 100, 0.5 s/step: 600 more steps
        assert_eq!(fit_length(300.0, 100, 0.5, None, 100_000), 700);
        // over budget already: one more step
        assert_eq!(fit_length(-40.0, 100, 0.5, None, 100_000), 101);
        // the epoch bound still holds
        assert_eq!(fit_length(300.0, 100, 0.5, None, 300), 300);
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
        let data = LoaderData::images(std::sync::Arc::new(splits.train.images.clone()));
        let spec = cfg.method.spec().unwrap();
        let views = crate::train::method_views(&cfg.data, spec.as_ref(), 16).unwrap();
        let c = calibrate(&cfg, &data, &views).unwrap();
        assert!(c.seconds_per_step > 0.0 && c.seconds >= c.seconds_per_step * MEASURE as f64);
    }
}
