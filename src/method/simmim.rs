//! SimMIM (Xie et al. 2021, "SimMIM: A Simple Framework for Masked Image Modeling",
//! arXiv:2111.09886): hide random square units of each image's patches behind a learned mask
//! token *inside* the encoder (every token, hidden or not, goes through the ViT), and let a
//! linear head predict the hidden pixels; L1 on the hidden pixels only.
//! ```text
//! t = patch_embed(x) with hidden patches → mask_token, + pos        [K, L, D]
//! z = encoder([cls; t])                                              [K, 1 + L, D]
//! ŷ = decoder_pred(z[:, 1:])                                         [K, L, p²·3]  (the paper's
//!     1×1 convolution + pixel shuffle, as a linear map per patch token)
//! L = Σ_ij m_ij · mean_e |ŷ_ije − patchify(x)_ije| / Σ_ij m_ij       (m = 1 on hidden patches)
//! ```
//! The paper's defaults: mask ratio 0.6 of 32-px units on 192–224-px images, crops of
//! 67–100 % of the image with flips, raw (normalised) pixels as targets, AdamW. Small images
//! scale the unit: `mask_unit_fraction` of the image side (32/224), rounded to whole patches,
//! at least one (on 32-px CIFAR with 4-px patches: single patches). Masks are drawn from
//! `(seed, step, index)`, so a resumed run hides the same patches.

use super::self_prediction::{check_crop_min_scale, patch_pictures, pixel_views, PICTURE_STEP};
use super::{unit_interval, BuildContext, Method, MethodSection, MethodSpec, StepContext};
use super::{MethodPlan, ParamPlan, StepOutput};
use crate::augment::{ViewRecipe, Views};
use crate::backbone::vit::{patchify, xavier_linear};
use crate::backbone::{Backbone, Vit};
use crate::error::SettingError;
use crate::optim::OptimizerName;
use crate::rng::Rng;
use anyhow::Context;
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use tch::{nn, Kind, Tensor};

/// `[method.simmim]`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SimMimConfig {
    /// Fraction of each image's mask units hidden. Default 0.6 (the paper's, Table 1).
    pub mask_ratio: f64,
    /// Side of a mask unit as a fraction of the image side, rounded to whole patches (at
    /// least one). Default 32/224 (the paper's 32-px units on 224-px images).
    pub mask_unit_fraction: f64,
    /// Smallest crop area (the paper's RandomResizedCrop(0.67, 1)). Default 0.67.
    pub crop_min_scale: f32,
}

impl Default for SimMimConfig {
    fn default() -> Self {
        SimMimConfig {
            mask_ratio: 0.6,
            mask_unit_fraction: 32.0 / 224.0,
            crop_min_scale: 0.67,
        }
    }
}

impl MethodSection for SimMimConfig {
    const NAME: &'static str = "simmim";
    const SUMMARY: &'static str =
        "self-prediction: mask tokens inside the ViT, a linear head predicts the hidden pixels (needs --backbone vit_*)";
}

impl MethodSpec for SimMimConfig {
    fn plan(&self) -> MethodPlan {
        MethodPlan {
            // Data-parallel: the global mean of the hidden-pixel loss (equal hidden counts per image).
            data_parallel: true,
            similarity_matrix: false,
            // AdamW, the paper's optimiser (weight decay 0.05).
            default_optimizer: OptimizerName::Adamw,
            // MAE's rate here: the paper's 8e-4 at batch 2048 is for 800 epochs on GPUs; short
            // CPU runs at batch 256 train best in the low 1e-3s (the guide's MAE measurements).
            default_lr: Some(1.5e-3),
            micro_batch: super::MicroBatch::PER_IMAGE,
            ..MethodPlan::default()
        }
    }

    fn check(&self) -> Result<(), SettingError> {
        unit_interval("method.simmim.mask_ratio", self.mask_ratio)?;
        if self.mask_ratio <= 0.0 || self.mask_ratio >= 1.0 {
            return Err(SettingError::out_of_range(
                "method.simmim.mask_ratio",
                self.mask_ratio,
                "it must be strictly between 0 and 1 (the paper's is 0.6)",
            ));
        }
        if !(self.mask_unit_fraction > 0.0 && self.mask_unit_fraction <= 1.0) {
            return Err(SettingError::out_of_range(
                "method.simmim.mask_unit_fraction",
                self.mask_unit_fraction,
                "it must be in (0, 1] (the paper's is 32/224 ≈ 0.143)",
            ));
        }
        check_crop_min_scale("simmim", self.crop_min_scale)
    }

