//! Pretraining into a run folder: **preflight** (everything that can be refused is refused
//! before the folder is written) → **resume** (or start fresh) → **run** (the loop, with an
//! observer that logs, checkpoints, shows progress and stops cleanly on Ctrl-C).

use super::loader::EarlyViews;
use super::pictures::Pictures;
use super::resume::{check_resumable, non_finite_advice};
use super::trainer::{Flow, LoaderBatches, Schedule, StepObserver, StepRecord, Trainer};
use super::{budget, build_model, interrupt, load_checkpoint, memory, restore_variables};
use super::{
    loader_data, method_views, DataFingerprint, FaultAt, Loader, LoaderData, LoaderSpec, Model,
    RunDir, RunState,
};
use crate::augment::Views;
use crate::config::TrainConfig;
use crate::data::{Dataset, Splits};
use crate::eval::{alignment, embedding_std, uniformity, EvalKind, FrozenEncoder};
use anyhow::{bail, Context};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::io::IsTerminal;
use std::sync::Arc;
use std::time::Instant;

/// Images in the reconstruction pictures.
const PICTURED_IMAGES: usize = 8;

/// What a finished (or resumed-and-finished) pre-training reports.
#[derive(Debug, Clone)]
pub struct PretrainReport {
    pub steps_run: u64,
    pub total_steps: u64,
    pub last_loss: f64,
    /// Images per second end to end over this session's steps.
    pub images_per_s: f64,
    /// Encoder inputs per image: 2 views, plus the small multi-crop views, or a pretext task's
    /// crops (4 rotations, 2 patches, 9 tiles).
    pub inputs_per_image: usize,
    /// Mean seconds per step the trainer waited for the loader (0 when the pipeline keeps up).
    pub data_wait_s: f64,
    /// Mean seconds per step the loader spent augmenting (on its own thread).
    pub augment_s: f64,
    pub train_seconds: f64,
}

/// A pretraining that passed its preflight and found where it starts: its model is built (and
/// restored on resume), its run folder locked.
pub struct Pretraining {
    cfg: TrainConfig,
    run: RunDir,
    model: Model,
    data: LoaderData,
    views: Vec<Arc<dyn Views>>,
    state: RunState,
    schedule: Schedule,
    /// The optimiser's momentum buffers from the checkpoint, on resume.
    opt_state: Option<Vec<(String, tch::Tensor)>>,
    /// The images a reconstruction method pictures at each checkpoint.
    pictures: Pictures,
    /// The labeled splits of the evaluations on the way (`train.eval_at_minutes`).
    curve_data: Option<(Dataset, Dataset)>,
    /// Progressive resolution: the views of the early steps (`data.progressive_size`).
    early_views: Option<Vec<Arc<dyn Views>>>,
}

/// Pre-trains on `splits.train` into `cfg.train.out_dir`; see [`Pretraining`].
pub fn pretrain(
    cfg: &TrainConfig,
    splits: &Splits,
    resume: bool,
) -> anyhow::Result<(PretrainReport, Model)> {
    Pretraining::prepare(cfg, splits, resume)?.run()
}

