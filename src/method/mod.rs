//! Methods: compositions of backbone + heads + loss, with the views they train on.
//!
//! A method is one file plus one row of [`registry::REGISTRY`]. The file holds:
//! - its **config section** `[method.<name>]`: a serde struct (unknown keys are errors) whose
//!   fields document their defaults, implementing [`MethodSpec`] (checks, views, targets,
//!   memory, recommended learning rate) and [`MethodSection`] (its name and summary);
//! - the **method** itself, built by [`MethodSpec::build`]: a [`Method`] whose `step` maps views
//!   to a loss. State the method keeps across steps (queues, centres, memory banks) lives in the
//!   variable store as non-trainable variables, so checkpoints save and restore it with the
//!   weights; there is no second mechanism.
//!
//! Nothing outside `method/` names a method.

pub mod barlow_twins;
pub mod block_masks;
pub mod byol;
pub mod clip;
pub mod context_encoder;
pub mod deepcluster;
pub mod denoising_ae;
pub mod dino;
pub mod distill;
pub mod ema;
pub mod fastsiam;
pub mod fault;
pub mod ibot;
pub mod ijepa;
pub mod jigsaw;
pub mod kmeans;
pub mod mae;
pub mod moco;
pub mod mocov3;
pub mod nnclr;
pub mod plan;
pub mod pretext;
pub mod queue;
pub mod registry;
pub mod relative_patch;
pub mod rotation;
pub mod self_prediction;
pub mod simclr;
pub mod simmim;
pub mod simsiam;
pub mod sinkhorn;
pub mod supcon;
pub mod swav;
pub mod temporal_order;
pub mod vicreg;

pub use ema::Ema;
pub use fault::StepFault;
pub use plan::{LargeState, MethodPlan, MicroBatch, ParamPlan, Targets, ViewPlan};
pub use queue::Queue;
pub use registry::{MethodEntry, REGISTRY};

use crate::augment::{ViewRecipe, Views};
use crate::backbone::{Backbone, BackboneConfig};
use crate::data::ImageStore;
use crate::error::SettingError;
use crate::head::Mlp;
use std::sync::Arc;
use tch::{nn, Tensor};

/// The encoder's variables are named `backbone.*` in every method's store (stripped on export).
pub const ENCODER_PREFIX: &str = "backbone.";

/// What one training step returns.
pub struct StepOutput {
    /// The scalar loss to minimise.
    pub loss: Tensor,
    /// Embeddings of the first view [K, D'], for collapse diagnostics (detached).
    pub embeddings: Tensor,
    /// Embeddings of the second view [K, D'] (detached), for alignment.
    pub embeddings_b: Tensor,
    /// Figures of the step logged beside the loss (a pretext task's accuracy), by name: scalar
    /// tensors on the method's device (detached), read to the host only on the steps that log
    /// them, so that a GPU step does not wait for them.
    pub metrics: Vec<(&'static str, Tensor)>,
}

/// Where the run is when a step runs: schedules inside a method (EMA momentum, temperature
/// warm-ups, re-clustering at epoch starts) read it.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct StepContext {
    /// The step being taken, 0-based.
    pub step: u64,
    pub total_steps: u64,
    pub steps_per_epoch: u64,
    /// The learning rate of this step.
    pub lr: f64,
}

impl StepContext {
    /// The epoch of this step, 0-based.
    pub fn epoch(&self) -> u64 {
        self.step / self.steps_per_epoch.max(1)
    }

    /// Epochs completed before this step, fractional: `step / steps_per_epoch`.
    pub fn epochs_done(&self) -> f64 {
        self.step as f64 / self.steps_per_epoch.max(1) as f64
    }

    /// Starts an epoch.
    pub fn starts_epoch(&self) -> bool {
        self.step.is_multiple_of(self.steps_per_epoch.max(1))
    }
}