    fn render_views(&self, recipes: Vec<ViewRecipe>) -> Result<Vec<Arc<dyn Views>>, SettingError> {
        pixel_views(recipes, self.crop_min_scale)
    }

    fn build(&self, vs: &nn::VarStore, ctx: &BuildContext) -> anyhow::Result<Box<dyn Method>> {
        Ok(Box::new(SimMim::new(vs, ctx, self.clone())?))
    }
}

/// The stream of [`Rng::for_sample`] SimMIM's masks draw from.
const SIMMIM_STREAM: u64 = 0x5349_4d4d;

/// The side of a mask unit in patches: `round(fraction · grid)`, at least 1, lowered to the
/// nearest divisor of `grid` (the units tile the grid exactly).
pub fn mask_unit(grid: i64, fraction: f64) -> i64 {
    let u = ((fraction * grid as f64).round() as i64).clamp(1, grid);
    (1..=u).rev().find(|d| grid % d == 0).unwrap_or(1)
}

/// SimMIM's `MaskGenerator`: for each of `k` images, `ceil(U · ratio)` of the U = (grid/unit)²
/// units hidden, chosen by a permutation drawn from `(seed, step, index)`, each unit covering
/// unit × unit patches: [k, grid²] (f32, 1 = hidden, row-major patches).
pub fn unit_masks(k: i64, grid: i64, unit: i64, ratio: f64, seed: u64, step: u64) -> Tensor {
    let per_side = grid / unit;
    let units = (per_side * per_side) as usize;
    let hidden = ((units as f64 * ratio).ceil() as usize).clamp(1, units);
    let first = crate::dist::first_row(k);
    let mut m = vec![0f32; (k * grid * grid) as usize];
    for i in 0..k {
        let mut r = Rng::for_sample(seed, step, (first + i) as u64, SIMMIM_STREAM);
        for &u in &r.permutation(units)[..hidden] {
            let (ur, uc) = (u as i64 / per_side, u as i64 % per_side);
            for y in ur * unit..(ur + 1) * unit {
                for x in uc * unit..(uc + 1) * unit {
                    m[(i * grid * grid + y * grid + x) as usize] = 1.0;
                }
            }
        }
    }
    Tensor::from_slice(&m).view([k, grid * grid])
}

/// SimMIM's loss, L1 on the hidden patches' pixels:
/// `L = Σ_ij m_ij · mean_e |ŷ_ije − t_ije| / Σ_ij m_ij` (the paper's per-pixel sum over hidden
/// pixels and channels divided by their count: the same value, for whole hidden patches).
/// # Shapes
/// `pred`, `target`: [K, L, E]; `mask`: [K, L] (1 = hidden) → scalar
pub fn masked_l1(pred: &Tensor, target: &Tensor, mask: &Tensor) -> Tensor {
    let per_patch = (pred - target).abs().mean_dim(-1, false, None); // [K, L]
    (per_patch * mask).sum(Kind::Float) / mask.sum(Kind::Float).clamp_min(1.0)
}

/// The SimMIM: a ViT encoder, its mask token and the linear prediction head.
pub struct SimMim {
    pub backbone: Backbone,
    /// [1, 1, D], `mask_token` (outside `backbone.*`: exports carry the plain encoder).
    mask_token: Tensor,
    /// `decoder.decoder_pred`: D → p²·3.
    decoder_pred: nn::Linear,
    cfg: SimMimConfig,
    unit: i64,
    seed: u64,
}

impl SimMim {
    /// `backbone.*` (a ViT), `mask_token` (N(0, 0.02²)), `decoder.decoder_pred`.
    pub fn new(vs: &nn::VarStore, ctx: &BuildContext, cfg: SimMimConfig) -> anyhow::Result<Self> {
        let p = vs.root();
        let backbone = ctx.backbone(&p)?;
        let vit = backbone.as_vit().context(
            "method simmim needs a ViT encoder: pass --backbone vit_tiny (or vit_small)",
        )?;
        let (d, patch, grid) = (vit.config.dim, vit.config.patch, vit.config.grid());
        let normal = nn::Init::Randn {
            mean: 0.0,
            stdev: 0.02,
        };
        Ok(SimMim {
            mask_token: p.var("mask_token", &[1, 1, d], normal),
            decoder_pred: xavier_linear(&p / "decoder" / "decoder_pred", d, patch * patch * 3),
            unit: mask_unit(grid, cfg.mask_unit_fraction),
            backbone,
            cfg,
            seed: ctx.seed,
        })
    }