impl Pretraining {
    /// Preflight, then resume: with `resume`, continues from the folder's checkpoint; without,
    /// refuses a folder that has one.
    pub fn prepare(cfg: &TrainConfig, splits: &Splits, resume: bool) -> anyhow::Result<Self> {
        if resume && !RunDir::open(&cfg.train.out_dir).checkpoint().exists() {
            // before anything is created: a mistyped --out must not leave a new folder behind
            bail!(
                "--resume: {} holds no checkpoint, so there is nothing to resume (is --out right?). \
                 Start a new run there without --resume",
                cfg.train.out_dir.display()
            );
        }
        // The training resolution is fixed now and saved with the run, for eval and embed.
        let mut cfg = cfg.clone();
        cfg.model.crop_size = Some(cfg.crop_size(&splits.train.images));
        // saved absolute: the commands that read the run again may run from another folder
        cfg.data.path = cfg.data.path.map(|p| p.canonicalize().unwrap_or(p));
        let cfg = &cfg;
        let spec = cfg.method.spec().map_err(anyhow::Error::msg)?;
        let (data, views, early_views) = preflight(cfg, splits, spec.as_ref())?;
        // a resumed run reads back what its method keeps in the folder (a tokenizer)
        let restore_from = (resume && RunDir::open(&cfg.train.out_dir).checkpoint().exists())
            .then_some(cfg.train.out_dir.as_path());
        let model = build_model(cfg, Some(&data), restore_from)?;
        // rank 0 alone writes the folder (the others of a data-parallel job read it)
        let run = match crate::dist::is_root() {
            true => RunDir::create(&cfg.train.out_dir)?,
            false => RunDir::open(&cfg.train.out_dir),
        };
        let schedule = Schedule::new(cfg, splits.train.len());
        let shown = splits
            .test
            .as_ref()
            .filter(|t| !t.images.is_empty())
            .unwrap_or(&splits.train);
        let side = cfg.crop_size(&splits.train.images);
        let pictures = Pictures::new(&shown.images, side, PICTURED_IMAGES);
        let curve_data = match (cfg.train.eval_at_minutes.is_empty(), &splits.test) {
            (true, _) => None,
            (false, Some(test)) if test.labels.is_some() && splits.train.labels.is_some() => {
                Some((splits.train.clone(), test.clone()))
            }
            (false, _) => bail!(
                "train.eval_at_minutes asks for kNN evaluations during the run, but --data has no labeled \
                 test split: give a folder with train/ and test/ of class sub-folders, or drop the setting"
            ),
        };
        let mut p = Pretraining {
            cfg: cfg.clone(),
            run,
            model,
            data,
            views,
            state: RunState {
                step: 0,
                total_steps: schedule.total,
                fitted: false,
                warmup_steps: None,
                retimed_at: Vec::new(),
                retimed_lengths: Vec::new(),
                switch_step: None,
                late_over_early: None,
                train_seconds: 0.0,
                config: cfg.clone(),
                data: Some(DataFingerprint::of(&splits.train)),
            },
            schedule,
            opt_state: None,
            pictures,
            curve_data,
            early_views,
        };
        p.resume_or_start(resume)?;
        Ok(p)
    }

    /// The model as it stands before the run (random init, or the resumed checkpoint's).
    pub fn model(&self) -> &Model {
        &self.model
    }

    fn resume_or_start(&mut self, resume: bool) -> anyhow::Result<()> {
        let run = &self.run;
        let ckpt = run.checkpoint();
        match (ckpt.exists(), resume) {
            (false, true) => bail!(
                "--resume: {} holds no checkpoint, so there is nothing to resume (is --out right?). \
                 Start a new run there without --resume",
                run.dir.display()
            ),
            (true, false) => bail!(
                "{} already holds a checkpoint: pass --resume to continue that run, or choose another --out",
                run.dir.display()
            ),
            (false, false) if !crate::dist::is_root() => return Ok(()),
            (false, false) => {
                // A fresh run: lines of an earlier attempt that never reached a checkpoint go.
                run.truncate_log_after(0)?;
                crate::checkpoint::write_atomic(&run.config(), self.cfg.to_toml().as_bytes())?;
                return Ok(());
            }
            (true, true) => {}
        }
        let loaded = load_checkpoint(&ckpt)?;
        let mut saved = loaded.state.config.clone();
        // runs from before model.crop_size trained at the size the same rule gives now
        saved.model.crop_size = saved.model.crop_size.or(self.cfg.model.crop_size);
        // the images must be the ones the run was planned on (runs from before the
        // fingerprint: the same folder)
        let same_images = match (&loaded.state.data, &self.state.data) {
            (Some(then), Some(now)) => {
                then.check_unchanged(now)
                    .with_context(|| format!("cannot resume from {}", ckpt.display()))?;
                true
            }
            _ => false,
        };
        check_resumable(&saved, &self.cfg, same_images)
            .with_context(|| format!("cannot resume from {}", ckpt.display()))?;
        if !run.config().exists() && crate::dist::is_root() {
            // deleted since: written again from the checkpoint's settings (the ones in force)
            crate::checkpoint::write_atomic(&run.config(), self.cfg.to_toml().as_bytes())?;
        }
        restore_variables(&self.model.vs, &loaded.model, &ckpt)?;
        let s = &mut self.state;
        s.step = loaded.state.step;
        s.train_seconds = loaded.state.train_seconds;
        if loaded.state.fitted {
            self.schedule = self.schedule.fitted(loaded.state.total_steps);
            if let Some(w) = loaded.state.warmup_steps {
                self.schedule.warmup = w;
            }
            (s.total_steps, s.fitted) = (loaded.state.total_steps, true);
            (s.warmup_steps, s.retimed_at) = (loaded.state.warmup_steps, loaded.state.retimed_at);
            s.retimed_lengths = loaded.state.retimed_lengths;
            s.late_over_early = loaded.state.late_over_early;
        }
        s.switch_step = loaded.state.switch_step;
        if s.step >= s.total_steps {
            bail!(
                "{} is complete: all {} steps are trained, so there is nothing to resume. Evaluate it \
                 with `selfsup eval --run {}`, or train it longer with a larger --epochs and --resume",
                run.dir.display(),
                s.step,
                run.dir.display()
            );
        }
        self.opt_state = Some(loaded.optim);
        if !crate::dist::is_root() {
            return Ok(());
        }
        run.truncate_log_after(s.step)?;
        eprintln!(
            "resuming {} at step {}/{}",
            run.dir.display(),
            s.step,
            s.total_steps
        );
        Ok(())
    }

