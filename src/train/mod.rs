//! The pre-training loop: data → views → method step → SGD, with a warm-up + cosine
//! learning rate, metrics as JSON lines, atomic checkpoints and exact resume.
//!
//! - [`trainer`]: the loop, once ([`Trainer::run`] with a [`StepObserver`]), and the schedule;
//! - [`pretrain`](mod@pretrain): preflight → resume → run, into a run folder;
//! - [`budget`]: how many steps fit in `train.minutes`; [`loader`]: batches on a thread;
//! - [`views`]: each method's view recipes; [`memory`]: the up-front memory check;
//! - [`run_dir`]: the run folder (checkpoints, lock, metrics, opening a trained encoder).

pub mod bench;
pub mod budget;
pub mod dist_check;
pub mod finetune;
pub mod grad_cache;
pub mod interrupt;
pub mod loader;
pub mod memory;
pub mod observe;
pub mod pictures;
#[cfg(test)]
mod precision_check;
pub mod preflight;
pub mod pretrain;
pub mod resume;
pub mod run_dir;
pub mod run_paths;
pub mod run_state;
pub mod step;
pub mod trainer;
pub mod views;

pub use loader::{Loader, LoaderData, LoaderSpec};
pub use pretrain::{pretrain, PretrainReport, Pretraining};
pub use resume::{check_resumable, DataFingerprint, RESUMABLE_CHANGES};
pub use run_dir::{load_checkpoint, open_encoder, restore_variables, RunDir, TrainedEncoder};
pub use run_paths::refuse_own_file;
pub use run_state::{BudgetState, RunState};
pub use step::{sgd_step, FaultAt, StepDone, StepFault};
pub use trainer::{Batch, Batches, Flow, Schedule, StepObserver, StepRecord, Trainer};
pub use views::{loader_data, method_views, small_crop_size, view_recipe, view_recipes};

use crate::backbone::to_channels_last;
use crate::config::TrainConfig;
use crate::data::{self, Splits};
use crate::method::{BuildContext, Method, MethodSpec};
use anyhow::bail;
use std::path::Path;
use tch::nn::VarStore;

/// Uses `threads` CPU threads for libtorch and rayon (0: all cores, shared among the ranks of a
/// data-parallel job on this machine).
pub fn set_threads(threads: usize) -> anyhow::Result<()> {
    let n = match threads {
        0 => (cores() / crate::dist::ranks_on_this_machine()).max(1),
        t => t,
    };
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
                shorter_side: Some(cfg.stored_side()),
                cache: (!d.no_cache)
                    .then(|| d.cache.clone().unwrap_or_else(data::cache::default_dir)),
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

/// Opens the whole trained model of the run in `dir` (the method with its heads and state, not
/// only the encoder), for what needs more than the encoder (CLIP's text tower): its checkpoint's
/// config (with `train.out_dir` = `dir`, where the run's files are read from) and every variable.
/// `device` is a `train.device` setting (`auto`, `cpu`, `cuda:0`).
pub fn open_model(dir: &Path, device: &str) -> anyhow::Result<(TrainConfig, Model)> {
    let ckpt = RunDir::open(dir).checkpoint();
    if !ckpt.is_file() {
        bail!(
            "{} has no checkpoint.safetensors: pass the --out folder of a `selfsup pretrain` run",
            dir.display()
        );
    }
    let loaded = load_checkpoint(&ckpt)?;
    let mut cfg = loaded.state.config;
    cfg.train.out_dir = dir.to_path_buf();
    cfg.train.device = device.to_string();
    let model = build_model(&cfg, None, Some(dir))?;
    restore_variables(&model.vs, &loaded.model, &ckpt)?;
    Ok((cfg, model))
}

/// A method, its spec and the variables it trains.
pub struct Model {
    pub vs: VarStore,
    pub method: Box<dyn Method>,
    pub spec: Box<dyn MethodSpec>,
}

/// What the method of `cfg` is built from; `data`: the training images (for methods with a
/// per-image memory) and their captions; `restore_from`: the run folder whose checkpoint the
/// model will be loaded from (resume, evaluation).
pub fn build_context(
    cfg: &TrainConfig,
    data: Option<&LoaderData>,
    restore_from: Option<&Path>,
) -> BuildContext {
    let images = data.map(|d| d.images.clone());
    let input_side = images
        .as_ref()
        .map_or_else(|| cfg.planned_crop_size(), |i| cfg.crop_size(i));
    BuildContext {
        backbone: cfg.model.backbone_config(input_side),
        projection_dim: cfg.model.projection_dim,
        projection_hidden: cfg.model.projection_hidden,
        channels_last: cfg.model.uses_channels_last(),
        seed: cfg.train.seed,
        batch_size: cfg.train.batch_size,
        input_side,
        images,
        captions: data.and_then(|d| d.captions.clone()),
        restore_from: restore_from.map(Path::to_path_buf),
    }
}

/// Builds the method of `cfg` with freshly initialised variables (seeded), for training on
/// `data` (None where nothing trains); `restore_from`: the run folder the variables will be
/// restored from, whose files ([`Method::run_files`]) the method reads back.
pub fn build_model(
    cfg: &TrainConfig,
    data: Option<&LoaderData>,
    restore_from: Option<&Path>,
) -> anyhow::Result<Model> {
    let spec = cfg.method.spec().map_err(anyhow::Error::msg)?;
    tch::manual_seed(cfg.train.seed as i64);
    let device = crate::device::resolve(&cfg.train.device)?;
    if device.is_cuda() {
        tch::Cuda::cudnn_set_benchmark(true); // fixed input sizes: cuDNN picks its fastest kernels once
    }
    let vs = VarStore::new(device);
    let ctx = build_context(cfg, data, restore_from);
    let method = crate::head::norm::building_with(cfg.model.head_norm, || spec.build(&vs, &ctx))?;
    if cfg.model.uses_channels_last() {
        to_channels_last(&vs);
    } else if cfg.model.channels_last && !cfg.model.is_vit() {
        eprintln!(
            "note: training in NCHW, not channels-last: a strided 1x1 convolution of this network has \
             fewer than {} input channels, where libtorch's channels-last CPU kernel corrupts the heap \
             (model.width {} is below 0.125)",
            crate::backbone::resnet::CHANNELS_LAST_MIN_INPUTS,
            cfg.model.width
        );
    }
    Ok(Model { vs, method, spec })
}
