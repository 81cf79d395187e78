//! The training loop, once: pretraining, the time-budget calibration and `selfsup bench` all
//! run [`Trainer::run`], and differ only in their [`Batches`] and their [`StepObserver`].
//! ```text
//! for s in steps:  batch ← batches (loader or fixed views) → sgd_step(ctx(s)) → observer
//! ```

use super::step::{sgd_step, FaultAt, StepDone, StepFault, StepMode};
use super::{Loader, Model};
use crate::config::TrainConfig;
use crate::method::StepContext;
use crate::optim::{warmup_cosine, Optimizer, OptimizerName, Settings};
use crate::precision::{LossScaler, Precision};
use std::time::Instant;
use tch::Tensor;

/// The run's length and learning-rate schedule, computed once from the config and the number
/// of training images: `steps_per_epoch = ⌊N / B⌋`, `total = steps_per_epoch · epochs` (or
/// the steps a time budget fits), warm-up `round(warmup_epochs · steps_per_epoch)` steps
/// (under a budget at most a quarter of the run), then cosine decay to `final_lr`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Schedule {
    pub total: u64,
    pub warmup: u64,
    pub steps_per_epoch: u64,
    pub lr: f64,
    pub final_lr: f64,
}

impl Schedule {
    /// The schedule of `train.epochs` passes over `images` images.
    pub fn new(cfg: &TrainConfig, images: usize) -> Self {
        let steps_per_epoch = (images / cfg.train.batch_size.max(1)).max(1) as u64;
        Schedule {
            total: steps_per_epoch * cfg.train.epochs as u64,
            warmup: (cfg.optim.warmup_epochs * steps_per_epoch as f64).round() as u64,
            steps_per_epoch,
            lr: cfg.lr(),
            final_lr: cfg.optim.final_lr,
        }
    }

    /// The same schedule fitted to `total` steps of a time budget: a warm-up longer than a
    /// quarter of the run is shortened to it.
    pub fn fitted(self, total: u64) -> Self {
        Schedule {
            total,
            warmup: self.warmup.min(total / 4),
            ..self
        }
    }

    /// The same schedule refitted to `total` steps part-way through the run (a time budget
    /// re-timed, see train/budget.rs): the warm-up stays as it is, so the steps already taken
    /// keep their learning rates and only the cosine tail stretches or shrinks.
    pub fn refitted(self, total: u64) -> Self {
        Schedule { total, ..self }
    }

    /// The same schedule at a constant learning rate `lr` (calibration, benchmarks).
    pub fn constant(self, lr: f64) -> Self {
        Schedule {
            warmup: 0,
            lr,
            final_lr: lr,
            ..self
        }
    }

    /// What step `step` sees.
    pub fn at(&self, step: u64) -> StepContext {
        StepContext {
            step,
            total_steps: self.total,
            steps_per_epoch: self.steps_per_epoch,
            lr: warmup_cosine(step, self.total, self.warmup, self.lr, self.final_lr),
        }
    }
}

/// One step's input: `views[v]` [B, 3, S_v, S_v] and the per-image targets \[B\].
pub struct Batch {
    pub views: Vec<Tensor>,
    pub targets: Option<Tensor>,
    /// Seconds spent augmenting it (on the loader's thread).
    pub augment_s: f64,
}

/// Where the loop's batches come from.
pub trait Batches {
    /// The batch of the next step.
    fn next_batch(&mut self) -> anyhow::Result<Batch>;
}

/// The loader's batches, as tensors in the model's memory order on the model's device.
pub struct LoaderBatches {
    pub loader: Loader,
    pub channels_last: bool,
    pub device: tch::Device,
}

impl Batches for LoaderBatches {
    fn next_batch(&mut self) -> anyhow::Result<Batch> {
        let b = self
            .loader
            .next()
            .ok_or_else(|| anyhow::anyhow!("the data loader stopped unexpectedly"))?;
        let (views, targets) = b.to_tensors(self.channels_last);
        let on = |t: &Tensor| crate::device::to_device(t, self.device);
        Ok(Batch {
            views: views.iter().map(on).collect(),
            targets: targets.as_ref().map(on),
            augment_s: b.augment_s,
        })
    }
}