    /// Fits a time budget (once per run), trains the remaining steps, exports the encoder.
    pub fn run(mut self) -> anyhow::Result<(PretrainReport, Model)> {
        let cfg = &self.cfg;
        let t = &cfg.train;
        let fraction = cfg.data.progressive_fraction;
        if let (Some(minutes), false) = (t.minutes, self.state.fitted) {
            let c = budget::calibrate(cfg, &self.data, &self.views)?;
            // the run's own first step repeats the calibration's one-time work
            let mut measured = c.seconds;
            let first_step_extra = match self.state.step {
                0 => c.first_step_extra_s,
                _ => 0.0,
            };
            let mut per_step = c.seconds_per_step;
            if let Some(early) = &self.early_views {
                // progressive resolution: the early steps' own speed, and the ratio of the two
                let e = budget::calibrate(cfg, &self.data, early)?;
                measured += e.seconds;
                per_step = e.seconds_per_step;
                self.state.late_over_early =
                    Some(c.seconds_per_step / e.seconds_per_step.max(1e-9));
            }
            let switch = self.state.late_over_early.map(|rho| (fraction, rho));
            let mut total = [budget::fit_length(
                minutes * 60.0 - measured - first_step_extra,
                0,
                per_step,
                switch,
                self.schedule.total,
            ) as f64];
            // every rank runs rank 0's count (each measured its own speed)
            crate::dist::world().broadcast_f64(&mut total, "broadcast of the time budget's steps");
            let total = total[0] as u64;
            self.schedule = self.schedule.fitted(total);
            (self.state.total_steps, self.state.fitted) = (total, true);
            self.state.warmup_steps = Some(self.schedule.warmup);
            // the clock counts the calibration; the run's own slow first step it will see itself
            self.state.train_seconds += measured;
            crate::dist::is_root().then(|| eprintln!(
                "time budget {minutes} min: {total} steps ({:.2} epochs) fit at {:.3} s/step{} (measured in {:.0} s)",
                total as f64 / self.schedule.steps_per_epoch as f64,
                per_step,
                match self.state.late_over_early {
                    Some(rho) => format!(" early, {:.3} s/step at full size", rho * per_step),
                    None => String::new(),
                },
                measured
            ));
        }
        if self.early_views.is_some() && self.state.switch_step.is_none() {
            self.state.switch_step = Some(budget::switch_step(fraction, self.state.total_steps));
        }
        let switch = Arc::new(std::sync::atomic::AtomicU64::new(
            self.state.switch_step.unwrap_or(0),
        ));
        if let (Some(at), true) = (self.state.switch_step, crate::dist::is_root()) {
            eprintln!(
                "progressive resolution: {} px views for steps 1..{at} ({:.0} % of {}), then {} px{}",
                cfg.data.progressive_size,
                100.0 * fraction,
                self.state.total_steps,
                cfg.model.crop_size.unwrap_or(0),
                if self.state.retimed_at.is_empty() && t.minutes.is_some() {
                    " (moved when the budget re-times)"
                } else {
                    ""
                }
            );
        }
        let (start, total) = (self.state.step, self.state.total_steps);
        // a run still to be re-timed may grow up to the epochs' bound
        let bound = Schedule::new(cfg, self.data.images.len()).total;
        let retime = t.minutes.and_then(|minutes| {
            Retime::next(
                &self.state,
                minutes * 60.0,
                self.schedule.warmup,
                start,
                bound,
            )
        });
        let last_batch = if retime.is_some() { bound } else { total };
        let loader = Loader::spawn(LoaderSpec {
            data: self.data.clone(),
            views: self.views.clone(),
            batch_size: t.batch_size,
            steps_per_epoch: self.schedule.steps_per_epoch,
            seed: t.seed,
            steps: start..last_batch,
            prefetch: t.prefetch,
            shard: LoaderSpec::shard_of_this_rank(),
            early: self.early_views.clone().map(|views| EarlyViews {
                views,
                until: switch.clone(),
            }),
        });
        let mut batches = LoaderBatches {
            loader,
            channels_last: cfg.model.uses_channels_last(),
            device: self.model.vs.device(),
        };
        let mut trainer = Trainer::new(&mut self.model, cfg, self.schedule);
        let ranks = crate::dist::size();
        if ranks > 1 && crate::dist::is_root() {
            let floats: i64 = trainer.shared.iter().map(|t| t.numel() as i64).sum();
            eprintln!(
                "data-parallel: each step all-reduces {:.2} MB of gradients ({floats} floats) over {ranks} ranks",
                floats as f64 * 4.0 / 1e6
            );
        }
        if let Some(saved) = &self.opt_state {
            trainer
                .opt
                .load_state(saved)
                .map_err(|e| anyhow::anyhow!("{}: {e}", self.run.checkpoint().display()))?;
        }
        let mut observer = RunObserver::new(cfg, &self.run, self.state.clone(), start);
        observer.pictures = Some(&self.pictures);
        observer.retime = retime;
        observer.switch = switch;
        if let Some((train, test)) = &self.curve_data {
            let trained_min = self.state.train_seconds / 60.0;
            let mut pending: Vec<f64> = t
                .eval_at_minutes
                .iter()
                .copied()
                .filter(|&m| m > trained_min && t.minutes.is_none_or(|budget| m < budget))
                .collect();
            pending.sort_by(f64::total_cmp);
            observer.curve = Some(Curve {
                train,
                test,
                pending,
            });
        }
        let _armed = interrupt::arm();
        let world = crate::dist::world();
        world.set_timeout(Some(t.collective_timeout));
        let ran = trainer
            .run(start..total, &mut batches, &mut observer)
            .map_err(|e| match e.downcast_ref::<FaultAt>() {
                Some(fault) => anyhow::anyhow!(
                    "{fault}: training stopped before the update. {}",
                    non_finite_advice(&self.run, cfg)
                ),
                None => e,
            });
        world.set_timeout(None);
        drop(batches);
        observer.bar.finish_and_clear();
        ran?;
        if let Some(stop) = observer.interrupted.take() {
            return Err(stop.into());
        }
        let total = observer.state.total_steps;
        if crate::dist::is_root() {
            self.run
                .export_encoder(&self.model.vs, crate::method::ENCODER_PREFIX)?;
        }
        let steps_run = total - start;
        let secs = observer.clock();
        let report = PretrainReport {
            steps_run,
            total_steps: total,
            last_loss: observer.last_loss,
            images_per_s: steps_run as f64 * t.batch_size as f64 / secs.max(1e-9),
            inputs_per_image: self.views.iter().map(|v| v.shape().crops).sum(),
            data_wait_s: observer.wait_total / steps_run.max(1) as f64,
            augment_s: observer.augment_total / steps_run.max(1) as f64,
            train_seconds: observer.state.train_seconds,
        };
        Ok((report, self.model))
    }
}

