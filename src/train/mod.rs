//! The pre-training loop: data → two views → method step → SGD, with a warm-up + cosine
//! learning rate, metrics as JSON lines, atomic checkpoints and exact resume.

pub mod budget;
pub mod interrupt;
pub mod loader;
pub mod memory;
pub mod run_dir;
pub mod step;

pub use loader::{Loader, LoaderData};
pub use run_dir::{load_checkpoint, restore_variables, RunDir, RunState};
pub use step::{sgd_step, StepDone, StepFault};

use crate::augment::ViewRecipe;
use crate::backbone::to_channels_last;
use crate::config::TrainConfig;
use crate::data::Dataset;
use crate::data::{self, Splits};
use crate::eval::{alignment, embedding_std, uniformity};
use crate::method::{self, Method, Targets};
use crate::optim::{warmup_cosine, Sgd};
use anyhow::{bail, Context};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::io::IsTerminal;
use std::sync::Arc;
use std::time::Instant;
use tch::nn::VarStore;

/// Uses `threads` CPU threads for libtorch and rayon (0: all cores).
pub fn set_threads(threads: usize) -> anyhow::Result<()> {
    let n = if threads == 0 { cores() } else { threads };
    anyhow::ensure!(
        n <= max_threads(),
        "train.threads is {n}: at most {} ({MAX_THREADS_PER_CORE} per core of the {} here); 0 uses every core",
        max_threads(),
        cores()
    );
    tch::set_num_threads(n as i32);
    tch::set_num_interop_threads(1);
    match rayon::ThreadPoolBuilder::new()
        .num_threads(n)
        .build_global()
    {
        Ok(()) => Ok(()),
        // set once per process: a second call (the demo's eval after its training) keeps it
        Err(_) if rayon::current_num_threads() == n => Ok(()),
        Err(e) => anyhow::bail!("cannot start {n} augmentation threads: {e}"),
    }
}

/// Cores this process may use.
pub fn cores() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
}

/// More threads than this per core only slow training down (each step waits for the slowest).
pub const MAX_THREADS_PER_CORE: usize = 4;

/// The most `train.threads` accepts.
pub fn max_threads() -> usize {
    MAX_THREADS_PER_CORE * cores()
}

/// Loads `data.path`, or generates the built-in synthetic shapes when it is unset.
pub fn load_data(cfg: &TrainConfig) -> anyhow::Result<Splits> {
    let d = &cfg.data;
    let splits = match &d.path {
        None => data::synthetic::generate(
            d.synthetic_train_per_class,
            d.synthetic_test_per_class,
            d.synthetic_size,
            cfg.train.seed,
        ),
        Some(path) => {
            let opts = data::LoadOptions {
                image_size: d.image_size,
                skip_bad: d.skip_bad,
                limit: d.limit,
            };
            data::load(path, &opts)?
        }
    };
    if splits.train.images.is_empty() {
        bail!("the training split has no images");
    }
    Ok(splits)
}

/// The SimCLR view recipe for images of side `size`.
pub fn view_recipe(cfg: &TrainConfig, size: usize) -> ViewRecipe {
    let mut r = ViewRecipe::simclr(size);
    r.blur_p = cfg.data.blur_p;
    r.crop_scale.0 = cfg.data.crop_min_scale;
    r
}

/// The recipe of every view of an image: two large views, then `data.small_crops` small ones.
/// - BYOL's and DINO's two large views are asymmetric (Grill et al. 2020, Table 6; DINO
///   appendix): the second is blurred a tenth as often and solarized with probability 0.2.
/// - Multi-crop (SwAV §3.2, DINO): the small views are crops of area `data.small_crop_scale`
///   resized to `data.small_crop_size` (0: `3/7` of the large side, 96 px for 224 as in the
///   papers, 14 px for CIFAR's 32).
pub fn view_recipes(cfg: &TrainConfig, size: usize) -> Vec<ViewRecipe> {
    let a = view_recipe(cfg, size);
    let mut b = a.clone();
    if matches!(cfg.method.name.as_str(), "byol" | "dino") {
        b.blur_p = a.blur_p * 0.1;
        b.solarize_p = 0.2;
    }
    let mut small = a.clone();
    small.out_size = small_crop_size(cfg, size);
    small.crop_scale = cfg.data.small_crop_scale;
    let mut recipes = vec![a, b];
    recipes.extend(std::iter::repeat_n(small, cfg.data.small_crops));
    recipes
}