/// What a method is built from, besides its own config section.
#[derive(Clone)]
pub struct BuildContext {
    /// The encoder's architecture (`model.backbone`).
    pub backbone: BackboneConfig,
    /// Output dimension of the projection head (`model.projection_dim`).
    pub projection_dim: i64,
    /// Hidden width of the heads; None: the method's own default (documented in its file).
    pub projection_hidden: Option<i64>,
    /// Inputs arrive in channels-last memory order.
    pub channels_last: bool,
    /// Seed of the run (k-means initialisations).
    pub seed: u64,
    /// Images per step.
    pub batch_size: usize,
    /// The training images: a method with a per-image memory sizes and fills it from them.
    /// None when no training happens (evaluation builds only the encoder).
    pub images: Option<Arc<ImageStore>>,
    /// The training resolution: side of the square views.
    pub input_side: usize,
    /// The training images' captions, in image order (methods that learn from text, which
    /// look them up by image index with [`Targets::ImageIndices`]); None without captions or
    /// when nothing trains.
    pub captions: Option<Arc<Vec<String>>>,
    /// The run folder whose checkpoint the variables will be restored from (a resumed run, an
    /// evaluation): a method reads the files it keeps there ([`Method::run_files`]) back rather
    /// than making them anew. None for a fresh run.
    pub restore_from: Option<std::path::PathBuf>,
}

impl BuildContext {
    /// The encoder `backbone.*` under `p`.
    pub fn backbone(&self, p: &nn::Path) -> anyhow::Result<Backbone> {
        Backbone::new(&(p / "backbone"), &self.backbone).map_err(anyhow::Error::msg)
    }

    /// The encoder `backbone.*` and SimCLR's projection `projection.*` under `p`:
    /// `Linear(d, hidden) → BN → ReLU → Linear(hidden, projection_dim)`, hidden
    /// `model.projection_hidden`, default d (the encoder's features).
    pub fn encoder_and_projection(&self, p: &nn::Path) -> anyhow::Result<(Backbone, Mlp)> {
        let backbone = self.backbone(p)?;
        let d = backbone.out_dim();
        let projection = Mlp::simclr_projection(
            &(p / "projection"),
            d,
            self.hidden_or(d),
            self.projection_dim,
        )
        .map_err(anyhow::Error::msg)?;
        Ok((backbone, projection))
    }

    /// The heads' hidden width: `model.projection_hidden`, else `default`.
    pub fn hidden_or(&self, default: i64) -> i64 {
        self.projection_hidden.unwrap_or(default)
    }
}

/// A self-supervised method: its loss on a batch of views, and the encoder it trains.
pub trait Method {
    /// Views: `views[v]` is [K, 3, H_v, W_v], view v of the same K images (views 0 and 1 the
    /// large ones; multi-crop methods take smaller ones after them). `targets` \[K\] (i64) are
    /// what [`MethodPlan::targets`] asks for: the images' classes or their indices.
    ///
    /// A method whose plan says [`MicroBatch::Split`] implements [`Method::embed_views`] and
    /// [`Method::embedding_loss`] instead, and this is their composition.
    fn step(
        &mut self,
        views: &[Tensor],
        targets: Option<&Tensor>,
        ctx: &StepContext,
    ) -> anyhow::Result<StepOutput> {
        let e = self.embed_views(views, targets, ctx)?;
        self.embedding_loss(&e, targets, ctx)
    }
    /// The per-image half of a split step: of the views (and targets) of some K images, the
    /// tensors the loss reads, each [K, …] with row i from image i. Those computed with
    /// gradients are the trained networks' outputs; a target network's are computed without.
    /// Exact micro-batching (train/grad_cache.rs) calls it on slices of the batch, twice per
    /// slice, and needs the same output both times.
    fn embed_views(
        &mut self,
        _views: &[Tensor],
        _targets: Option<&Tensor>,
        _ctx: &StepContext,
    ) -> anyhow::Result<Vec<Tensor>> {
        anyhow::bail!("this method does not split its step into embeddings and a loss")
    }
    /// The batch half of a split step: the loss of the whole batch from [`Method::embed_views`]'s
    /// tensors, concatenated over the batch's slices in order (`targets` are the batch's).
    fn embedding_loss(
        &mut self,
        _embeddings: &[Tensor],
        _targets: Option<&Tensor>,
        _ctx: &StepContext,
    ) -> anyhow::Result<StepOutput> {
        anyhow::bail!("this method does not split its step into embeddings and a loss")
    }
    /// Called after the optimiser's update of step `ctx.step` (not after a step that stopped on
    /// a non-finite loss): momentum updates of target networks, queue and bank writes.
    fn after_step(&mut self, _ctx: &StepContext) {}
    /// The encoder f whose features are evaluated and exported (its variables are under
    /// [`ENCODER_PREFIX`]).
    fn encoder(&self) -> &Backbone;
    /// The method's own parameter groups ([`ParamPlan`]): which of its variables are not
    /// decayed, held at the peak learning rate, or updated by the method itself. The encoder's
    /// no-decay tokens join them without being listed here ([`plan::parameter_groups`]).
    fn param_plan(&self) -> ParamPlan {
        ParamPlan::default()
    }
    /// For the self-prediction methods: of clean views `x` [n, 3, S, S], what the encoder saw
    /// and what the method made of it, both [n, 3, S, S] in the views' normalised space (eval
    /// mode, no gradient, the masks of [`self_prediction::PICTURE_STEP`]). None: nothing to
    /// picture.
    fn reconstruct(&self, _x: &Tensor) -> Option<(Tensor, Tensor)> {
        None
    }
    /// Files the method keeps in the run folder beside its checkpoint, by name (CLIP's
    /// `tokenizer.json`): written atomically before each checkpoint, read back through
    /// [`BuildContext::restore_from`].
    fn run_files(&self) -> anyhow::Result<Vec<(&'static str, Vec<u8>)>> {
        Ok(Vec::new())
    }
    /// For methods that embed texts beside images (CLIP): the two embedders, for zero-shot
    /// classification and retrieval. None: images only.
    fn text_image(&self) -> Option<&dyn TextImage> {
        None
    }
}

