//! Temporal order verification (Misra, Zitnick & Hebert 2016, "Shuffle and Learn",
//! arXiv:1603.08561): three frames of a sequence through one encoder (a siamese triplet), their
//! features joined, a binary classifier: is the middle frame between the other two in time?
//! Learning it needs what moves and how, so the encoder learns the objects of the frames. The
//! sequences are filmstrips (frames side by side in one image, [`TemporalOrderViews`]);
//! `selfsup make-data moving-shapes` writes a built-in set of them. The encoder is judged like
//! any image encoder: the eval view of a filmstrip is its centred square, the middle frame.

use super::pretext::PretextNet;
use super::MethodPlan;
use super::{BuildContext, Method, MethodSection, MethodSpec};
use crate::augment::temporal_order::TemporalOrderViews;
use crate::augment::{ViewRecipe, Views};
use crate::error::SettingError;
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use tch::nn;

/// `[method.temporal_order]`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TemporalOrderConfig {
    /// Frames per filmstrip image (the image is `frames` squares side by side). Default 5, as
    /// `selfsup make-data moving-shapes` writes them.
    pub frames: usize,
    /// Smallest area of the random crop (one box for the three frames), as a fraction of a
    /// frame. Default 0.5.
    pub crop_min_scale: f32,
    /// Probability that the three frames are turned to grayscale together. Default 0.2.
    pub grayscale_p: f32,
}

impl Default for TemporalOrderConfig {
    fn default() -> Self {
        TemporalOrderConfig {
            frames: 5,
            crop_min_scale: 0.5,
            grayscale_p: 0.2,
        }
    }
}

impl MethodSection for TemporalOrderConfig {
    const NAME: &'static str = "temporal_order";
    const SUMMARY: &'static str =
        "pretext: is the middle of three frames between the other two in time (Shuffle and Learn)";
}

impl MethodSpec for TemporalOrderConfig {
    /// A pretext task's ([`super::pretext::PLAN`]).
    fn plan(&self) -> MethodPlan {
        super::pretext::PLAN
    }

    fn check(&self) -> Result<(), SettingError> {
        if self.frames < 3 {
            return Err(format!(
                "method.temporal_order.frames is {}: three frames are compared, so at least 3",
                self.frames
            )
            .into());
        }
        super::pretext::check_grid_recipe("temporal_order", self.grayscale_p, self.crop_min_scale)
    }

    /// A filmstrip of `frames` square frames is `frames` times as wide as it is high; images of
    /// another shape (still photos) are strips of one picture, which teach no time order.
    fn data_warning(&self, images: &crate::data::ImageStore) -> Option<String> {
        let n = images.len().min(64);
        let strips = (0..n)
            .filter(|&i| {
                let im = images.image(i);
                im.width.abs_diff(self.frames * im.height) <= self.frames
            })
            .count();
        (strips * 2 < n).then(|| {
            let im = images.image(0);
            format!(
                "method temporal_order reads each image as {} frames side by side, but these are not \
                 filmstrips (the first is {}x{}; one of {} frames of {} px would be {}x{}): \
                 it will learn little. Make filmstrips of your frame folders with `selfsup \
                 make-data filmstrips`, or set method.temporal_order.frames to your strips' count",
                self.frames,
                im.width,
                im.height,
                self.frames,
                im.height,
                self.frames * im.height,
                im.height
            )
        })
    }

    /// The first recipe (crop, flip, colour jitter) with this section's crop scale and
    /// grayscale, drawn once per example and applied to its three frames.
    fn render_views(&self, recipes: Vec<ViewRecipe>) -> Result<Vec<Arc<dyn Views>>, SettingError> {
        let mut recipe = recipes.into_iter().next().ok_or("no view recipe")?;
        recipe.crop_scale.0 = self.crop_min_scale;
        recipe.grayscale_p = self.grayscale_p;
        Ok(vec![Arc::new(TemporalOrderViews {
            recipe,
            frames: self.frames,
        })])
    }

    /// Encoder, then `head.*`: per-frame embedding, the three joined, a 2-way classifier.
    fn build(&self, vs: &nn::VarStore, ctx: &BuildContext) -> anyhow::Result<Box<dyn Method>> {
        Ok(Box::new(PretextNet::build(vs, ctx, 3, 2)?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::method::testing::{at, pretext_batch, tiny_context};
    use tch::Device;

    #[test]
    fn a_few_steps_lower_the_loss_and_bad_settings_are_named() {
        let spec = TemporalOrderConfig {
            frames: 4,
            ..Default::default()
        };
        spec.check().unwrap();
        let (views, labels) = pretext_batch(&spec, 8, 0);
        assert_eq!(
            views[0].size(),
            vec![24, 3, 16, 16],
            "3 frames of 8 examples"
        );
        assert_eq!(labels.size(), vec![8, 1]);
        let vs = nn::VarStore::new(Device::Cpu);
        let mut m = spec.build(&vs, &tiny_context()).unwrap();
        let mut opt = crate::optim::Sgd::new(&vs, 0.9, 0.0);
        let loss = |m: &mut Box<dyn Method>| m.step(&views, Some(&labels), &at(0, 1)).unwrap().loss;
        let first = loss(&mut m).double_value(&[]);
        for _ in 0..20 {
            opt.zero_grad();
            loss(&mut m).backward();
            opt.step(0.05);
        }
        let last = loss(&mut m).double_value(&[]);
        assert!(last < first - 0.2, "loss {first} → {last}");
        let two = TemporalOrderConfig {
            frames: 2,
            ..Default::default()
        };
        assert!(two
            .check()
            .unwrap_err()
            .to_string()
            .contains("method.temporal_order.frames is 2"));
        let crop = TemporalOrderConfig {
            crop_min_scale: 0.0,
            ..Default::default()
        };
        assert!(crop
            .check()
            .unwrap_err()
            .to_string()
            .contains("method.temporal_order.crop_min_scale"));
    }
}
