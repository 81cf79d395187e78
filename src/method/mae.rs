//! Masked autoencoder (He et al. 2021, arXiv:2111.06377) on a ViT: hide a random 75 % of each
//! image's patches, encode only the visible ones, and let a light transformer decoder, given
//! mask tokens at the hidden places, predict the hidden patches' pixels.
//! ```text
//! tokens = patch_embed(x) + pos          [K, L, D]      (L = (S/p)²)
//! visible = tokens[ids_keep]             [K, L_v, D]    (L_v = round(L·(1 − ratio)))
//! z = encoder([cls; visible])            [K, 1 + L_v, D]
//! y = decoder_embed(z), mask tokens in the hidden places, unshuffled, + decoder pos
//! ŷ = decoder_pred(decoder_norm(blocks(y)))[:, 1:]    [K, L, p²·3]
//! t = patchify(x), normalised per patch (norm_pix_loss)
//! L = Σ_i,j m_ij · mean_c (ŷ_ijc − t_ijc)² / Σ m_ij    (m = 1 on hidden patches only)
//! ```
//! Masks come from `(seed, step, index)` ([`random_masking`]). Decoder variables `decoder.*`
//! follow the paper's code (`decoder_embed`, `mask_token`, `decoder_pos_embed`,
//! `decoder_blocks.i`, `decoder_norm`, `decoder_pred`).

use super::self_prediction::{check_crop_min_scale, pixel_views, random_masking, PICTURE_STEP};
use super::StepOutput;
use super::{unit_interval, BuildContext, Method, MethodSection, MethodSpec, StepContext};
use super::{MethodPlan, ParamPlan};
use crate::augment::{ViewRecipe, Views};
use crate::backbone::vit::{layer_norm, patchify, sincos_2d, xavier_linear, Block};
use crate::backbone::{Backbone, Vit};
use crate::error::SettingError;
use crate::optim::OptimizerName;
use anyhow::Context;
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use tch::{nn, Kind, Tensor};

/// `[method.mae]`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MaeConfig {
    /// Fraction of each image's patches hidden. Default 0.75 (the paper's, §4.1, Fig. 5).
    pub mask_ratio: f64,
    /// Decoder width. Default 128 (the paper's decoder is 512 wide for ViT-L; for ViT-Tiny on
    /// 32 px a narrow one keeps the encoder's share of the compute).
    pub decoder_dim: i64,
    /// Decoder blocks. Default 4.
    pub decoder_depth: usize,
    /// Decoder attention heads. Default 4.
    pub decoder_heads: i64,
    /// Predict each patch's pixels normalised by that patch's mean and variance (the paper's
    /// best target, Table 1d). Default true.
    pub norm_pix_loss: bool,
    /// Smallest crop area (the paper's RandomResizedCrop(0.2, 1)). Default 0.2.
    pub crop_min_scale: f32,
}

impl Default for MaeConfig {
    fn default() -> Self {
        MaeConfig {
            mask_ratio: 0.75,
            decoder_dim: 128,
            decoder_depth: 4,
            decoder_heads: 4,
            norm_pix_loss: true,
            crop_min_scale: 0.2,
        }
    }
}

impl MethodSection for MaeConfig {
    const NAME: &'static str = "mae";
    const SUMMARY: &'static str =
        "self-prediction: masked autoencoder, predict hidden ViT patches (needs --backbone vit_*)";
}

impl MethodSpec for MaeConfig {
    fn plan(&self) -> MethodPlan {
        MethodPlan {
            // Data-parallel: the global mean of the masked-patch loss (equal masked counts per image).
            data_parallel: true,
            similarity_matrix: false,
            // AdamW (β 0.9, 0.95; weight decay 0.05), the paper's Table 8.
            default_optimizer: OptimizerName::Adamw,
            // 1.5e-3: the paper's base rate 1.5e-4 per 256 images scaled to its batch of 4096 is
            // 2.4e-3; short CPU runs at batch 256 train best in the low 1e-3s (the guide).
            default_lr: Some(1.5e-3),
            micro_batch: super::MicroBatch::PER_IMAGE,
            ..MethodPlan::default()
        }
    }