/// The same batch every step (throughput measurements of the step alone).
pub struct SameBatch(pub Batch);

impl Batches for SameBatch {
    fn next_batch(&mut self) -> anyhow::Result<Batch> {
        Ok(Batch {
            views: self.0.views.iter().map(Tensor::shallow_clone).collect(),
            targets: self.0.targets.as_ref().map(Tensor::shallow_clone),
            augment_s: 0.0,
        })
    }
}

/// A finished step, as observers see it.
pub struct StepRecord<'a> {
    pub ctx: StepContext,
    pub done: &'a StepDone,
    /// Seconds the loop waited for this step's batch.
    pub wait_s: f64,
    pub augment_s: f64,
}

/// Whether the loop goes on after a step.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Flow {
    Continue,
    Stop,
    /// Go on, with the run's length refitted to this many steps ([`Schedule::refitted`]).
    Refit(u64),
}

/// What a loop does after each step besides training: log, checkpoint, time.
pub trait StepObserver {
    fn after_step(&mut self, step: &StepRecord, trainer: &Trainer) -> anyhow::Result<Flow>;
}

/// A model, its optimiser and its schedule.
pub struct Trainer<'m> {
    pub model: &'m mut Model,
    pub opt: Optimizer,
    pub schedule: Schedule,
    /// Every trainable variable in name order: the gradients the ranks of a data-parallel job
    /// sum (the same order on every rank; a VarStore's own order is a hash map's).
    pub shared: Vec<Tensor>,
    /// The precision of the steps (`train.precision`), the fp16 loss scale and the
    /// micro-batch (`train.micro_batch`).
    pub mode: StepMode,
}

impl<'m> Trainer<'m> {
    /// The config's optimiser (SGD with momentum, or AdamW) over the model's trainable
    /// variables, grouped by the method's [`ParamPlan`](crate::optim::ParamPlan): decayed or
    /// not, scheduled or at the constant peak learning rate, or left to the method.
    pub fn new(model: &'m mut Model, cfg: &TrainConfig, schedule: Schedule) -> Self {
        let o = &cfg.optim;
        let name = o.optimizer(Some(model.spec.as_ref()));
        let settings = Settings {
            momentum: o.momentum,
            betas: o.betas(),
            weight_decay: o.weight_decay_for(name),
            trust_coefficient: o.trust_coefficient,
        };
        // the name was checked when the config was (config/validate.rs)
        let precision =
            Precision::resolve(&cfg.train.precision, model.vs.device()).unwrap_or(Precision::Fp32);
        let mut t = Self::with_optimizer(model, name, settings, schedule);
        t.mode = StepMode {
            micro_batch: cfg.train.micro_batch,
            ..StepMode::new(precision)
        };
        t
    }

    /// Optimiser `name` with `settings` over the model's trainable variables, grouped by the
    /// method's parameter plan (fine-tuning chooses its own optimiser).
    pub fn with_optimizer(
        model: &'m mut Model,
        name: OptimizerName,
        settings: Settings,
        schedule: Schedule,
    ) -> Self {
        let plan = crate::method::plan::parameter_groups(model.method.as_ref());
        let opt = Optimizer::new(name, &model.vs, &plan, settings, schedule.lr);
        let shared = crate::optim::trainable_by_name(&model.vs);
        // every rank starts from rank 0's weights and state
        crate::dist::broadcast_from_root(&model.vs);
        Trainer {
            model,
            opt,
            schedule,
            shared: shared.into_iter().map(|(_, t)| t).collect(),
            mode: StepMode::new(Precision::Fp32),
        }
    }

    /// What a checkpoint keeps beside the weights: the optimiser's state and, under fp16, the
    /// loss scale.
    pub fn state(&self) -> Vec<(String, Tensor)> {
        let mut state = self.opt.state();
        if let Some(s) = &self.mode.scaler {
            state.extend(s.state());
        }
        state
    }

    /// Restores what [`Trainer::state`] saved (a checkpoint without a loss scale, as one from
    /// an fp32 or bf16 run resumed in fp16, starts the scale afresh).
    pub fn load_state(&mut self, state: &[(String, Tensor)]) -> anyhow::Result<()> {
        self.opt.load_state(state)?;
        if let (Some(s), Some(saved)) = (&mut self.mode.scaler, LossScaler::from_state(state)) {
            *s = saved;
        }
        Ok(())
    }