/// Everything refused before the run folder is written: too few images, a batch or a
/// method's state that cannot fit in memory, view sizes the images cannot give, labels the
/// method needs and the data lacks. Returns the loader's data, its views and (progressive
/// resolution) the early steps' views.
#[allow(clippy::type_complexity)]
fn preflight(
    cfg: &TrainConfig,
    splits: &Splits,
    spec: &dyn crate::method::MethodSpec,
) -> anyhow::Result<(LoaderData, Vec<Arc<dyn Views>>, Option<Vec<Arc<dyn Views>>>)> {
    let t = &cfg.train;
    let n = splits.train.len();
    if n < 2 {
        bail!(
            "the training split has {n} image(s): self-supervised training compares images in a batch \
             and needs at least 2 (and ideally hundreds); add images to --data"
        );
    }
    if n < t.batch_size {
        bail!(
            "train.batch_size is {} but the training split has only {n} images: lower --batch-size to at most {n}",
            t.batch_size
        );
    }
    crate::dist::local_batch(t.batch_size).map_err(anyhow::Error::msg)?;
    if crate::dist::size() > 1 && !spec.plan().data_parallel {
        bail!(
            "method.name = {} does not run data-parallel yet (its loss or state is not shared across \
             ranks): run it in one process, or use one of {}",
            cfg.method.name,
            crate::method::registry::names_where(|s| s.plan().data_parallel).join(", ")
        );
    }
    if let (Some(w), true) = (
        spec.data_warning(&splits.train.images),
        crate::dist::is_root(),
    ) {
        eprintln!("warning: {w}");
    }
    let size = cfg.crop_size(&splits.train.images);
    let views = method_views(&cfg.data, spec, size)?;
    if let Some(small) = views.iter().skip(2).find(|v| v.shape().side > size) {
        bail!(
            "data.small_crop_size is {} but the crop size is {size} px: small crops must be at most {size}",
            small.shape().side
        );
    }
    if let Some(mut available) = memory::available_bytes() {
        if let Some((bytes, what, setting)) =
            spec.plan().state.map(|s| s.bytes(cfg.model.projection_dim))
        {
            available = memory::check_state_fits(bytes, &what, setting, available)
                .map_err(anyhow::Error::msg)?;
        }
        let shape = memory::StepShape {
            batch: t.batch_size,
            views: views
                .iter()
                .map(|v| (v.shape().crops, v.shape().side))
                .collect(),
            tiled: !spec.plan().similarity_matrix,
        };
        memory::check_fits(&cfg.model.backbone_config(size), &shape, available)
            .map_err(anyhow::Error::msg)?;
    }
    let early = match cfg.data.progressive_size {
        0 => None,
        p if p >= size => bail!(
            "data.progressive_size is {p} px but the crop size is {size} px: the early views must be \
             smaller (e.g. {}), or set it to 0 to train at one size",
            (size * 3 / 4).max(1)
        ),
        _ if cfg.model.is_vit() => bail!(
            "data.progressive_size: a ViT's position embeddings fix its input size, so it cannot \
             change resolution during the run; use a ResNet backbone or set it to 0"
        ),
        p => Some(method_views(&cfg.data, spec, p)?),
    };
    Ok((loader_data(&splits.train, spec)?, views, early))
}