    fn check(&self) -> Result<(), SettingError> {
        unit_interval("method.mae.mask_ratio", self.mask_ratio)?;
        if self.mask_ratio >= 1.0 {
            return Err(SettingError::Other(
                "method.mae.mask_ratio is 1: some patches must stay visible (the paper's is 0.75)"
                    .into(),
            ));
        }
        if self.decoder_dim < 4
            || self.decoder_dim % 4 != 0
            || self.decoder_heads < 1
            || self.decoder_dim % self.decoder_heads != 0
            || self.decoder_depth == 0
        {
            return Err(format!(
                "method.mae.decoder_dim {} must be a multiple of 4 and of method.mae.decoder_heads {}, \
                 with decoder_depth ≥ 1",
                self.decoder_dim, self.decoder_heads
            ).into());
        }
        check_crop_min_scale("mae", self.crop_min_scale)
    }

    fn render_views(&self, recipes: Vec<ViewRecipe>) -> Result<Vec<Arc<dyn Views>>, SettingError> {
        pixel_views(recipes, self.crop_min_scale)
    }

    fn build(&self, vs: &nn::VarStore, ctx: &BuildContext) -> anyhow::Result<Box<dyn Method>> {
        Ok(Box::new(Mae::new(vs, ctx, self.clone())?))
    }
}

/// The MAE: a ViT encoder and the decoder.
pub struct Mae {
    pub backbone: Backbone,
    decoder_embed: nn::Linear,
    mask_token: Tensor,
    decoder_pos_embed: Tensor,
    decoder_blocks: Vec<Block>,
    decoder_norm: nn::LayerNorm,
    decoder_pred: nn::Linear,
    cfg: MaeConfig,
    seed: u64,
}

impl Mae {
    /// `backbone.*` (a ViT) and `decoder.*`.
    pub fn new(vs: &nn::VarStore, ctx: &BuildContext, cfg: MaeConfig) -> anyhow::Result<Self> {
        let p = vs.root();
        let backbone = ctx.backbone(&p)?;
        let vit = backbone
            .as_vit()
            .context("method mae needs a ViT encoder: pass --backbone vit_tiny (or vit_small)")?;
        let (d, l, patch) = (vit.config.dim, vit.config.patches(), vit.config.patch);
        let dd = cfg.decoder_dim;
        let q = &p / "decoder";
        let mut pos = q.zeros_no_train("decoder_pos_embed", &[1, 1 + l, dd]);
        let table = Tensor::cat(
            &[
                Tensor::zeros([1, dd], (Kind::Float, p.device())),
                sincos_2d(dd, vit.config.grid()).to_device(p.device()),
            ],
            0,
        );
        tch::no_grad(|| pos.copy_(&table.unsqueeze(0)));
        let mae = Mae {
            decoder_embed: xavier_linear(&q / "decoder_embed", d, dd),
            mask_token: q.var(
                "mask_token",
                &[1, 1, dd],
                nn::Init::Randn {
                    mean: 0.0,
                    stdev: 0.02,
                },
            ),
            decoder_pos_embed: pos,
            decoder_blocks: (0..cfg.decoder_depth)
                .map(|i| Block::new(&(&q / "decoder_blocks" / i), dd, cfg.decoder_heads, 4.0))
                .collect(),
            decoder_norm: layer_norm(&q / "decoder_norm", dd),
            decoder_pred: xavier_linear(&q / "decoder_pred", dd, patch * patch * 3),
            backbone,
            cfg,
            seed: ctx.seed,
        };
        Ok(mae)
    }

    fn vit(&self) -> &Vit {
        self.backbone.as_vit().expect("checked at build")
    }