/// Side of the small multi-crop views for large views of side `size`.
pub fn small_crop_size(cfg: &TrainConfig, size: usize) -> usize {
    match cfg.data.small_crop_size {
        0 => ((size * 3) as f64 / 7.0).round().max(1.0) as usize,
        s => s,
    }
}

/// What the loader reads: the images, and the per-image targets the method trains on.
pub fn loader_data(train: &Dataset, method: &dyn Method) -> anyhow::Result<LoaderData> {
    let targets = match method.targets() {
        Targets::Nothing => None,
        Targets::ClassLabels => {
            let Some(l) = &train.labels else {
                bail!(
                    "this method trains on class labels, but the training images have none: give --data a folder \
                     with one sub-folder per class (or labelled IDX/CIFAR files)"
                );
            };
            Some(Arc::new(l.iter().map(|&y| y as i64).collect()))
        }
        Targets::ImageIndices => Some(Arc::new((0..train.len() as i64).collect())),
    };
    Ok(LoaderData {
        images: Arc::new(train.images.clone()),
        targets,
    })
}

/// The side of the square network input for a store of `h × w` images.
pub fn input_size(h: usize, w: usize) -> usize {
    h.min(w)
}

/// What a finished (or resumed-and-finished) pre-training reports.
#[derive(Debug, Clone)]
pub struct PretrainReport {
    pub steps_run: u64,
    pub total_steps: u64,
    pub last_loss: f64,
    /// Images (each two views) per second end to end over this session's steps.
    pub images_per_s: f64,
    /// Mean seconds per step the trainer waited for the loader (0 when the pipeline keeps up).
    pub data_wait_s: f64,
    /// Mean seconds per step the loader spent augmenting (on its own thread).
    pub augment_s: f64,
    pub train_seconds: f64,
}

/// A method and the variables it trains.
pub struct Model {
    pub vs: VarStore,
    pub method: Box<dyn Method>,
}

/// Builds the method of `cfg` with freshly initialised variables (seeded).
pub fn build_model(cfg: &TrainConfig) -> anyhow::Result<Model> {
    tch::manual_seed(cfg.train.seed as i64);
    let vs = VarStore::new(tch::Device::Cpu);
    let method = method::build(&vs, cfg)?;
    if cfg.model.uses_channels_last() {
        to_channels_last(&vs);
    } else if cfg.model.channels_last {
        eprintln!(
            "note: training in NCHW, not channels-last: a strided 1x1 convolution of this network has \
             fewer than {} input channels, where libtorch's channels-last CPU kernel corrupts the heap \
             (model.width {} is below 0.125)",
            crate::backbone::resnet::CHANNELS_LAST_MIN_INPUTS,
            cfg.model.width
        );
    }
    Ok(Model { vs, method })
}

