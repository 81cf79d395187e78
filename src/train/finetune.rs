//! Fine-tuning evaluation: the pretrained encoder and a linear classifier trained end to end
//! on the labeled training split, then top-1 on the test split. Masked-image models are judged
//! this way (MAE §4: their frozen features are weak by design, their fine-tuned ones strong).
//! ```text
//! for each step: B labeled images → crop (scale crop_min_scale..1) + flip → f → Linear(D, C)
//!                → cross-entropy → AdamW (β 0.9, 0.999), warm-up 10 % + cosine
//! ```
//! It runs on the [`Trainer`] like pretraining, into its own folder (`RUN/finetune` unless
//! told otherwise): checkpoints every `train.checkpoint_every` steps and at each epoch's end,
//! metrics.jsonl, a clean stop with a checkpoint on Ctrl-C, and `--resume` continues exactly
//! (batches are a function of the seed and the step). The same call on a randomly initialised
//! encoder (`selfsup finetune --random-init`) is the baseline at the same steps. Layer-wise
//! learning-rate decay is not implemented.

use super::observe::checkpointer::Checkpointer;
use super::observe::metrics_log::MetricsLog;
use super::observe::stop::StopOnSignal;
use super::observe::{Console, Observers, RunObserver, Session, WallClock};
use super::trainer::{Batch, Batches, Flow, Schedule, StepRecord, Trainer};
use super::{interrupt, load_checkpoint, restore_variables, Model, RunDir, RunState};
use super::{FaultAt, TrainedEncoder};
use crate::augment::{augment_batch, map_eval_batches, nhwc_to_tensor, ViewRecipe};
use crate::backbone::Backbone;
use crate::config::TrainConfig;
use crate::data::Dataset;
use crate::device::to_device;
use crate::loss::cross_entropy;
use crate::method::{
    BuildContext, Method, MethodPlan, MethodSpec, StepContext, StepOutput, Targets,
};
use crate::optim::{OptimizerName, Settings};
use crate::rng::Rng;
use anyhow::{bail, Context};
use serde::{Deserialize, Serialize};
use std::cell::RefCell;
use std::path::Path;
use std::rc::Rc;
use tch::nn::{self, ModuleT};
use tch::{Kind, Tensor};

/// How long and how fast to fine-tune; kept in the folder (`finetune.json`), so that a
/// resume continues the same fine-tuning.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FinetuneConfig {
    /// Passes over the training split (fractions allowed).
    pub epochs: f64,
    pub batch_size: usize,
    /// Peak learning rate of AdamW.
    pub lr: f64,
    pub weight_decay: f64,
    /// Smallest crop area of the training augmentation.
    pub crop_min_scale: f32,
    pub seed: u64,
    /// The encoder starts from random weights (the baseline), not the run's.
    pub random_init: bool,
}

impl Default for FinetuneConfig {
    fn default() -> Self {
        FinetuneConfig {
            epochs: 1.0,
            batch_size: 128,
            lr: 1e-3,
            weight_decay: 0.05,
            crop_min_scale: 0.35,
            seed: 0,
            random_init: false,
        }
    }
}

/// What a fine-tuning measured.
#[derive(Clone, Debug, serde::Serialize)]
pub struct FinetuneReport {
    pub test_top1: f64,
    pub steps: u64,
    /// Training accuracy over the steps of this session in the last tenth of the run.
    pub train_top1_end: f64,
    pub seconds: f64,
}

/// The encoder with a linear classifier `finetune_head.*`, trained on class labels.
struct Classifier {
    backbone: Backbone,
    head: nn::Linear,
}

impl Method for Classifier {
    /// `views[0]` [B, 3, S, S], `targets` the classes \[B\] → cross-entropy of `head(f(x))`.
    fn step(
        &mut self,
        views: &[Tensor],
        targets: Option<&Tensor>,
        _ctx: &StepContext,
    ) -> anyhow::Result<StepOutput> {
        let y = targets.context("fine-tuning needs the images' classes")?;
        let h = self.backbone.forward_t(&views[0], true); // [B, D]
        let (loss, acc) = cross_entropy(&h.apply(&self.head), y).map_err(anyhow::Error::msg)?;
        Ok(StepOutput {
            loss,
            embeddings: h.detach(),
            embeddings_b: h.detach(),
            metrics: vec![("train_top1", acc)],
        })
    }

    fn encoder(&self) -> &Backbone {
        &self.backbone
    }
}

/// What the trainer reads of the classifier: class labels, AdamW.
#[derive(Debug)]
struct ClassifierSpec;

impl MethodSpec for ClassifierSpec {
    fn plan(&self) -> MethodPlan {
        MethodPlan {
            targets: Targets::ClassLabels,
            default_optimizer: OptimizerName::Adamw,
            ..MethodPlan::default()
        }
    }

    fn build(&self, _: &nn::VarStore, _: &BuildContext) -> anyhow::Result<Box<dyn Method>> {
        bail!("the fine-tuning classifier is built by train::finetune, from a trained encoder")
    }
}