    /// The encoder on the visible patches of `x` [K, 3, S, S] under the masks of `step`:
    /// `(z [K, 1 + L_v, D], predictions [K, L, p²·3], mask [K, L])`.
    fn forward(&self, x: &Tensor, step: u64) -> (Tensor, Tensor, Tensor) {
        let vit = self.vit();
        let k = x.size()[0];
        let l = vit.config.patches();
        let (ids_keep, mask, ids_restore) =
            random_masking(k, l, self.cfg.mask_ratio, self.seed, step);
        let on = |t: Tensor| crate::device::to_device(&t, x.device());
        let (ids_keep, mask, ids_restore) = (on(ids_keep), on(mask), on(ids_restore));
        let tokens = vit.embed_patches(x); // [K, L, D]
        let d = tokens.size()[2];
        let lv = ids_keep.size()[1];
        let visible = tokens.gather(1, &ids_keep.unsqueeze(-1).expand([k, lv, d], false), false);
        let z = vit.encode_tokens(
            &Tensor::cat(&[vit.class_token(k), visible], 1),
            vit.config.depth,
        ); // [K, 1 + L_v, D]
        let y = z.apply(&self.decoder_embed); // [K, 1 + L_v, Dd]
        let dd = y.size()[2];
        let masked = self.mask_token.expand([k, l - lv, dd], false);
        let shuffled = Tensor::cat(&[y.narrow(1, 1, lv), masked], 1); // [K, L, Dd]
        let restored = shuffled.gather(
            1,
            &ids_restore.unsqueeze(-1).expand([k, l, dd], false),
            false,
        );
        let y = Tensor::cat(&[y.narrow(1, 0, 1), restored], 1) + &self.decoder_pos_embed;
        let pred = crate::precision::autocast(|| {
            let mut y = y;
            for b in &self.decoder_blocks {
                y = b.forward(&y);
            }
            y.apply(&self.decoder_norm).apply(&self.decoder_pred)
        })
        .narrow(1, 1, l); // [K, L, p²·3]
        (z, pred, mask)
    }

    /// The target patches of `x`: [K, L, p²·3], normalised per patch with `norm_pix_loss`;
    /// also the patches' mean and std (for pictures).
    fn target(&self, x: &Tensor) -> (Tensor, Tensor, Tensor) {
        let t = patchify(x, self.vit().config.patch);
        if !self.cfg.norm_pix_loss {
            return (t.shallow_clone(), t.zeros_like(), t.ones_like());
        }
        let mean = t.mean_dim(-1, true, None);
        let std = (t.var_dim(-1, false, true) + 1e-6).sqrt();
        ((&t - &mean) / &std, mean, std)
    }
}

/// The MAE loss: mean squared error per patch, averaged over the hidden patches only:
/// `pred`, `target` [K, L, E], `mask` [K, L] (1 = hidden) → scalar.
pub fn masked_patch_loss(pred: &Tensor, target: &Tensor, mask: &Tensor) -> Tensor {
    let per_patch = (pred - target).square().mean_dim(-1, false, None); // [K, L]
    (per_patch * mask).sum(Kind::Float) / mask.sum(Kind::Float).clamp_min(1.0)
}

impl Method for Mae {
    /// `views[0]` [K, 3, S, S] → the masked-patch loss.
    fn step(
        &mut self,
        views: &[Tensor],
        _targets: Option<&Tensor>,
        ctx: &StepContext,
    ) -> anyhow::Result<StepOutput> {
        let x = &views[0];
        let (z, pred, mask) = self.forward(x, ctx.step);
        let (target, _, _) = self.target(x);
        let loss = crate::dist::global_mean(&masked_patch_loss(&pred, &target, &mask));
        let z = z.detach();
        let lv = z.size()[1] - 1;
        Ok(StepOutput {
            loss,
            // the class token, and the mean visible token, of the visible patches
            embeddings: z.select(1, 0),
            embeddings_b: z.narrow(1, 1, lv).mean_dim(1, false, None),
            metrics: Vec::new(),
        })
    }

    /// The decoder's mask token is not decayed (nor, as always, the encoder's tokens).
    fn param_plan(&self) -> ParamPlan {
        ParamPlan {
            no_decay: vec![self.mask_token.shallow_clone()],
            ..Default::default()
        }
    }

    fn encoder(&self) -> &Backbone {
        &self.backbone
    }

