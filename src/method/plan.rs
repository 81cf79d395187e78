//! What a method declares about itself as data, before it is built ([`MethodPlan`], from
//! [`super::MethodSpec::plan`]) and once its variables exist ([`ParamPlan`], from
//! [`super::Method::param_plan`]). The loader, the memory check, the config's defaults, the
//! data-parallel check and the optimiser read these values; none of them asks a method by name.

use crate::optim::OptimizerName;
pub use crate::optim::ParamPlan;

/// What the trainer needs to know of a method before building it.
#[derive(Clone, Debug, PartialEq)]
pub struct MethodPlan {
    /// What the loader gives `step` as `targets`.
    pub targets: Targets,
    /// The views the method trains on.
    pub views: ViewPlan,
    /// The step holds a 2K×2K similarity matrix (memory estimate); false for blockwise losses.
    pub similarity_matrix: bool,
    /// State kept across steps that can be large, for the memory check.
    pub state: Option<LargeState>,
    /// The peak learning rate of the method's recipe when `optim.lr` is not given.
    pub default_lr: Option<f64>,
    /// The optimiser used when `optim.name` is unset.
    pub default_optimizer: OptimizerName,
    /// The method runs data-parallel ([`crate::dist`]): its loss is the global batch's (it
    /// gathers what couples the images of a batch with [`crate::dist::gather_rows`], or takes
    /// the [`crate::dist::global_mean`] of a per-image mean), and its state across steps stays
    /// the same on every rank. False: a job with several ranks refuses it.
    pub data_parallel: bool,
    /// Whether `train.micro_batch` (exact large batches by gradient caching,
    /// train/grad_cache.rs) can serve the method.
    pub micro_batch: MicroBatch,
}

/// Whether a method's step splits into per-image embeddings and a loss of the whole batch's
/// embeddings ([`super::Method::embed_views`], [`super::Method::embedding_loss`]), which is what
/// exact micro-batching needs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MicroBatch {
    /// It splits: `train.micro_batch` gives the full batch's loss and gradients.
    Split,
    /// It does not; the reason, as the refusal says it.
    Refused(&'static str),
}

impl MicroBatch {
    /// The refusal of a method whose loss is a mean of per-image terms: its gradient is
    /// already a sum over images, so a larger batch adds no negatives.
    pub const PER_IMAGE: MicroBatch = MicroBatch::Refused(
        "its loss is a mean of per-image terms, so a larger batch gives the images nothing \
         more to be compared with: train at a batch size that fits",
    );
}

impl Default for MethodPlan {
    /// Two plain views, no targets, a similarity matrix, SGD at `optim.lr`, one process.
    fn default() -> Self {
        MethodPlan {
            targets: Targets::Nothing,
            views: ViewPlan::default(),
            similarity_matrix: true,
            state: None,
            default_lr: None,
            default_optimizer: OptimizerName::Sgd,
            data_parallel: false,
            micro_batch: MicroBatch::Refused(
                "its step does not split into per-image embeddings and a loss of the whole \
                 batch yet",
            ),
        }
    }
}

/// Large state a method keeps across steps.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LargeState {
    /// A queue of `keys` projections (MoCo, NNCLR), sized by the setting `setting`.
    Queue { keys: usize, setting: &'static str },
}

impl LargeState {
    /// Its bytes at projection dimension `dim`, what it is, and the setting that sizes it.
    /// A queue is kept twice (the queue and the step's snapshot): `2 · 4 · keys · dim` bytes.
    pub fn bytes(&self, dim: i64) -> (f64, String, &'static str) {
        match *self {
            LargeState::Queue { keys, setting } => (
                2.0 * 4.0 * keys as f64 * dim as f64,
                format!("a queue of {keys} keys × {dim} dimensions"),
                setting,
            ),
        }
    }
}

/// The per-image targets a method's `step` is given with each batch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Targets {
    /// None: the views are all it needs.
    Nothing,
    /// The images' classes (SupCon).
    ClassLabels,
    /// The images' indices in the training split (a per-image memory bank).
    ImageIndices,
    /// The labels the views drew [K, L] (a pretext task's answers: which rotation, which
    /// neighbour, which permutation), image-major as [`Views`] render them.
    ViewLabels,
}

/// The views a method trains on, besides the configured recipe.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ViewPlan {
    /// The second large view is blurred a tenth as often and solarized with probability 0.2
    /// (BYOL Table 6; DINO's appendix).
    pub asymmetric: bool,
    /// Takes small multi-crop views after the two large ones (`data.small_crops`).
    pub multi_crop: bool,
}

/// The trainable variables a method created under `path` of its store (`"predictor"`): how a
/// method collects a parameter group in its own `build`.
pub fn variables_under(vs: &tch::nn::VarStore, path: &str) -> Vec<tch::Tensor> {
    let prefix = format!("{path}.");
    crate::optim::trainable_by_name(vs)
        .into_iter()
        .filter(|(n, _)| n.starts_with(&prefix))
        .map(|(_, t)| t)
        .collect()
}

/// The parameter groups the trainer uses for `m`: the method's own ([`super::Method::param_plan`])
/// and its encoder's tokens, never decayed (a ViT's class token and position embeddings).
pub fn parameter_groups(m: &dyn super::Method) -> ParamPlan {
    let mut plan = m.param_plan();
    plan.no_decay.extend(m.encoder().no_decay());
    plan
}