/// The pretraining loop's observer: metrics lines, checkpoints (every `checkpoint_every`
/// steps, at every epoch end and at the end), the progress bar or plain progress lines, and a
/// clean stop with a checkpoint when Ctrl-C is pressed.
struct RunObserver<'a> {
    cfg: &'a TrainConfig,
    run: &'a RunDir,
    state: RunState,
    start: u64,
    bar: ProgressBar,
    session: Instant,
    seconds_before: f64,
    window: (Instant, u64),
    plain_progress: Option<Instant>,
    last_loss: f64,
    wait_total: f64,
    augment_total: f64,
    interrupted: Option<interrupt::Interrupted>,
    pictures: Option<&'a Pictures>,
    /// The time budget's re-timing, while it is still to come.
    retime: Option<Retime>,
    /// Progressive resolution: the first full-size step, shared with the loader.
    switch: Arc<std::sync::atomic::AtomicU64>,
    /// The kNN evaluations on the way, while some are still to come.
    curve: Option<Curve<'a>>,
    /// Seconds of this session spent in those evaluations (off the training clock).
    paused_s: f64,
}

/// A time budget's re-timing (train/budget.rs) still to come.
struct Retime {
    budget_s: f64,
    /// The step after which it re-times.
    at: u64,
    /// The steps after this one are timed (`SKIP` into the session, or into the full size).
    from: u64,
    /// The epochs' bound on the length.
    bound: u64,
    /// The training clock after step `from`, once it is reached.
    clock_at_from: Option<f64>,
}