/// Pre-trains on `splits.train` into `cfg.train.out_dir`. With `resume`, continues from the
/// folder's checkpoint; without, refuses to overwrite a folder that has one.
pub fn pretrain(
    cfg: &TrainConfig,
    splits: &Splits,
    model: &Model,
    resume: bool,
) -> anyhow::Result<PretrainReport> {
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
    model.method.check_data(n)?;
    let size = input_size(splits.train.images.height, splits.train.images.width);
    if let Some(mut available) = memory::available_bytes() {
        if cfg.method.name == "moco" {
            available = memory::check_queue_fits(
                cfg.method.queue_size,
                cfg.model.projection_dim,
                available,
            )
            .map_err(anyhow::Error::msg)?;
        }
        let shape = memory::StepShape {
            size,
            batch: t.batch_size,
            small_crops: cfg.data.small_crops,
            small_size: small_crop_size(cfg, size),
            tiled: cfg.method.loss.ends_with("_tiled"),
        };
        memory::check_fits(&cfg.model.resnet(), &shape, available).map_err(anyhow::Error::msg)?;
    }
    let data = loader_data(&splits.train, model.method.as_ref())?;
    let run = RunDir::create(&t.out_dir)?;
    let steps_per_epoch = (n / t.batch_size) as u64;
    let epoch_steps = steps_per_epoch * t.epochs as u64;
    let warmup = (cfg.optim.warmup_epochs * steps_per_epoch as f64).round() as u64;
    let mut opt = Sgd::new(&model.vs, cfg.optim.momentum, cfg.optim.weight_decay);

    let mut state = RunState {
        step: 0,
        total_steps: epoch_steps,
        fitted: false,
        train_seconds: 0.0,
        config: cfg.clone(),
    };
    let ckpt = run.checkpoint();
    if resume && !ckpt.exists() {
        bail!(
            "--resume: {} holds no checkpoint, so there is nothing to resume (is --out right?). \
             Start a new run there without --resume",
            run.dir.display()
        );
    }
    if ckpt.exists() {
        if !resume {
            bail!(
                "{} already holds a checkpoint: pass --resume to continue that run, or choose another --out",
                run.dir.display()
            );
        }
        let loaded = load_checkpoint(&ckpt)?;
        check_resumable(&loaded.state.config, cfg)
            .with_context(|| format!("cannot resume from {}", ckpt.display()))?;
        restore_variables(&model.vs, &loaded.model, &ckpt)?;
        model
            .method
            .restore_buffers(&loaded.method)
            .with_context(|| format!("cannot resume from {}", ckpt.display()))?;
        opt.load_state(&loaded.optim)
            .map_err(|e| anyhow::anyhow!("{}: {e}", ckpt.display()))?;
        state.step = loaded.state.step;
        state.train_seconds = loaded.state.train_seconds;
        if loaded.state.fitted {
            (state.total_steps, state.fitted) = (loaded.state.total_steps, true);
        }
        if state.step >= state.total_steps {
            bail!(
                "{} is complete: all {} steps are trained, so there is nothing to resume. Evaluate it \
                 with `selfsup eval --run {}`, or train it longer with a larger --epochs and --resume",
                run.dir.display(),
                state.step,
                run.dir.display()
            );
        }
        run.truncate_log_after(state.step)?;
        eprintln!(
            "resuming {} at step {}/{}",
            run.dir.display(),
            state.step,
            state.total_steps
        );
    } else {
        // A fresh run: lines of an earlier attempt that never reached a checkpoint go.
        run.truncate_log_after(0)?;
        write_run_config(&run, cfg)?;
    }

    let recipes = view_recipes(cfg, size);
    for r in &recipes {
        r.validate()?;
        if r.out_size > size {
            bail!(
                "data.small_crop_size is {} but the images are {size} px: small crops must be at most {size}",
                r.out_size
            );
        }
    }
    let prepared = Instant::now();
    model
        .method
        .prepare(&data.images, state.step, steps_per_epoch)?;
    let prepare_s = prepared.elapsed().as_secs_f64();
    state.train_seconds += prepare_s;
    if let (Some(minutes), false) = (t.minutes, state.fitted) {
        let c = budget::calibrate(cfg, &data, &recipes)?;
        let budget_s = minutes * 60.0;
        let spent = c.seconds + prepare_s;
        state.total_steps =
            budget::steps_that_fit(budget_s, spent, c.seconds_per_step, epoch_steps);
        state.fitted = true;
        state.train_seconds += c.seconds;
        eprintln!(
            "time budget {minutes} min: {} steps ({:.2} epochs) fit at {:.3} s/step (measured in {:.0} s)",
            state.total_steps,
            state.total_steps as f64 / steps_per_epoch as f64,
            c.seconds_per_step,
            c.seconds
        );
    }
    // a budget too short for the configured warm-up warms up over its first quarter
    let warmup = if t.minutes.is_some() {
        warmup.min(state.total_steps / 4)
    } else {
        warmup
    };
    let start = state.step;
    let mut loader = Loader::spawn(
        data,
        recipes,
        t.batch_size,
        t.seed,
        start,
        state.total_steps,
        t.prefetch,
    );
    let bar = progress_bar(state.total_steps, start);

    let session = Instant::now();
    let seconds_before = state.train_seconds;
    let (mut wait_total, mut augment_total, mut last_loss) = (0.0, 0.0, f64::NAN);
    let mut window = (Instant::now(), 0u64);
    let total_steps = state.total_steps;
    let mut plain_progress = (!std::io::stderr().is_terminal()).then(Instant::now);
    let _armed = interrupt::arm();
    for s in start..total_steps {
        let w = Instant::now();
        let batch = loader
            .next()
            .context("the data loader stopped unexpectedly")?;
        wait_total += w.elapsed().as_secs_f64();
        augment_total += batch.augment_s;
        debug_assert_eq!(batch.step, s);
        let (views, targets) = batch.to_tensors(cfg.model.uses_channels_last());
        let lr = warmup_cosine(s, total_steps, warmup, cfg.optim.lr, cfg.optim.final_lr);
        let done_step = sgd_step(
            model,
            &mut opt,
            &views,
            targets.as_ref(),
            lr,
            (s, total_steps),
        )
        .map_err(|e| match e.downcast_ref::<StepFault>() {
            Some(fault) => anyhow::anyhow!(
                "{fault} at step {s} (epoch {}): training stopped before the update. {}",
                s / steps_per_epoch,
                non_finite_advice(&run, cfg)
            ),
            None => e,
        })?;
        let StepDone {
            out,
            loss,
            grad_norm,
        } = done_step;
        last_loss = loss;
        let done = s + 1;
        bar.inc(1);
        let last = done == total_steps;
        if done % t.log_every as u64 == 0 || last {
            let secs = window.0.elapsed().as_secs_f64();
            let ips = (done - start - window.1) as f64 * t.batch_size as f64 / secs.max(1e-9);
            window = (Instant::now(), done - start);
            bar.set_message(format!("loss {loss:.4} | {ips:.0} img/s"));
            run.log(&serde_json::json!({
                "step": done, "epoch": (done - 1) / steps_per_epoch, "loss": loss, "lr": lr, "grad_norm": grad_norm,
                "images_per_s": ips, "embedding_std": embedding_std(&out.embeddings),
                "alignment": alignment(&out.embeddings, &out.embeddings_b),
                "uniformity": uniformity(&out.embeddings),
            }))?;
        }
        let epoch_end = done % steps_per_epoch == 0;
        if done % t.checkpoint_every as u64 == 0 || epoch_end || last {
            state.step = done;
            state.train_seconds = seconds_before + session.elapsed().as_secs_f64();
            run.save_checkpoint(&model.vs, model.method.buffers(), &opt.state(), &state)?;
        }
        if epoch_end {
            bar.println(format!(
                "epoch {}/{}: loss {loss:.4}",
                done / steps_per_epoch,
                t.epochs
            ));
        }
        if plain_progress
            .as_ref()
            .is_some_and(|p| p.elapsed().as_secs_f64() >= t.progress_seconds)
        {
            // no terminal (a log file, CI, nohup): the bar is hidden, so a plain line instead
            let secs = session.elapsed().as_secs_f64();
            let eta = secs / (done - start) as f64 * (total_steps - done) as f64;
            eprintln!(
                "step {done}/{total_steps}: loss {loss:.4}, {:.0} img/s, {:.1} min left",
                (done - start) as f64 * t.batch_size as f64 / secs.max(1e-9),
                eta / 60.0
            );
            plain_progress = Some(Instant::now());
        }
        if interrupt::requested() && !last {
            if state.step != done {
                state.step = done;
                state.train_seconds = seconds_before + session.elapsed().as_secs_f64();
                run.save_checkpoint(&model.vs, model.method.buffers(), &opt.state(), &state)?;
            }
            bar.finish_and_clear();
            return Err(interrupt::Interrupted {
                step: done,
                total: total_steps,
                dir: run.dir.clone(),
            }
            .into());
        }
    }
    drop(loader);
    bar.finish_and_clear();
    run.export_encoder(&model.vs, model.method.encoder_prefix())?;
    let steps_run = total_steps - start;
    let secs = session.elapsed().as_secs_f64();
    Ok(PretrainReport {
        steps_run,
        total_steps,
        last_loss,
        images_per_s: steps_run as f64 * t.batch_size as f64 / secs.max(1e-9),
        data_wait_s: wait_total / steps_run.max(1) as f64,
        augment_s: augment_total / steps_run.max(1) as f64,
        train_seconds: state.train_seconds,
    })
}