    fn vit(&self) -> &Vit {
        self.backbone.as_vit().expect("checked at build")
    }

    /// `x` [K, 3, S, S] under the masks of `step`: `(z [K, 1 + L, D], ŷ [K, L, p²·3],
    /// mask [K, L])`.
    fn forward(&self, x: &Tensor, step: u64) -> (Tensor, Tensor, Tensor) {
        let vit = self.vit();
        let grid = vit.config.grid();
        let mask = unit_masks(
            x.size()[0],
            grid,
            self.unit,
            self.cfg.mask_ratio,
            self.seed,
            step,
        );
        let mask = crate::device::to_device(&mask, x.device());
        let t = vit.embed_patches_masked(x, &mask, &self.mask_token); // [K, L, D]
        let z = vit.encode_tokens(&vit.prepend_class_token(&t), vit.config.depth); // [K, 1 + L, D]
        let l = grid * grid;
        let pred = crate::precision::autocast(|| z.narrow(1, 1, l).apply(&self.decoder_pred))
            .to_kind(Kind::Float); // [K, L, p²·3]
        (z, pred, mask)
    }
}

impl Method for SimMim {
    /// `views[0]` [K, 3, S, S] → the hidden pixels' L1.
    fn step(
        &mut self,
        views: &[Tensor],
        _targets: Option<&Tensor>,
        ctx: &StepContext,
    ) -> anyhow::Result<StepOutput> {
        let x = &views[0];
        let (z, pred, mask) = self.forward(x, ctx.step);
        let target = patchify(x, self.vit().config.patch);
        let loss = crate::dist::global_mean(&masked_l1(&pred, &target, &mask));
        let z = z.detach();
        let l = z.size()[1] - 1;
        Ok(StepOutput {
            loss,
            // the class token, and the mean patch token
            embeddings: z.select(1, 0),
            embeddings_b: z.narrow(1, 1, l).mean_dim(1, false, None),
            metrics: Vec::new(),
        })
    }

    /// The mask token is not decayed (nor, as always, the encoder's tokens).
    fn param_plan(&self) -> ParamPlan {
        ParamPlan {
            no_decay: vec![self.mask_token.shallow_clone()],
            ..Default::default()
        }
    }

    fn encoder(&self) -> &Backbone {
        &self.backbone
    }