impl Retime {
    /// The re-timing still to come for a run in `state` (warm-up `warmup` steps) whose
    /// session starts at step `start`: the first ([`budget::retime_step`]); then one every
    /// tenth of the run, each timing the steps since the one before (so a run whose steps
    /// slow down or speed up later still ends on its budget), but none in the last tenth;
    /// with progressive resolution, the one whose window would cross the switch to full size
    /// comes just after it instead, timing full-size steps only.
    fn next(state: &RunState, budget_s: f64, warmup: u64, start: u64, bound: u64) -> Option<Self> {
        let total = state.total_steps;
        let (at, from) = match state.retimed_at.last() {
            None => (
                budget::retime_step(total, warmup, start)?,
                start + budget::SKIP,
            ),
            Some(&last) => {
                let from = last.max(start + budget::SKIP);
                let at = from + (total / 10).max(budget::RETIME_AFTER);
                match state.switch_step {
                    Some(switch) if last < switch && at + budget::SKIP >= switch => {
                        let from = switch.max(start) + budget::SKIP;
                        (from - budget::SKIP + budget::RETIME_AFTER, from)
                    }
                    _ if at > total - total / 10 => return None,
                    _ => (at, from),
                }
            }
        };
        (at < total).then_some(Retime {
            budget_s,
            at,
            from,
            bound,
            clock_at_from: None,
        })
    }
}

/// kNN evaluations at given minutes of training (`train.eval_at_minutes`).
struct Curve<'a> {
    train: &'a Dataset,
    test: &'a Dataset,
    /// Minutes still to evaluate at, ascending.
    pending: Vec<f64>,
}

impl<'a> RunObserver<'a> {
    fn new(cfg: &'a TrainConfig, run: &'a RunDir, state: RunState, start: u64) -> Self {
        let seconds_before = state.train_seconds;
        RunObserver {
            bar: progress_bar(state.total_steps, start),
            cfg,
            run,
            state,
            start,
            session: Instant::now(),
            seconds_before,
            window: (Instant::now(), 0),
            plain_progress: (!std::io::stderr().is_terminal() && crate::dist::is_root())
                .then(Instant::now),
            last_loss: f64::NAN,
            wait_total: 0.0,
            augment_total: 0.0,
            interrupted: None,
            pictures: None,
            retime: None,
            switch: Default::default(),
            curve: None,
            paused_s: 0.0,
        }
    }

    /// A line for the user (rank 0): above the progress bar, or on stderr where the bar is
    /// hidden (no terminal: a log file, CI, nohup).
    fn say(&self, line: String) {
        match (crate::dist::is_root(), self.bar.is_hidden()) {
            (false, _) => {}
            (true, false) => self.bar.println(line),
            (true, true) => eprintln!("{line}"),
        }
    }

    /// Seconds this session has trained: wall clock less the evaluations on the way.
    fn clock(&self) -> f64 {
        self.session.elapsed().as_secs_f64() - self.paused_s
    }

    /// Seconds the run has trained over all its sessions (calibration included).
    fn trained_s(&self) -> f64 {
        self.seconds_before + self.clock()
    }