fn write_run_config(run: &RunDir, cfg: &TrainConfig) -> anyhow::Result<()> {
    crate::checkpoint::write_atomic(&run.config(), cfg.to_toml().as_bytes())?;
    Ok(())
}

/// What to do after a non-finite loss or gradient: resume from the last checkpoint with a
/// tenth of the learning rate when one exists, else start again with it.
fn non_finite_advice(run: &RunDir, cfg: &TrainConfig) -> String {
    let lr = match cfg.optim.lr / 10.0 {
        lr if (1e-4..1e4).contains(&lr) => format!("{}", (lr * 1e6).round() / 1e6),
        lr => format!("{lr:.0e}"),
    };
    match load_checkpoint(&run.checkpoint()) {
        Ok(c) => format!(
            "The last good checkpoint is {} (step {}): resume it with a lower learning rate, e.g. \
             `selfsup pretrain --out {} --resume --lr {lr}`",
            run.checkpoint().display(),
            c.state.step,
            run.dir.display()
        ),
        Err(_) => format!(
            "No checkpoint was written yet (the first comes at step {} or at the end of the first \
             epoch): start again with a lower learning rate (e.g. --lr {lr}) or a higher temperature",
            cfg.train.checkpoint_every
        ),
    }
}

/// Settings that may change when a run is resumed: they change how the rest of the run goes
/// (a lower learning rate after a non-finite loss, more epochs to extend it, the machine's
/// threads) or nothing the model sees (logging, evaluation, where the run folder is).
/// Every other key must be the one the checkpoint was trained with.
pub const RESUMABLE_CHANGES: &[&str] = &[
    "optim.lr",
    "optim.final_lr",
    "train.epochs",
    "train.threads",
    "train.prefetch",
    "train.log_every",
    "train.checkpoint_every",
    "train.progress_seconds",
    "train.out_dir",
    "data.skip_bad",
    "data.path",
    "eval.",
];

