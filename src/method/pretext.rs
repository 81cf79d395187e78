//! What the pretext methods (rotation, relative_patch, jigsaw) share: the encoder on every
//! crop, a [`PretextHead`] on the features of each example's crops, and cross-entropy against
//! the labels the views drew. Each method's file says what a crop and an example are.

use super::{unit_interval, BuildContext, Method, StepContext, StepOutput};
use super::{MethodPlan, Targets, ViewPlan};
use crate::augment::ViewRecipe;
use crate::backbone::Backbone;
use crate::error::SettingError;
use crate::head::PretextHead;
use crate::loss::cross_entropy;
use crate::optim::OptimizerName;
use anyhow::Context;
use tch::nn::{self, ModuleT};
use tch::Tensor;

/// The recipe a grid task (relative_patch, jigsaw) cuts up: the first of `recipes` resized to
/// `view_side`, crops of at least `crop_min_scale` of the image, no colour jitter, grayscale
/// with probability `grayscale_p`.
pub fn grid_recipe(
    recipes: Vec<ViewRecipe>,
    view_side: usize,
    crop_min_scale: f32,
    grayscale_p: f32,
) -> Result<ViewRecipe, SettingError> {
    let mut recipe = recipes.into_iter().next().ok_or("no view recipe")?;
    recipe.out_size = view_side;
    recipe.crop_scale.0 = crop_min_scale;
    recipe.jitter_p = 0.0;
    recipe.grayscale_p = grayscale_p;
    Ok(recipe)
}

/// What the four pretext tasks declare: view labels as targets, no similarity matrix, SGD at
/// RotNet's 0.1 (§3, "learning rate 0.1 … batch size 128"), data-parallel (the global mean of
/// the classification loss).
pub const PLAN: MethodPlan = MethodPlan {
    targets: Targets::ViewLabels,
    views: ViewPlan {
        asymmetric: false,
        multi_crop: false,
    },
    similarity_matrix: false,
    state: None,
    default_lr: Some(0.1),
    default_optimizer: OptimizerName::Sgd,
    data_parallel: true,
    micro_batch: super::MicroBatch::PER_IMAGE,
};

/// Checks the `grayscale_p` and `crop_min_scale` of section `[method.<section>]`.
pub fn check_grid_recipe(
    section: &str,
    grayscale_p: f32,
    crop_min_scale: f32,
) -> Result<(), SettingError> {
    unit_interval(&format!("method.{section}.grayscale_p"), grayscale_p as f64)?;
    match crop_min_scale > 0.0 && crop_min_scale <= 1.0 {
        true => Ok(()),
        false => Err(SettingError::out_of_range(
            format!("method.{section}.crop_min_scale"),
            crop_min_scale,
            "it must be in (0, 1]",
        )),
    }
}

/// An encoder and a classifier over `crops_per_example` crops at a time.
pub struct PretextNet {
    pub backbone: Backbone,
    pub head: PretextHead,
    pub crops_per_example: i64,
}

impl PretextNet {
    /// `backbone.*` and `head.*` under `vs`'s root: per-crop embedding of the encoder's
    /// dimension D, hidden width `model.projection_hidden` (default 4·D, the 1:4 of the
    /// papers' fc6 → fc7), `classes` outputs.
    pub fn build(
        vs: &nn::VarStore,
        ctx: &BuildContext,
        crops_per_example: i64,
        classes: i64,
    ) -> anyhow::Result<Self> {
        let p = vs.root();
        let backbone = ctx.backbone(&p)?;
        let d = backbone.out_dim();
        let head = PretextHead::new(
            &(&p / "head"),
            d,
            crops_per_example,
            d,
            ctx.hidden_or(4 * d),
            classes,
        )
        .map_err(anyhow::Error::msg)?;
        Ok(PretextNet {
            backbone,
            head,
            crops_per_example,
        })
    }
}

impl Method for PretextNet {
    /// `views[0]` [K·C, 3, S, S]: the C crops of each of K images, image-major; `targets`
    /// [K, L], the labels they drew (K·L = K·C / crops_per_example examples):
    /// ```text
    /// h = f(x) [K·C, D],  logits = head(h) [K·C / e, classes],  L = CE(logits, labels)
    /// ```
    fn step(
        &mut self,
        views: &[Tensor],
        targets: Option<&Tensor>,
        _ctx: &StepContext,
    ) -> anyhow::Result<StepOutput> {
        let labels = targets.context("a pretext method needs the labels its views drew")?;
        let k = labels.size()[0];
        let x = &views[0]; // [K·C, 3, S, S]
        let h = self.backbone.forward_t(x, true); // [K·C, D]
        let logits = self.head.forward_t(&h, true); // [E, classes]
        let (loss, accuracy) = cross_entropy(&logits, &labels.reshape([-1]))?;
        let loss = crate::dist::global_mean(&loss); // data-parallel: the global batch's mean
                                                    // diagnostics: the features of each image's first two crops
        let per_image = h.size()[0] / k;
        let h = h.detach().view([k, per_image, -1]); // [K, C, D]
        Ok(StepOutput {
            loss,
            embeddings: h.select(1, 0),
            embeddings_b: h.select(1, per_image.min(2) - 1),
            metrics: vec![("pretext_accuracy", accuracy)],
        })
    }

    fn encoder(&self) -> &Backbone {
        &self.backbone
    }
}