    /// The image with its hidden patches at the mean colour, and the reconstruction (the
    /// visible patches as given, the hidden ones predicted and un-normalised with the true
    /// patch's mean and std, as the paper's figures show them).
    fn reconstruct(&self, x: &Tensor) -> Option<(Tensor, Tensor)> {
        tch::no_grad(|| {
            let p = self.vit().config.patch;
            let (_, pred, mask) = self.forward(x, PICTURE_STEP);
            let (_, mean, std) = self.target(x);
            let pred = match self.cfg.norm_pix_loss {
                true => pred * std + mean,
                false => pred,
            };
            Some(super::self_prediction::patch_pictures(x, &pred, &mask, p))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
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

    fn small() -> MaeConfig {
        MaeConfig {
            decoder_dim: 16,
            decoder_depth: 1,
            decoder_heads: 2,
            ..Default::default()
        }
    }

    #[test]
    fn the_loss_counts_only_hidden_patches() {
        let pred = Tensor::randn([2, 8, 12], (Kind::Float, Device::Cpu));
        let target = Tensor::randn([2, 8, 12], (Kind::Float, Device::Cpu));
        let (_, mask, _) = random_masking(2, 8, 0.75, 0, 0);
        let base = masked_patch_loss(&pred, &target, &mask).double_value(&[]);
        // change the target of a visible patch: the loss stays
        let visible = (0..8).find(|&j| mask.double_value(&[0, j]) == 0.0).unwrap();
        let changed = target.copy();
        let _ = changed.get(0).get(visible).fill_(100.0);
        let same = masked_patch_loss(&pred, &changed, &mask).double_value(&[]);
        assert_eq!(base, same);
        // change a hidden one: it moves
        let hidden = (0..8).find(|&j| mask.double_value(&[0, j]) == 1.0).unwrap();
        let changed = target.copy();
        let _ = changed.get(0).get(hidden).fill_(100.0);
        assert!(masked_patch_loss(&pred, &changed, &mask).double_value(&[]) > base + 1.0);
        // by hand: the mean over the 6 hidden patches of their mean squared error
        let per = (&pred - &target).square().mean_dim(-1, false, None);
        let want = (per * &mask).sum(Kind::Float).double_value(&[]) / 12.0;
        assert!((base - want).abs() < 1e-6);
    }

    #[test]
    fn adamw_leaves_the_tokens_norms_and_biases_undecayed() {
        let vs = nn::VarStore::new(Device::Cpu);
        let m = small().build(&vs, &tiny_vit_context()).unwrap();
        let decay: std::collections::HashMap<String, bool> =
            crate::method::plan::parameter_groups(m.as_ref())
                .params(&vs, 0.0)
                .into_iter()
                .map(|p| (p.name, p.decay))
                .collect();
        for n in [
            "backbone.cls_token",
            "decoder.mask_token",
            "backbone.blocks.0.attn.qkv.bias",
            "backbone.norm.weight",
        ] {
            assert_eq!(decay.get(n), Some(&false), "{n}");
        }
        assert_eq!(decay.get("backbone.blocks.0.attn.qkv.weight"), Some(&true));
        assert_eq!(decay.get("decoder.decoder_pred.weight"), Some(&true));
        assert_eq!(
            decay.get("backbone.pos_embed"),
            None,
            "sin-cos: fixed, not trained"
        );
    }

    #[test]
    fn trains_on_a_vit_pictures_keep_visible_patches_and_a_resnet_is_refused() {
        let vs = nn::VarStore::new(Device::Cpu);
        let mut m = small().build(&vs, &tiny_vit_context()).unwrap();
        assert!(vs
            .variables()
            .contains_key("decoder.decoder_blocks.0.attn.qkv.weight"));
        assert!(vs.variables().contains_key("decoder.mask_token"));
        tch::manual_seed(1);
        let x = Tensor::randn([8, 3, 16, 16], (Kind::Float, Device::Cpu));
        let views = vec![x.shallow_clone()];
        let mut opt = crate::optim::AdamW::new(&vs, (0.9, 0.95), 0.05);
        let first = m
            .step(&views, None, &at(0, 1))
            .unwrap()
            .loss
            .double_value(&[]);
        for _ in 0..30 {
            let out = m.step(&views, None, &at(0, 1)).unwrap(); // the same masks each time
            opt.zero_grad();
            out.loss.backward();
            opt.step(2e-3);
        }
        let last = m
            .step(&views, None, &at(0, 1))
            .unwrap()
            .loss
            .double_value(&[]);
        assert!(last < first * 0.9, "loss {first} → {last}");
        let (shown, filled) = m.reconstruct(&x.narrow(0, 0, 2)).unwrap();
        assert_eq!(filled.size(), vec![2, 3, 16, 16]);
        // 4 of 16 patches are visible: a quarter of the shown image is the input
        let same = shown
            .eq_tensor(&x.narrow(0, 0, 2))
            .to_kind(Kind::Float)
            .mean(Kind::Float);
        assert!((same.double_value(&[]) - 0.25).abs() < 0.01);
        let e = small()
            .build(&nn::VarStore::new(Device::Cpu), &tiny_context())
            .err()
            .unwrap();
        assert!(e.to_string().contains("--backbone vit_tiny"), "{e}");
    }
}