/// Refuses a resume whose settings differ from the checkpoint's in a key outside
/// [`RESUMABLE_CHANGES`]; the message names each key with its old and new value. `data.path`
/// may change only to a path of the same folder.
pub fn check_resumable(saved: &TrainConfig, now: &TrainConfig) -> anyhow::Result<()> {
    let (old, new) = (saved.flat_settings(), now.flat_settings());
    let keys: std::collections::BTreeSet<&String> = old.keys().chain(new.keys()).collect();
    let unset = "(unset)".to_string();
    let mut refused = Vec::new();
    for k in keys {
        let (o, n) = (old.get(k).unwrap_or(&unset), new.get(k).unwrap_or(&unset));
        if o == n {
            continue;
        }
        let allowed = RESUMABLE_CHANGES
            .iter()
            .any(|a| k == a || (a.ends_with('.') && k.starts_with(a)));
        let same_folder = k == "data.path"
            && match (&saved.data.path, &now.data.path) {
                (Some(a), Some(b)) => {
                    a.canonicalize().ok().is_some()
                        && a.canonicalize().ok() == b.canonicalize().ok()
                }
                _ => false,
            };
        if !allowed || (k == "data.path" && !same_folder) {
            refused.push(format!("{k}: {o} in the checkpoint, {n} now"));
        }
    }
    if !refused.is_empty() {
        bail!(
            "these settings differ from the ones the run was trained with: {}. Resume with the \
             checkpoint's values (pass only --out and --resume to use the run's config.toml); only {} \
             may change",
            refused.join("; "),
            RESUMABLE_CHANGES.join(", ")
        );
    }
    Ok(())
}

fn progress_bar(total: u64, start: u64) -> ProgressBar {
    let bar = ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr_with_hz(4));
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn byol_views_are_asymmetric_and_the_others_share_one_recipe() {
        let mut cfg = TrainConfig::default();
        cfg.data.blur_p = 1.0;
        let r = view_recipes(&cfg, 32);
        assert_eq!(r.len(), 2);
        assert_eq!(r[0], r[1]);
        assert_eq!(r[0].crop_scale.0, cfg.data.crop_min_scale);
        for name in ["byol", "dino"] {
            cfg.method.name = name.into();
            let r = view_recipes(&cfg, 32);
            assert_eq!((r[0].blur_p, r[0].solarize_p), (1.0, 0.0));
            assert!((r[1].blur_p - 0.1).abs() < 1e-6 && r[1].solarize_p == 0.2);
        }
    }

    #[test]
    fn multi_crop_adds_small_views_after_the_two_large_ones() {
        let mut cfg = TrainConfig::default();
        cfg.method.name = "swav".into();
        cfg.data.small_crops = 3;
        let r = view_recipes(&cfg, 32);
        assert_eq!(r.len(), 5);
        assert_eq!((r[0].out_size, r[1].out_size), (32, 32));
        for small in &r[2..] {
            assert_eq!(small.out_size, 14, "3/7 of 32");
            assert_eq!(small.crop_scale, (0.05, 0.14));
        }
        assert_eq!(view_recipes(&cfg, 224)[4].out_size, 96);
        cfg.data.small_crop_size = 20;
        assert_eq!(view_recipes(&cfg, 32)[2].out_size, 20);
    }
}
