//! Relative patch position (Doersch et al. 2015, arXiv:1505.05192): given the centre patch of
//! a 3×3 grid and one of its 8 neighbours, predict which neighbour it is. "Doing well on this
//! task requires the model to learn to recognize objects and their parts" (§1). The two
//! patches go through the same encoder (siamese), their features are joined and a classifier
//! predicts one of 8 positions; cross-entropy. The grid has gaps between its cells and each
//! patch is jittered inside its cell (§3, "to prevent … trivial shortcuts such as boundary
//! patterns or textures continuing between patches"); see [`PatchPairViews`].

use super::pretext::PretextNet;
use super::MethodPlan;
use super::{BuildContext, Method, MethodSection, MethodSpec};
use crate::augment::grid::{Grid, NEIGHBOURS};
use crate::augment::relative_patch::PatchPairViews;
use crate::augment::{ViewRecipe, Views};
use crate::error::SettingError;
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use tch::nn;

/// `[method.relative_patch]`. Sizes are in pixels of the augmented view the grid is laid on.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RelativePatchConfig {
    /// Side of the augmented view (the random crop is resized to it) that the 3×3 grid is laid
    /// on. Default 96: CIFAR's 32-px images upsampled 3×, so that a cell is 32 px and a patch
    /// keeps a 20-px encoder input (at 32 px a cell would be 10 px, a patch 6). For larger
    /// images set it to about the crop size or more.
    pub view_side: usize,
    /// Side of each patch. Default 20 of a 32-px cell (the paper: 96 of about 144).
    pub patch_size: usize,
    /// Smallest gap between two patches. Default 8, which leaves each patch a random offset of
    /// 0–4 px in its cell (the paper: a 48-px gap, jitter up to 7 px, for 96-px patches).
    pub gap: usize,
    /// Probability that the view is turned to grayscale, against chromatic-aberration
    /// shortcuts (§4.2). Default 0.66, mmselfsup's relative-location recipe: the paper's
    /// "colour projection" removes the green–magenta axis along which lenses shift colours;
    /// turning two thirds of the views gray removes every colour cue from those and costs one
    /// op that the recipe already has.
    pub grayscale_p: f32,
    /// Smallest area of the random crop, as a fraction of the image. Default 0.5: the grid
    /// needs the image's layout (SimCLR's 0.08 would cut a 32-px image to 9 px before 96).
    pub crop_min_scale: f32,
}

impl Default for RelativePatchConfig {
    fn default() -> Self {
        RelativePatchConfig {
            view_side: 96,
            patch_size: 20,
            gap: 8,
            grayscale_p: 0.66,
            crop_min_scale: 0.5,
        }
    }
}

impl RelativePatchConfig {
    fn grid(&self) -> Grid {
        Grid {
            view_side: self.view_side,
            box_side: self.patch_size,
            gap: self.gap,
        }
    }
}

impl MethodSection for RelativePatchConfig {
    const NAME: &'static str = "relative_patch";
    const SUMMARY: &'static str =
        "pretext: which of 8 neighbours of the centre patch is the other (Doersch 2015)";
}

impl MethodSpec for RelativePatchConfig {
    /// A pretext task's ([`super::pretext::PLAN`]).
    fn plan(&self) -> MethodPlan {
        super::pretext::PLAN
    }

    fn check(&self) -> Result<(), SettingError> {
        let k = |f: &str| format!("method.relative_patch.{f}");
        self.grid()
            .check([&k("view_side"), &k("patch_size"), &k("gap")].map(String::as_str))?;
        super::pretext::check_grid_recipe("relative_patch", self.grayscale_p, self.crop_min_scale)
    }

    /// The first recipe at `view_side` with the crop scale and grayscale of this section and
    /// no colour jitter, cut into the centre patch and a neighbour.
    fn render_views(&self, recipes: Vec<ViewRecipe>) -> Result<Vec<Arc<dyn Views>>, SettingError> {
        let recipe = super::pretext::grid_recipe(
            recipes,
            self.view_side,
            self.crop_min_scale,
            self.grayscale_p,
        )?;
        Ok(vec![Arc::new(PatchPairViews {
            recipe,
            grid: self.grid(),
        })])
    }

    /// Encoder, then `head.*`: per-patch `Linear(D, D) → BN → ReLU` (fc6), both joined into
    /// `Linear(2D, 4D) → BN → ReLU → Linear(4D, 8)` (fc7, fc8).
    fn build(&self, vs: &nn::VarStore, ctx: &BuildContext) -> anyhow::Result<Box<dyn Method>> {
        Ok(Box::new(PretextNet::build(
            vs,
            ctx,
            2,
            NEIGHBOURS.len() as i64,
        )?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::method::testing::{at, pretext_batch, tiny_context};
    use tch::Device;

    fn tiny() -> RelativePatchConfig {
        RelativePatchConfig {
            view_side: 30,
            patch_size: 6,
            gap: 2,
            ..Default::default()
        }
    }

    #[test]
    fn a_few_steps_lower_the_loss() {
        let spec = tiny();
        spec.check().unwrap();
        let (views, labels) = pretext_batch(&spec, 12, 0);
        assert_eq!(
            views[0].size(),
            vec![24, 3, 6, 6],
            "centre and neighbour of 12 images"
        );
        assert_eq!(labels.size(), vec![12, 1]);
        assert!(labels.min().int64_value(&[]) >= 0 && labels.max().int64_value(&[]) < 8);
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
        assert!(last < first - 0.3, "loss {first} → {last}");
    }

    #[test]
    fn bad_sizes_are_named_before_training() {
        let big = RelativePatchConfig {
            patch_size: 30,
            ..Default::default()
        };
        let e = big.check().unwrap_err().to_string();
        assert!(
            e.contains("method.relative_patch.patch_size") && e.contains("32 px"),
            "{e}"
        );
        let small_view = RelativePatchConfig {
            view_side: 40,
            ..Default::default()
        };
        assert!(small_view
            .check()
            .unwrap_err()
            .to_string()
            .contains("method.relative_patch.view_side"));
        let gray = RelativePatchConfig {
            grayscale_p: 1.5,
            ..Default::default()
        };
        assert!(gray
            .check()
            .unwrap_err()
            .to_string()
            .contains("grayscale_p"));
        assert!(RelativePatchConfig::default().check().is_ok());
    }
}