    /// After step `done`: the re-timed length, when this is the step to re-time at.
    fn retimed(&mut self, done: u64) -> Option<u64> {
        let now = self.clock();
        let r = self.retime.as_mut()?;
        if done == r.from {
            r.clock_at_from = Some(now);
        }
        if done < r.at {
            return None;
        }
        let r = self.retime.take()?;
        let per_step = (self.clock() - r.clock_at_from?) / (done - r.from).max(1) as f64;
        let fraction = self.cfg.data.progressive_fraction;
        // progressive resolution, the switch still to come: the full-size steps cost more
        let switch = self.state.switch_step.filter(|&s| done < s);
        let phases = switch
            .and(self.state.late_over_early)
            .map(|rho| (fraction, rho));
        let left = r.budget_s - self.trained_s();
        let mut total = [budget::fit_length(left, done, per_step, phases, r.bound) as f64];
        // every rank runs rank 0's length
        crate::dist::world().broadcast_f64(&mut total, "broadcast of the re-timed budget's steps");
        let total = total[0] as u64;
        if switch.is_some() {
            // the batches already prepared stay early ones
            let ahead = done + self.cfg.train.prefetch as u64 + 2;
            let at = budget::switch_step(fraction, total).max(ahead);
            self.state.switch_step = Some(at);
            self.switch.store(at, std::sync::atomic::Ordering::Relaxed);
        }
        if crate::dist::is_root() {
            self.bar.set_length(total);
            self.say(format!(
                "re-timed at step {done}: {per_step:.3} s/step since step {}, {:.2} of {:.2} min spent: \
                 {total} steps in all (was {}){}",
                r.from,
                self.trained_s() / 60.0,
                r.budget_s / 60.0,
                self.state.total_steps,
                match self.state.switch_step.filter(|_| switch.is_some()) {
                    Some(s) => format!(", full size from step {s}"),
                    None => String::new(),
                }
            ));
        }
        self.state.total_steps = total;
        self.state.retimed_at.push(done);
        self.state.retimed_lengths.push(total);
        self.retime = Retime::next(&self.state, r.budget_s, 0, self.start, r.bound);
        let now = self.clock();
        if let Some(next) = self.retime.as_mut().filter(|n| n.from == done) {
            next.clock_at_from = Some(now);
        }
        Some(total)
    }

    /// After a step: the kNN evaluation due at this point of the training clock, if any
    /// (rank 0; the clock stops meanwhile).
    fn evaluate_if_due(&mut self, done: u64, trainer: &Trainer) -> anyhow::Result<()> {
        let trained_min = self.trained_s() / 60.0;
        let Some(curve) = self.curve.as_mut() else {
            return Ok(());
        };
        if curve.pending.first().is_none_or(|&m| trained_min < m) {
            return Ok(());
        }
        while curve.pending.first().is_some_and(|&m| trained_min >= m) {
            curve.pending.remove(0);
        }
        if !crate::dist::is_root() {
            return Ok(());
        }
        let started = Instant::now();
        let encoder = FrozenEncoder {
            net: trainer.model.method.encoder(),
            channels_last: self.cfg.model.uses_channels_last(),
            input_side: self.cfg.crop_size(&curve.train.images),
            layer: Default::default(),
        };
        let r = crate::eval::evaluate(
            encoder,
            curve.train,
            curve.test,
            &self.cfg.eval,
            EvalKind::Knn,
        )?;
        self.say(format!(
            "at {trained_min:.2} min of training (step {done}): kNN top-1 {:.2} % (evaluated in {:.0} s, off the clock)",
            100.0 * r.knn_top1,
            started.elapsed().as_secs_f64()
        ));
        self.run.log(&serde_json::json!({
            "step": done, "train_minutes": trained_min, "eval": r,
        }))?;
        self.paused_s += started.elapsed().as_secs_f64();
        Ok(())
    }

    fn checkpoint(&mut self, done: u64, trainer: &Trainer) -> anyhow::Result<()> {
        // rank 0's BatchNorm statistics become every rank's: the checkpoint is the state of all
        crate::dist::share_running_stats(&trainer.model.vs);
        crate::dist::ranks_agree(&trainer.model.vs).map_err(anyhow::Error::msg)?;
        self.state.step = done;
        if !crate::dist::is_root() {
            return Ok(());
        }
        self.state.train_seconds = self.trained_s();
        // the method's files first: a checkpoint never exists without them
        for (name, bytes) in trainer.model.method.run_files()? {
            crate::checkpoint::write_atomic(&self.run.dir.join(name), &bytes)?;
        }
        self.run
            .save_checkpoint(&trainer.model.vs, &trainer.opt.state(), &self.state)?;
        if let Some(p) = self.pictures {
            p.write(
                trainer.model.method.as_ref(),
                &self.run.dir.join("reconstructions"),
                done,
            )?;
        }
        Ok(())
    }
}