/// Batch `step`: `b` images of epoch `step / per_epoch`'s permutation, cropped and flipped,
/// with their classes; a pure function of the seed and the step.
struct LabeledBatches<'a> {
    images: &'a Dataset,
    labels: &'a [u32],
    recipe: ViewRecipe,
    seed: u64,
    batch: usize,
    per_epoch: u64,
    step: u64,
    order: Vec<usize>,
    channels_last: bool,
    device: tch::Device,
}

impl Batches for LabeledBatches<'_> {
    fn next_batch(&mut self) -> anyhow::Result<Batch> {
        let (b, side) = (self.batch, self.recipe.out_size);
        let epoch = self.step / self.per_epoch;
        if self.order.is_empty() || self.step.is_multiple_of(self.per_epoch) {
            let n = self.images.len();
            self.order = Rng::for_sample(self.seed, epoch, 0, 0x66_74).permutation(n);
        }
        let at = (self.step % self.per_epoch) as usize * b;
        let idx = &self.order[at..at + b];
        let mut buf = vec![0f32; b * side * side * 3];
        let images = &self.images.images;
        augment_batch(images, idx, &self.recipe, self.seed, epoch, 0, &mut buf);
        let x = nhwc_to_tensor(&buf, b, side, self.channels_last);
        let y: Vec<i64> = idx.iter().map(|&i| self.labels[i] as i64).collect();
        self.step += 1;
        Ok(Batch {
            views: vec![to_device(&x, self.device)],
            targets: Some(to_device(&Tensor::from_slice(&y), self.device)),
            augment_s: 0.0,
        })
    }
}

/// Prints a line every 20 steps; keeps the training accuracy of the last tenth.
struct FinetuneLog {
    recent: Rc<RefCell<Vec<f64>>>,
}

impl RunObserver for FinetuneLog {
    fn after_step(&mut self, r: &StepRecord, _: &Trainer, s: &mut Session) -> anyhow::Result<Flow> {
        let (step, total) = (r.ctx.step, r.ctx.total_steps);
        s.console.bar.inc(1);
        if step >= total - (total / 10).max(1) {
            let accuracies = r.done.out.metrics.iter().map(|(_, a)| a.double_value(&[]));
            self.recent.borrow_mut().extend(accuracies);
        }
        if step.is_multiple_of(20) || step + 1 == total {
            let line = format!(
                "fine-tune step {}/{total}: loss {:.4}",
                step + 1,
                r.done.loss
            );
            s.console.say(line);
        }
        Ok(Flow::Continue)
    }
}