/// Images and texts embedded into one space (CLIP).
pub trait TextImage {
    /// Eval-mode image embeddings: normalised views [n, 3, S, S] (the eval transform, on the
    /// method's device) → [n, D] unit rows.
    fn embed_images(&self, x: &Tensor) -> Tensor;
    /// Texts → [m, D] unit rows (eval mode, no gradient).
    fn embed_texts(&self, texts: &[String]) -> anyhow::Result<Tensor>;
    /// The device the embedders run on.
    fn device(&self) -> tch::Device;
}

/// What a method's config section knows about the method before it is built.
pub trait MethodSpec: std::fmt::Debug {
    /// Checks the section's values; the error names the key and its range.
    fn check(&self) -> Result<(), SettingError> {
        Ok(())
    }
    /// What the method declares about itself as data: views, targets, optimiser defaults,
    /// memory, data-parallel ([`MethodPlan`]).
    fn plan(&self) -> MethodPlan {
        MethodPlan::default()
    }
    /// What the loader renders for each image, from the recipes of the plan's views
    /// (large views at the crop size first): the recipes themselves, unless the method cuts
    /// them up (pretext tasks). The message of an error names the setting.
    fn render_views(&self, recipes: Vec<ViewRecipe>) -> Result<Vec<Arc<dyn Views>>, SettingError> {
        Ok(recipes
            .into_iter()
            .map(|r| Arc::new(r) as Arc<dyn Views>)
            .collect())
    }
    /// A warning when the training images do not look like what the method reads (temporal
    /// order's filmstrips); printed before training.
    fn data_warning(&self, _images: &crate::data::ImageStore) -> Option<String> {
        None
    }
    /// Builds the method, creating its variables in `vs`.
    fn build(&self, vs: &nn::VarStore, ctx: &BuildContext) -> anyhow::Result<Box<dyn Method>>;
}

/// A method's config section as the registry reads it: `[method.<NAME>]`.
pub trait MethodSection:
    MethodSpec + serde::Serialize + serde::de::DeserializeOwned + Default + 'static
{
    /// The `method.name` (and `--method`) of the method.
    const NAME: &'static str;
    /// One line for `--help` and error messages.
    const SUMMARY: &'static str;
    /// Names of the files the method keeps in the run folder beside the checkpoint
    /// ([`Method::run_files`]): outputs of `export`, `embed`, `neighbors` may not replace them.
    const RUN_FILES: &'static [&'static str] = &[];
}

/// The two views of a two-view method's batch as one batch: `(K, [x_a; x_b])`, [2K, 3, H, W]
/// (BatchNorm then sees both views, as in SimCLR); `method` names it in the error.
pub fn two_views(views: &[Tensor], method: &str) -> anyhow::Result<(i64, Tensor)> {
    anyhow::ensure!(
        views.len() == 2,
        "{method} takes 2 views per image, got {}",
        views.len()
    );
    Ok((views[0].size()[0], Tensor::cat(views, 0)))
}

/// `"<what> is <v>: it must be > 0"` unless `v` is finite and positive.
pub fn positive(what: &str, v: f64) -> Result<(), SettingError> {
    match v.is_finite() && v > 0.0 {
        true => Ok(()),
        false => Err(SettingError::out_of_range(what, v, "it must be > 0")),
    }
}