impl StepObserver for RunObserver<'_> {
    fn after_step(&mut self, r: &StepRecord, trainer: &Trainer) -> anyhow::Result<Flow> {
        let t = &self.cfg.train;
        let (loss, out) = (r.done.loss, &r.done.out);
        let (done, total, per_epoch) = (r.ctx.step + 1, r.ctx.total_steps, r.ctx.steps_per_epoch);
        self.last_loss = loss;
        self.wait_total += r.wait_s;
        self.augment_total += r.augment_s;
        self.bar.inc(1);
        // before this step's checkpoint, so that it holds the re-timed length
        self.evaluate_if_due(done, trainer)?;
        let refit = self.retimed(done);
        let last = done == total;
        if done % t.log_every as u64 == 0 || last {
            let secs = self.window.0.elapsed().as_secs_f64();
            let ips =
                (done - self.start - self.window.1) as f64 * t.batch_size as f64 / secs.max(1e-9);
            self.window = (Instant::now(), done - self.start);
            self.bar
                .set_message(format!("loss {loss:.4} | {ips:.0} img/s"));
            let mut line = serde_json::json!({
                "step": done, "epoch": (done - 1) / per_epoch, "loss": loss, "lr": r.ctx.lr,
                "grad_norm": r.done.grad_norm, "images_per_s": ips,
                "train_minutes": self.trained_s() / 60.0,
                "embedding_std": embedding_std(&out.embeddings),
                "alignment": alignment(&out.embeddings, &out.embeddings_b),
                "uniformity": uniformity(&out.embeddings),
            });
            for (name, value) in &out.metrics {
                line[*name] = serde_json::json!(value);
            }
            if crate::dist::is_root() {
                self.run.log(&line)?;
            }
        }
        let epoch_end = done % per_epoch == 0;
        if done % t.checkpoint_every as u64 == 0 || epoch_end || last {
            self.checkpoint(done, trainer)?;
        }
        if epoch_end && crate::dist::is_root() {
            self.say(format!(
                "epoch {}/{}: loss {loss:.4}",
                done / per_epoch,
                t.epochs
            ));
        }
        if self
            .plain_progress
            .is_some_and(|p| p.elapsed().as_secs_f64() >= t.progress_seconds)
        {
            // no terminal (a log file, CI, nohup): the bar is hidden, so a plain line instead
            let secs = self.clock();
            let eta = secs / (done - self.start) as f64 * (total - done) as f64;
            eprintln!(
                "step {done}/{total}: loss {loss:.4}, {:.0} img/s, {:.1} min left",
                (done - self.start) as f64 * t.batch_size as f64 / secs.max(1e-9),
                eta / 60.0
            );
            self.plain_progress = Some(Instant::now());
        }
        // every rank stops at the same step when any of them is asked to
        if crate::dist::any_rank(interrupt::requested()) && !last {
            if self.state.step != done {
                self.checkpoint(done, trainer)?;
            }
            self.interrupted = Some(interrupt::Interrupted {
                step: done,
                total,
                dir: self.run.dir.clone(),
            });
            return Ok(Flow::Stop);
        }
        Ok(refit.map_or(Flow::Continue, Flow::Refit))
    }
}

fn progress_bar(total: u64, start: u64) -> ProgressBar {
    let target = match crate::dist::is_root() {
        true => ProgressDrawTarget::stderr_with_hz(4),
        false => ProgressDrawTarget::hidden(),
    };
    let bar = ProgressBar::with_draw_target(Some(total), target);
    bar.set_style(
        ProgressStyle::with_template(
            "{bar:30} {pos}/{len} steps | {msg} | {elapsed_precise} ETA {eta_precise}",
        )
        .expect("valid template"),
    );
    bar.set_position(start);
    bar.reset_eta();
    bar
}