/// Fine-tunes `enc` (its variables gain the classifier `finetune_head.*`) on `train` into the
/// folder `out` (continuing its checkpoint with `resume`), then scores `test`.
pub fn finetune(
    enc: TrainedEncoder,
    train: &Dataset,
    test: &Dataset,
    cfg: &FinetuneConfig,
    out: &Path,
    resume: bool,
) -> anyhow::Result<FinetuneReport> {
    let start = std::time::Instant::now();
    let (Some(ytr), Some(yte)) = (&train.labels, &test.labels) else {
        bail!("fine-tuning needs labels on both splits: use a folder of class sub-folders with train/ and test/ (or IDX / CIFAR files)");
    };
    if !(cfg.epochs.is_finite() && cfg.epochs > 0.0) {
        bail!(
            "--epochs is {}: it must be > 0 (fractions allowed)",
            cfg.epochs
        );
    }
    let n = train.len();
    let b = cfg.batch_size.clamp(1, n.max(1));
    let per_epoch = (n / b).max(1) as u64;
    let total = ((cfg.epochs * per_epoch as f64).round() as u64).max(1);
    let classes = train.num_classes().max(test.num_classes()) as i64;
    let frozen = enc.frozen(&train.images);
    let (side, channels_last) = (frozen.input_side, frozen.channels_last);
    let mut run_cfg: TrainConfig = enc.config.clone();
    run_cfg.train.out_dir = out.to_path_buf();
    run_cfg.train.batch_size = b;
    let vs = enc.vs;
    let head = nn::linear(
        vs.root() / "finetune_head",
        enc.net.out_dim(),
        classes,
        Default::default(),
    );
    // the same variables, for scoring after the run
    let head_eval = nn::Linear {
        ws: head.ws.shallow_clone(),
        bs: head.bs.as_ref().map(Tensor::shallow_clone),
    };
    let mut model = Model {
        vs,
        method: Box::new(Classifier {
            backbone: enc.net,
            head,
        }),
        spec: Box::new(ClassifierSpec),
    };
    let run = RunDir::create(out)?;
    let settings_file = out.join("finetune.json");
    let mut state = RunState::fresh(&run_cfg, total);
    let mut opt_state = None;
    match (resume, run.checkpoint().exists()) {
        (true, false) => bail!(
            "--resume: {} holds no fine-tuning checkpoint, so there is nothing to resume: run without --resume",
            out.display()
        ),
        (true, true) => {
            let saved: FinetuneConfig = std::fs::read(&settings_file)
                .ok()
                .and_then(|b| serde_json::from_slice(&b).ok())
                .with_context(|| format!("cannot resume: {} is missing or unreadable", settings_file.display()))?;
            if &saved != cfg {
                bail!(
                    "cannot resume {}: it fine-tuned with {saved:?}, not {cfg:?}; give the same flags, or drop --resume to start over",
                    out.display()
                );
            }
            let loaded = load_checkpoint(&run.checkpoint())?;
            restore_variables(&model.vs, &loaded.model, &run.checkpoint())?;
            state.step = loaded.state.step;
            state.train_seconds = loaded.state.train_seconds;
            opt_state = Some(loaded.optim);
            if state.step >= total {
                bail!("{} is complete: all {total} steps are fine-tuned; drop --resume to start over", out.display());
            }
            run.truncate_log_after(state.step)?;
            eprintln!("resuming the fine-tuning in {} at step {}/{total}", out.display(), state.step);
        }
        (false, _) => {
            // a fresh start replaces an earlier fine-tuning in the folder
            run.truncate_log_after(0)?;
            let _ = std::fs::remove_file(run.checkpoint());
            crate::checkpoint::write_atomic(&settings_file, &serde_json::to_vec_pretty(cfg)?)?;
        }
    }
    let mut recipe = ViewRecipe::eval(side);
    recipe.crop_scale = (cfg.crop_min_scale, 1.0);
    recipe.crop_ratio = (3.0 / 4.0, 4.0 / 3.0);
    recipe.flip_p = 0.5;
    let mut batches = LabeledBatches {
        images: train,
        labels: ytr,
        recipe,
        seed: cfg.seed,
        batch: b,
        per_epoch,
        step: state.step,
        order: Vec::new(),
        channels_last,
        device: model.vs.device(),
    };
    if state.step == 0 {
        // damaged weights (a run stopped by a non-finite loss) are not a learning-rate matter
        let first = batches.next_batch()?;
        batches.step = 0;
        let f = tch::no_grad(|| model.method.encoder().forward_t(&first.views[0], false));
        crate::eval::ensure_finite(&f.to_device(tch::Device::Cpu), "the first training batch")?;
    }
    let schedule = Schedule {
        total,
        warmup: total / 10,
        steps_per_epoch: per_epoch,
        lr: cfg.lr,
        final_lr: 0.0,
    };
    let adam = Settings {
        momentum: 0.0,
        betas: (0.9, 0.999),
        weight_decay: cfg.weight_decay,
        trust_coefficient: 0.0,
    };
    let from = state.step;
    let mut trainer = Trainer::with_optimizer(&mut model, OptimizerName::Adamw, adam, schedule);
    if let Some(saved) = &opt_state {
        trainer
            .load_state(saved)
            .map_err(|e| anyhow::anyhow!("{}: {e}", run.checkpoint().display()))?;
    }
    let mut session = Session::new(
        &run_cfg,
        &run,
        state,
        from,
        Box::new(WallClock::new()),
        Console::new(total, from),
    );
    session.resume_command = "the same `selfsup finetune` command with --resume".into();
    let recent = Rc::new(RefCell::new(Vec::new()));
    let list: Vec<Box<dyn RunObserver + '_>> = vec![
        Box::new(MetricsLog::new(&session)),
        Box::new(Checkpointer),
        Box::new(FinetuneLog {
            recent: recent.clone(),
        }),
        Box::new(StopOnSignal),
    ];
    let mut observers = Observers { session, list };
    let armed = interrupt::arm();
    let ran = trainer.run(from..total, &mut batches, &mut observers);
    drop(armed);
    observers.session.console.bar.finish_and_clear();
    ran.map_err(|e| match e.downcast_ref::<FaultAt>() {
        Some(f) => anyhow::anyhow!("fine-tuning: {f}: lower --lr (now {})", cfg.lr),
        None => e,
    })?;
    if let Some(stop) = observers.session.interrupted.take() {
        return Err(stop.into());
    }
    let net = trainer.model.method.encoder();
    let eval = ViewRecipe::eval(side);
    let device = trainer.model.vs.device();
    let hits = tch::no_grad(|| {
        map_eval_batches(&test.images, &eval, 256, channels_last, false, |x| {
            net.forward_t(&to_device(x, device), false)
                .apply(&head_eval)
                .argmax(1, false)
                .to_device(tch::Device::Cpu)
        })
    });
    let pred = Tensor::cat(&hits, 0);
    let want = Tensor::from_slice(&yte.iter().map(|&c| c as i64).collect::<Vec<_>>());
    let top1 = pred
        .eq_tensor(&want)
        .to_kind(Kind::Double)
        .mean(Kind::Double)
        .double_value(&[]);
    let recent = recent.borrow();
    Ok(FinetuneReport {
        test_top1: top1,
        steps: total,
        train_top1_end: recent.iter().sum::<f64>() / recent.len().max(1) as f64,
        seconds: start.elapsed().as_secs_f64(),
    })
}
