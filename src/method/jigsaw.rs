//! Jigsaw puzzles (Noroozi & Favaro 2016, arXiv:1603.09246): the 9 tiles of a 3×3 grid, shuffled
//! by one permutation of a fixed set; predict which. "By solving Jigsaw puzzles the model
//! learns … to identify each tile as an object part and how parts are assembled" (§1). The
//! shared encoder embeds each tile, the 9 embeddings joined in slot order feed an N-way
//! classifier; cross-entropy. The set is chosen for Hamming distance by the greedy algorithm
//! ([`PermutationSet::greedy`]), computed here from its seed; see [`JigsawViews`].

use super::pretext::PretextNet;
use super::MethodPlan;
use super::{BuildContext, Method, MethodSection, MethodSpec};
use crate::augment::grid::{Grid, CELLS};
use crate::augment::jigsaw::{JigsawViews, PermutationSet, ORDERS};
use crate::augment::{ViewRecipe, Views};
use crate::error::SettingError;
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use tch::nn;

/// `[method.jigsaw]`. Sizes are in pixels of the augmented view the grid is laid on.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct JigsawConfig {
    /// Size N of the permutation set, the classes of the task. Default 100 (the paper's best
    /// transfer, Table 3, is at 1000; 100 learns faster in a short run); at most 9! = 362880.
    pub permutations: usize,
    /// Seed of the greedy choice of the set (its first permutation). Default 0.
    pub permutation_seed: u64,
    /// Side of the augmented view the 3×3 grid is laid on. Default 64: CIFAR's 32-px images
    /// upsampled 2×, cells of 21 px (at 32 px a tile would be 9 px).
    pub view_side: usize,
    /// Side of each tile, drawn at random inside its cell. Default 18 of a 21-px cell (the
    /// paper: 64 of 75, so tiles are on average 11 px apart and their edges do not match).
    pub tile_size: usize,
    /// Probability that the view is turned to grayscale (the paper's follow-ups and
    /// mmselfsup: ≈ 0.66, against chromatic-aberration and colour-matching shortcuts).
    pub grayscale_p: f32,
    /// Smallest area of the random crop, as a fraction of the image. Default 0.5: the grid
    /// needs the image's layout.
    pub crop_min_scale: f32,
}

impl Default for JigsawConfig {
    fn default() -> Self {
        JigsawConfig {
            permutations: 100,
            permutation_seed: 0,
            view_side: 64,
            tile_size: 18,
            grayscale_p: 0.66,
            crop_min_scale: 0.5,
        }
    }
}

impl JigsawConfig {
    fn grid(&self) -> Grid {
        Grid {
            view_side: self.view_side,
            box_side: self.tile_size,
            gap: 0,
        }
    }
}

impl MethodSection for JigsawConfig {
    const NAME: &'static str = "jigsaw";
    const SUMMARY: &'static str =
        "pretext: which of N permutations shuffled the 9 tiles (Noroozi & Favaro 2016)";
}

impl MethodSpec for JigsawConfig {
    /// A pretext task's ([`super::pretext::PLAN`]).
    fn plan(&self) -> MethodPlan {
        super::pretext::PLAN
    }

    fn check(&self) -> Result<(), SettingError> {
        let k = |f: &str| format!("method.jigsaw.{f}");
        if !(2..=ORDERS).contains(&self.permutations) {
            return Err(format!(
                "{} is {}: it must be from 2 to 9! = {ORDERS} (the orders of 9 tiles)",
                k("permutations"),
                self.permutations
            )
            .into());
        }
        self.grid()
            .check([&k("view_side"), &k("tile_size"), "0 (the gap)"].map(|s| s as &str))?;
        super::pretext::check_grid_recipe("jigsaw", self.grayscale_p, self.crop_min_scale)
    }

    /// The first recipe at `view_side` with the crop scale and grayscale of this section and
    /// no colour jitter, cut into 9 tiles shuffled by one permutation of the set.
    fn render_views(&self, recipes: Vec<ViewRecipe>) -> Result<Vec<Arc<dyn Views>>, SettingError> {
        let recipe = super::pretext::grid_recipe(
            recipes,
            self.view_side,
            self.crop_min_scale,
            self.grayscale_p,
        )?;
        let set = PermutationSet::shared(self.permutations, self.permutation_seed)?;
        Ok(vec![Arc::new(JigsawViews {
            recipe,
            grid: self.grid(),
            set,
            normalize_tiles: true,
        })])
    }

    /// Encoder, then `head.*`: per-tile `Linear(D, D) → BN → ReLU` (fc6), the 9 joined into
    /// `Linear(9D, 4D) → BN → ReLU → Linear(4D, N)` (fc7, fc8).
    fn build(&self, vs: &nn::VarStore, ctx: &BuildContext) -> anyhow::Result<Box<dyn Method>> {
        Ok(Box::new(PretextNet::build(
            vs,
            ctx,
            CELLS as i64,
            self.permutations as i64,
        )?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::method::testing::{at, pretext_batch, tiny_context};
    use tch::Device;

    fn tiny() -> JigsawConfig {
        JigsawConfig {
            permutations: 10,
            view_side: 24,
            tile_size: 6,
            ..Default::default()
        }
    }

    #[test]
    fn a_few_steps_lower_the_loss() {
        let spec = tiny();
        spec.check().unwrap();
        let (views, labels) = pretext_batch(&spec, 8, 0);
        assert_eq!(views[0].size(), vec![72, 3, 6, 6], "9 tiles of 8 images");
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
        assert!(last < first - 0.3, "loss {first} → {last}");
    }

    #[test]
    fn bad_settings_are_named_before_training() {
        let many = JigsawConfig {
            permutations: ORDERS + 1,
            ..Default::default()
        };
        let e = many.check().unwrap_err().to_string();
        assert!(
            e.contains("method.jigsaw.permutations") && e.contains("362880"),
            "{e}"
        );
        let one = JigsawConfig {
            permutations: 1,
            ..Default::default()
        };
        assert!(one
            .check()
            .unwrap_err()
            .to_string()
            .contains("permutations is 1"));
        let big = JigsawConfig {
            tile_size: 22,
            ..Default::default()
        };
        let e = big.check().unwrap_err().to_string();
        assert!(
            e.contains("method.jigsaw.tile_size") && e.contains("21 px"),
            "{e}"
        );
        assert!(JigsawConfig::default().check().is_ok());
    }
}
