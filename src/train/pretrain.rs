//! Pretraining into a run folder: **preflight** (everything that can be refused is refused
//! before the folder is written) → **resume** (or start fresh) → **run** (the loop, with an
//! observer that logs, checkpoints, shows progress and stops cleanly on Ctrl-C).

use super::loader::EarlyViews;
use super::observe::checkpointer::Checkpointer;
use super::observe::evaluations::{Due, KnnOnTheWay};
use super::observe::metrics_log::MetricsLog;
use super::observe::pictures::PictureWriter;
use super::observe::progress::Progress;
use super::observe::retime::{Retime, Retimer};
use super::observe::stop::StopOnSignal;
use super::observe::{Console, Observers, RunObserver, Session, WallClock};
use super::pictures::Pictures;
use super::preflight::preflight;
use super::resume::{check_resumable, non_finite_advice};
use super::trainer::{LoaderBatches, Schedule, Trainer};
use super::{budget, build_model, interrupt, load_checkpoint, restore_variables};
use super::{DataFingerprint, FaultAt, Loader, LoaderData, LoaderSpec, Model, RunDir, RunState};
use crate::augment::Views;
use crate::config::TrainConfig;
use crate::data::{Dataset, Splits};
use crate::precision::Precision;
use anyhow::{bail, Context};
use std::sync::Arc;

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
    /// The share of the session's wall clock spent waiting for the loader: near 0 when the
    /// loader keeps up, large when the device is starved.
    pub loader_wait_share: f64,
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
        // the precision `auto` resolves to here is the run's, kept on resume
        let device = crate::device::resolve(&cfg.train.device)?;
        cfg.train.precision = Precision::resolve(&cfg.train.precision, device)?
            .name()
            .into();
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
                data: Some(DataFingerprint::of(&splits.train)),
                ..RunState::fresh(cfg, schedule.total)
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
        if loaded.state.budget.fitted {
            self.schedule = self.schedule.fitted(loaded.state.total_steps);
            if let Some(w) = loaded.state.budget.warmup_steps {
                self.schedule.warmup = w;
            }
            s.total_steps = loaded.state.total_steps;
        }
        // the budget's plan and progressive resolution's switch, as the run left them
        s.budget = loaded.state.budget;
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
        // evaluations on the way already had their chance before this session (on resume); the
        // minutes the budget's calibration counts below have not (it can outlast an early one)
        let evaluated_min = self.state.train_seconds / 60.0;
        if let (Some(minutes), false) = (t.minutes, self.state.budget.fitted) {
            budget::fit(
                cfg,
                minutes,
                &self.data,
                &self.views,
                self.early_views.as_deref(),
                &mut self.state,
                &mut self.schedule,
            )?;
        }
        if self.early_views.is_some() && self.state.budget.switch_step.is_none() {
            self.state.budget.switch_step =
                Some(budget::switch_step(fraction, self.state.total_steps));
        }
        let switch = Arc::new(std::sync::atomic::AtomicU64::new(
            self.state.budget.switch_step.unwrap_or(0),
        ));
        if let (Some(at), true) = (self.state.budget.switch_step, crate::dist::is_root()) {
            eprintln!(
                "progressive resolution: {} px views for steps 1..{at} ({:.0} % of {}), then {} px{}",
                cfg.data.progressive_size,
                100.0 * fraction,
                self.state.total_steps,
                cfg.model.crop_size.unwrap_or(0),
                if self.state.budget.retimed_at.is_empty() && t.minutes.is_some() {
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
                .load_state(saved)
                .map_err(|e| anyhow::anyhow!("{}: {e}", self.run.checkpoint().display()))?;
        }
        let session = Session::new(
            cfg,
            &self.run,
            self.state.clone(),
            start,
            Box::new(WallClock::new()),
            Console::new(self.state.total_steps, start),
        );
        let mut list: Vec<Box<dyn RunObserver + '_>> = Vec::new();
        if let Some((train, test)) = &self.curve_data {
            let due = Due::new(&t.eval_at_minutes, evaluated_min, t.minutes);
            list.push(Box::new(KnnOnTheWay { train, test, due }));
        }
        list.push(Box::new(Retimer {
            next: retime,
            switch,
        }));
        list.push(Box::new(MetricsLog::new(&session)));
        list.push(Box::new(Checkpointer));
        list.push(Box::new(Progress::new(&session)));
        list.push(Box::new(StopOnSignal));
        list.push(Box::new(PictureWriter::new(&self.pictures)));
        let mut observer = Observers { session, list };
        let _armed = interrupt::arm();
        let world = crate::dist::world();
        world.set_timeout(Some(t.collective_timeout));
        let ran = trainer
            .run(start..total, &mut batches, &mut observer)
            .map_err(|e| match e.downcast_ref::<FaultAt>() {
                Some(fault) if matches!(fault.fault, super::StepFault::Fp16Overflow { .. }) => {
                    anyhow::anyhow!(
                        "{fault}: the activations exceed fp16's range. Resume in bf16 (the same \
                         speed on GPUs that have it) or fp32: `selfsup pretrain --out {} --resume \
                         --precision bf16`",
                        self.run.dir.display()
                    )
                }
                Some(fault) => anyhow::anyhow!(
                    "{fault}: training stopped before the update. {}",
                    non_finite_advice(&self.run, cfg)
                ),
                None => e,
            });
        world.set_timeout(None);
        drop(batches);
        let s = observer.session;
        s.console.bar.finish_and_clear();
        ran?;
        if let Some(stop) = s.interrupted {
            return Err(stop.into());
        }
        let total = s.state.total_steps;
        if crate::dist::is_root() {
            self.run
                .export_encoder(&self.model.vs, crate::method::ENCODER_PREFIX)?;
        }
        let steps_run = total - start;
        let secs = s.clock.session_s();
        let report = PretrainReport {
            steps_run,
            total_steps: total,
            last_loss: s.last_loss,
            images_per_s: steps_run as f64 * t.batch_size as f64 / secs.max(1e-9),
            inputs_per_image: self.views.iter().map(|v| v.shape().crops).sum(),
            data_wait_s: s.wait_total / steps_run.max(1) as f64,
            loader_wait_share: s.wait_total / secs.max(1e-9),
            augment_s: s.augment_total / steps_run.max(1) as f64,
            train_seconds: s.state.train_seconds,
        };
        Ok((report, self.model))
    }
}