    /// The image with its hidden patches at the mean colour (0 in the normalised space), and
    /// the visible patches with the hidden ones predicted.
    fn reconstruct(&self, x: &Tensor) -> Option<(Tensor, Tensor)> {
        tch::no_grad(|| {
            let p = self.vit().config.patch;
            let (_, pred, mask) = self.forward(x, PICTURE_STEP);
            Some(patch_pictures(x, &pred, &mask, p))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backbone::vit::unpatchify;
    use crate::backbone::{BackboneConfig, VitConfig};
    use crate::method::testing::{at, tiny_context};
    use tch::Device;

    fn tiny_vit_context() -> BuildContext {
        let mut ctx = tiny_context();
        let mut v = VitConfig::tiny(4, 16);
        (v.dim, v.depth, v.heads) = (32, 2, 2);
        ctx.backbone = BackboneConfig::Vit(v);
        ctx
    }

    #[test]
    fn the_loss_is_the_mean_absolute_error_of_hidden_patches_only() {
        tch::manual_seed(0);
        let pred = Tensor::randn([2, 4, 3], (Kind::Float, Device::Cpu));
        let target = Tensor::randn([2, 4, 3], (Kind::Float, Device::Cpu));
        let mask = Tensor::from_slice(&[1f32, 0., 0., 1., 0., 1., 0., 0.]).view([2, 4]);
        let got = masked_l1(&pred, &target, &mask).double_value(&[]);
        let mut want = 0.0;
        for (i, j) in [(0, 0), (0, 3), (1, 1)] {
            for e in 0..3 {
                want += (pred.double_value(&[i, j, e]) - target.double_value(&[i, j, e])).abs();
            }
        }
        want /= 9.0; // 3 hidden patches × 3 values
        assert!((got - want).abs() < 1e-6, "{got} vs {want}");
        // a visible patch's target does not count
        let changed = target.copy();
        let _ = changed.get(0).get(1).fill_(50.0);
        assert_eq!(masked_l1(&pred, &changed, &mask).double_value(&[]), got);
    }

    #[test]
    fn masks_hide_whole_units_in_the_asked_number_and_repeat_by_seed_step_and_index() {
        // the paper's ViT-B setting: 224 px, patch 16 → 2×2-patch units; CIFAR: single patches
        assert_eq!(mask_unit(14, 32.0 / 224.0), 2);
        assert_eq!(mask_unit(8, 32.0 / 224.0), 1);
        assert_eq!(mask_unit(8, 0.35), 2, "3 does not divide 8: 2");
        let m = unit_masks(3, 8, 2, 0.6, 5, 7); // 16 units, ceil(9.6) = 10 hidden
        assert_eq!(m.size(), vec![3, 64]);
        let hidden: Vec<f64> = Vec::try_from(m.sum_dim_intlist(1, false, Kind::Double)).unwrap();
        assert_eq!(hidden, vec![40.0; 3]);
        // each 2×2 unit is all hidden or all visible
        let units =
            m.view([3, 4, 2, 4, 2])
                .sum_dim_intlist([2i64, 4].as_slice(), false, Kind::Float);
        let all_or_none = units.eq(0.0).logical_or(&units.eq(4.0));
        assert!(all_or_none.all().int64_value(&[]) == 1);
        assert!(m.equal(&unit_masks(3, 8, 2, 0.6, 5, 7)));
        assert!(!m.equal(&unit_masks(3, 8, 2, 0.6, 5, 8)));
        assert!(!m.get(0).equal(&m.get(1)));
        assert!(unit_masks(1, 8, 2, 0.6, 5, 7).get(0).equal(&m.get(0)));
    }

    #[test]
    fn hidden_pixels_do_not_reach_the_encoder_it_trains_and_a_resnet_is_refused() {
        let vs = nn::VarStore::new(Device::Cpu);
        let mut m = SimMimConfig::default()
            .build(&vs, &tiny_vit_context())
            .unwrap();
        assert!(vs.variables().contains_key("mask_token"));
        assert!(vs.variables().contains_key("decoder.decoder_pred.weight"));
        let other = nn::VarStore::new(Device::Cpu);
        let sm = SimMim::new(&other, &tiny_vit_context(), SimMimConfig::default()).unwrap();
        tch::manual_seed(1);
        let x = Tensor::randn([8, 3, 16, 16], (Kind::Float, Device::Cpu));
        // change every hidden pixel of image 0: the predictions do not move
        let (_, pred, mask) = sm.forward(&x, 3);
        let px = unpatchify(&mask.unsqueeze(-1).expand([8, 16, 48], false), 4); // [8, 3, 16, 16]
        let noisy = &x + px * Tensor::randn([8, 3, 16, 16], (Kind::Float, Device::Cpu)) * 5.0;
        let (_, pred2, _) = sm.forward(&noisy, 3);
        assert!(pred.allclose(&pred2, 1e-5, 1e-5, false));
        let views = vec![x.shallow_clone()];
        let mut opt = crate::optim::AdamW::new(&vs, (0.9, 0.95), 0.05);
        let loss = |m: &mut Box<dyn Method>| {
            m.step(&views, None, &at(0, 1))
                .unwrap()
                .loss
                .double_value(&[])
        };
        let first = loss(&mut m);
        for _ in 0..30 {
            let out = m.step(&views, None, &at(0, 1)).unwrap();
            opt.zero_grad();
            out.loss.backward();
            opt.step(2e-3);
        }
        let last = loss(&mut m);
        assert!(last < first * 0.9, "loss {first} → {last}");
        let (shown, filled) = m.reconstruct(&x.narrow(0, 0, 2)).unwrap();
        assert_eq!(filled.size(), vec![2, 3, 16, 16]);
        // ceil(16 · 0.6) = 10 of 16 patches hidden: 6/16 of the shown image is the input
        let same = shown
            .eq_tensor(&x.narrow(0, 0, 2))
            .to_kind(Kind::Float)
            .mean(Kind::Float);
        assert!((same.double_value(&[]) - 6.0 / 16.0).abs() < 0.01);
        let e = SimMimConfig::default()
            .build(&nn::VarStore::new(Device::Cpu), &tiny_context())
            .err()
            .unwrap();
        assert!(e.to_string().contains("--backbone vit_tiny"), "{e}");
        for bad in [0.0, 1.0] {
            let c = SimMimConfig {
                mask_ratio: bad,
                ..Default::default()
            };
            assert!(c
                .check()
                .unwrap_err()
                .to_string()
                .contains("method.simmim.mask_ratio"));
        }
    }
}