/// `"<what> is <v>: it must be in [0, 1]"` unless it is.
pub fn unit_interval(what: &str, v: f64) -> Result<(), SettingError> {
    match (0.0..=1.0).contains(&v) {
        true => Ok(()),
        false => Err(SettingError::out_of_range(what, v, "it must be in [0, 1]")),
    }
}

#[cfg(test)]
pub(crate) mod testing {
    //! Tiny settings and views for the methods' tests.
    use super::{BuildContext, Method, StepContext};
    use crate::backbone::{BackboneConfig, ResNetConfig, Stem};
    use crate::optim::Sgd;
    use tch::{nn, Tensor};

    /// ResNet-18 at width 1/8 with a 16-d projection and 32-wide hidden layers, seeded.
    pub fn tiny_context() -> BuildContext {
        tch::manual_seed(0);
        BuildContext {
            backbone: BackboneConfig::ResNet(ResNetConfig {
                depth: 18,
                stem: Stem::Cifar,
                width: 0.125,
            }),
            projection_dim: 16,
            projection_hidden: Some(32),
            channels_last: false,
            seed: 0,
            batch_size: 8,
            images: None,
            input_side: 16,
            captions: None,
            restore_from: None,
        }
    }

    /// The pretext batch of `n` random 16-px images as the loader makes it from a 16-px
    /// SimCLR recipe: the views [n·C, 3, S, S] and their labels [n, L].
    pub fn pretext_batch(
        spec: &dyn super::MethodSpec,
        n: usize,
        seed: u64,
    ) -> (Vec<Tensor>, Tensor) {
        let mut r = crate::rng::Rng::new(seed);
        let px: Vec<u8> = (0..n * 16 * 16 * 3).map(|_| r.below(256) as u8).collect();
        let images = crate::data::ImageStore::uniform(16, 16, px);
        let views = spec
            .render_views(vec![crate::augment::ViewRecipe::simclr(16)])
            .unwrap();
        let shape = views[0].shape();
        let mut out = vec![0f32; n * shape.floats()];
        let mut labels = vec![0i64; n * shape.labels];
        let idx: Vec<usize> = (0..n).collect();
        crate::augment::render_batch(
            &images,
            &idx,
            views[0].as_ref(),
            (seed, 0, 0),
            &mut out,
            &mut labels,
        );
        let x = crate::augment::nhwc_to_tensor(&out, n * shape.crops, shape.side, false);
        let y = Tensor::from_slice(&labels).view([n as i64, shape.labels as i64]);
        (vec![x], y)
    }

    /// Step `step` of a run of `total` steps, 4 steps per epoch.
    pub fn at(step: u64, total: u64) -> StepContext {
        StepContext {
            step,
            total_steps: total,
            steps_per_epoch: 4,
            lr: 0.05,
        }
    }

    /// Two views [k, 3, 16, 16] of k random images (the second slightly perturbed): unit-
    /// variance uniform noise from our own generator, not libtorch's global one, which the tests
    /// running beside this one on other threads reseed and draw from (a test comparing two runs
    /// on the same views would see different views).
    pub fn tiny_views(k: i64, seed: i64) -> Vec<Tensor> {
        let mut r = crate::rng::Rng::new(seed as u64);
        let mut noise = || -> Tensor {
            let v: Vec<f32> = (0..k * 3 * 16 * 16)
                .map(|_| (r.uniform() - 0.5) * 12f32.sqrt())
                .collect();
            Tensor::from_slice(&v).view([k, 3, 16, 16])
        };
        let a = noise();
        let b = &a + noise() * 0.1;
        vec![a, b]
    }

    /// Eight SGD steps on fixed views with `after_step`: every loss finite, the encoder's
    /// weights move and its embeddings do not collapse.
    pub fn train_a_few_steps(vs: &nn::VarStore, m: &mut dyn Method) {
        let views = tiny_views(16, 7);
        let mut opt = Sgd::new(vs, 0.9, 0.0);
        let w = vs.variables()["backbone.conv1.weight"].copy();
        for s in 0..8 {
            let out = m.step(&views, None, &at(s, 8)).unwrap();
            let l = out.loss.double_value(&[]);
            assert!(l.is_finite(), "step {s}: loss {l}");
            opt.zero_grad();
            out.loss.backward();
            opt.step(0.05);
            m.after_step(&at(s, 8));
            assert!(
                crate::eval::embedding_std(&out.embeddings) > 1e-3,
                "step {s}: collapsed"
            );
        }
        assert!(
            !vs.variables()["backbone.conv1.weight"].equal(&w),
            "the encoder did not move"
        );
    }
}