    /// Runs steps `steps` on `batches`, calling `observer` after each; stops early when the
    /// observer says so, or runs to a new end when it refits the schedule ([`Flow::Refit`];
    /// `batches` must then have batches up to it). A non-finite loss or gradient stops it with
    /// a [`FaultAt`] error before that step's update. Returns the steps taken.
    pub fn run(
        &mut self,
        steps: std::ops::Range<u64>,
        batches: &mut dyn Batches,
        observer: &mut dyn StepObserver,
    ) -> anyhow::Result<u64> {
        let (mut taken, mut s, mut end) = (0, steps.start, steps.end);
        while s < end {
            let wait = Instant::now();
            let batch = batches.next_batch()?;
            let wait_s = wait.elapsed().as_secs_f64();
            let ctx = self.schedule.at(s);
            let done = sgd_step(
                self.model,
                &mut self.opt,
                &self.shared,
                &batch.views,
                batch.targets.as_ref(),
                &ctx,
                &mut self.mode,
            )
            .map_err(|e| match e.downcast::<StepFault>() {
                Ok(fault) => FaultAt {
                    fault,
                    step: s,
                    epoch: ctx.epoch(),
                }
                .into(),
                Err(e) => e,
            })?;
            taken += 1;
            let record = StepRecord {
                ctx,
                done: &done,
                wait_s,
                augment_s: batch.augment_s,
            };
            match observer.after_step(&record, self)? {
                Flow::Stop => break,
                Flow::Continue => {}
                Flow::Refit(total) => {
                    self.schedule = self.schedule.refitted(total);
                    end = total;
                }
            }
            s += 1;
        }
        Ok(taken)
    }
}

/// Times every step: seconds from the end of one step to the end of the next (the first from
/// the timer's creation), with the loss and the loader wait.
#[derive(Debug)]
pub struct Timing {
    last: Instant,
    pub step_s: Vec<f64>,
    pub wait_s: Vec<f64>,
    pub losses: Vec<f64>,
}

impl Timing {
    /// Starts the clock of the first step now.
    pub fn start() -> Self {
        Timing {
            last: Instant::now(),
            step_s: Vec::new(),
            wait_s: Vec::new(),
            losses: Vec::new(),
        }
    }
}

impl StepObserver for Timing {
    fn after_step(&mut self, step: &StepRecord, _: &Trainer) -> anyhow::Result<Flow> {
        let now = Instant::now();
        self.step_s.push((now - self.last).as_secs_f64());
        self.last = now;
        self.wait_s.push(step.wait_s);
        self.losses.push(step.done.loss);
        Ok(Flow::Continue)
    }
}

/// The median of `xs` (NaN when empty).
pub fn median(xs: &[f64]) -> f64 {
    let mut xs = xs.to_vec();
    xs.sort_by(f64::total_cmp);
    let n = xs.len();
    match n {
        0 => f64::NAN,
        n if n % 2 == 1 => xs[n / 2],
        n => 0.5 * (xs[n / 2 - 1] + xs[n / 2]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_schedule_is_computed_once_from_the_config() {
        let mut cfg = TrainConfig::default();
        cfg.train.batch_size = 10;
        cfg.train.epochs = 3;
        cfg.optim.warmup_epochs = 0.5;
        let s = Schedule::new(&cfg, 105);
        assert_eq!((s.steps_per_epoch, s.total, s.warmup), (10, 30, 5));
        assert!(
            (s.at(0).lr - cfg.lr() / 5.0).abs() < 1e-12,
            "warm-up: base·(s+1)/5"
        );
        assert!((s.at(5).lr - cfg.lr()).abs() < 1e-12);
        assert_eq!(s.at(25).epoch(), 2);
        let f = s.fitted(12);
        assert_eq!((f.total, f.warmup), (12, 3));
        assert_eq!(s.constant(0.0).at(7).lr, 0.0);
    }

    #[test]
    fn median_of_odd_and_even_lists() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&[4.0, 1.0, 2.0, 3.0]), 2.5);
        assert!(median(&[]).is_nan());
    }
}
