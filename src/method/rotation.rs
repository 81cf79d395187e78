//! RotNet (Gidaris et al. 2018, arXiv:1803.07728): predict by which multiple of 90° an image
//! was rotated. "The ConvNet model must learn to localize salient objects in the image,
//! recognize their orientation and object type" (§2.1). Every image's view is fed in all four
//! rotations in one batch (4K inputs, the paper's recipe), or, as VISSL offers, once at a
//! random angle; a 4-way classifier on the encoder, cross-entropy. The rotation is applied to
//! the finished view (crop, flip and, when asked, colour), see [`RotationViews`].

use super::pretext::PretextNet;
use super::MethodPlan;
use super::{BuildContext, Method, MethodSection, MethodSpec};
use crate::augment::rotation::RotationViews;
use crate::augment::{ViewRecipe, Views};
use crate::error::SettingError;
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use tch::nn;

/// `[method.rotation]`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RotationConfig {
    /// All four rotations of every image in the batch (the paper's recipe, §3: predicting all
    /// four at once "significantly improves"); false: one random rotation per image (VISSL's
    /// option, a quarter of the compute per image). Default true.
    pub all_four: bool,
    /// Keep SimCLR's colour jitter and random grayscale on the view before rotating it.
    /// Default false: the paper trains on crops and flips only (see the guide's table for
    /// the 6-minute comparison with it on).
    pub color_jitter: bool,
}

impl Default for RotationConfig {
    fn default() -> Self {
        RotationConfig {
            all_four: true,
            color_jitter: false,
        }
    }
}

impl MethodSection for RotationConfig {
    const NAME: &'static str = "rotation";
    const SUMMARY: &'static str =
        "pretext: predict the rotation (0/90/180/270°) of the view (RotNet)";
}

impl MethodSpec for RotationConfig {
    /// A pretext task's ([`super::pretext::PLAN`]).
    fn plan(&self) -> MethodPlan {
        super::pretext::PLAN
    }

    /// The first recipe (crop + flip, colour only with `color_jitter`), rotated.
    fn render_views(&self, recipes: Vec<ViewRecipe>) -> Result<Vec<Arc<dyn Views>>, SettingError> {
        let mut recipe = recipes.into_iter().next().ok_or("no view recipe")?;
        if !self.color_jitter {
            recipe.jitter_p = 0.0;
            recipe.grayscale_p = 0.0;
        }
        let views = RotationViews {
            recipe,
            all_four: self.all_four,
        };
        Ok(vec![Arc::new(views)])
    }

    /// Encoder, then `head.*`: per-crop `Linear(D, D) → BN → ReLU`, then
    /// `Linear(D, 4D) → BN → ReLU → Linear(4D, 4)`; every rotated input is its own example.
    fn build(&self, vs: &nn::VarStore, ctx: &BuildContext) -> anyhow::Result<Box<dyn Method>> {
        Ok(Box::new(PretextNet::build(vs, ctx, 1, 4)?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::method::testing::{at, pretext_batch, tiny_context};
    use crate::method::StepContext;
    use tch::Device;

    #[test]
    fn a_few_steps_lower_the_loss_and_accuracy_is_logged() {
        let vs = nn::VarStore::new(Device::Cpu);
        let spec = RotationConfig::default();
        let mut m = spec.build(&vs, &tiny_context()).unwrap();
        let (views, labels) = pretext_batch(&spec, 8, 0);
        assert_eq!(views[0].size(), vec![32, 3, 16, 16]);
        assert_eq!(labels.size(), vec![8, 4]);
        let mut opt = crate::optim::Sgd::new(&vs, 0.9, 0.0);
        let step = |m: &mut Box<dyn Method>, ctx: StepContext| {
            let out = m.step(&views, Some(&labels), &ctx).unwrap();
            assert_eq!(out.metrics[0].0, "pretext_accuracy");
            assert_eq!(out.embeddings.size(), vec![8, 64]);
            out.loss
        };
        let first = step(&mut m, at(0, 1)).double_value(&[]);
        assert!(
            (first - 4f64.ln()).abs() < 0.5,
            "about ln 4 at the start: {first}"
        );
        for s in 0..20 {
            opt.zero_grad();
            step(&mut m, at(s, 20)).backward();
            opt.step(0.05);
        }
        let last = step(&mut m, at(0, 1)).double_value(&[]);
        assert!(last < first - 0.3, "loss {first} → {last}");
    }

    #[test]
    fn one_random_rotation_per_image_is_one_crop_and_one_label() {
        let spec = RotationConfig {
            all_four: false,
            ..Default::default()
        };
        let (views, labels) = pretext_batch(&spec, 6, 1);
        assert_eq!(views[0].size(), vec![6, 3, 16, 16]);
        assert_eq!(labels.size(), vec![6, 1]);
        let vs = nn::VarStore::new(Device::Cpu);
        let mut m = spec.build(&vs, &tiny_context()).unwrap();
        let out = m.step(&views, Some(&labels), &at(0, 1)).unwrap();
        assert!(out.loss.double_value(&[]).is_finite());
    }
}
