//! I-JEPA (Assran et al. 2023, "Self-Supervised Learning from Images with a Joint-Embedding
//! Predictive Architecture", arXiv:2301.08243): predict, in representation space, what an EMA
//! target encoder makes of several blocks of the image from what the context encoder makes of
//! the rest. No hand-made augmentation beyond the crop; no pixels are reconstructed.
//! ```text
//! masks: context ids [K, n_c], target ids [M, K, n_t]            (block_masks::MultiBlock)
//! h = LN(f̄(patches(x)))                  [K, L, D]   EMA target encoder, all patches, no gradient
//! z = f([cls; patches(x)[context]])      [K, 1 + n_c, D]
//! for each target block m:
//!   u = [W_in z + pos(context); mask_token + pos(target_m)]   [K, 1 + n_c + n_t, D_p]
//!   ŝ_m = W_out LN(predictor(u))[:, −n_t:]                     [K, n_t, D]
//! L = mean over m, images, patches, features of (ŝ_m − h[target_m])²
//! ```
//! Defaults are the paper's (4 target blocks of 15–20 % at aspect 0.75–1.5, a context block of
//! 85–100 %, momentum 0.996 → 1, crops of 30–100 % without flips, AdamW at 1e-3), scaled where
//! they must be: the predictor is 96 wide and 4 deep (the paper's ViT-B predictor is 384 × 6:
//! "narrow", half the encoder's width; ViT-Tiny is 192 wide), and a context keeps at least 4
//! patches (the paper's 10 of 196). Differences, and why: the context encoder also reads a
//! class token, which the predictor sees (the paper's ViTs have none; here the default
//! `model.pool = "cls"` then reads a token trained through the predictor — the paper's
//! evaluation, the mean patch token, is `--set model.pool=\"mean\"`); the loss is the paper's
//! L2 (its code uses smooth L1); the momentum reaches 1 at the run's end (the code's
//! schedule stops at 0.9992); the encoder evaluated and exported is the context encoder (the
//! paper evaluates the target encoder).

use super::block_masks::MultiBlock;
use super::ema::Ema;
use super::self_prediction::pixel_views;
use super::{unit_interval, BuildContext, Method, MethodSection, MethodSpec, StepContext};
use super::{MethodPlan, ParamPlan, StepOutput};
use crate::augment::{ViewRecipe, Views};
use crate::backbone::vit::{layer_norm, sincos_2d, xavier_linear, Block};
use crate::backbone::{Backbone, Vit};
use crate::error::SettingError;
use crate::optim::OptimizerName;
use anyhow::Context;
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use tch::{nn, Kind, Tensor};

/// `[method.ijepa]`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct IJepaConfig {
    /// Target blocks per image. Default 4.
    pub targets: usize,
    /// Range of a target block's area, fraction of the image. Default [0.15, 0.2].
    pub target_scale: (f64, f64),
    /// Range of a target block's aspect ratio h / w. Default [0.75, 1.5].
    pub target_aspect: (f64, f64),
    /// Range of the context block's area before the targets are cut out. Default [0.85, 1.0].
    pub context_scale: (f64, f64),
    /// Starting momentum of the target encoder; it rises linearly to 1. Default 0.996.
    pub ema_momentum: f64,
    /// Predictor width. Default 96.
    pub predictor_dim: i64,
    /// Predictor blocks. Default 4.
    pub predictor_depth: usize,
    /// Predictor attention heads. Default 3.
    pub predictor_heads: i64,
    /// Smallest crop area (the paper's RandomResizedCrop(0.3, 1)). Default 0.3.
    pub crop_min_scale: f32,
}

impl Default for IJepaConfig {
    fn default() -> Self {
        IJepaConfig {
            targets: 4,
            target_scale: (0.15, 0.2),
            target_aspect: (0.75, 1.5),
            context_scale: (0.85, 1.0),
            ema_momentum: 0.996,
            predictor_dim: 96,
            predictor_depth: 4,
            predictor_heads: 3,
            crop_min_scale: 0.3,
        }
    }
}

impl MethodSection for IJepaConfig {
    const NAME: &'static str = "ijepa";
    const SUMMARY: &'static str =
        "self-prediction in representation space: predict an EMA encoder's target blocks from a context block (needs --backbone vit_*)";
}

/// `(lo, hi)` with `0 < lo ≤ hi ≤ max`, else the message names `key`.
fn range(key: &str, (lo, hi): (f64, f64), max: f64) -> Result<(), SettingError> {
    match lo > 0.0 && lo <= hi && hi <= max {
        true => Ok(()),
        false => Err(SettingError::out_of_range(
            format!("method.ijepa.{key}"),
            format!("[{lo}, {hi}]"),
            format!("it must be [lo, hi] with 0 < lo ≤ hi ≤ {max}"),
        )),
    }
}

impl MethodSpec for IJepaConfig {
    fn plan(&self) -> MethodPlan {
        MethodPlan {
            // Data-parallel: the global mean of the per-patch loss (equal target counts per
            // image: the batch's blocks share one shape); the target encoder moves identically.
            data_parallel: true,
            similarity_matrix: false,
            default_optimizer: OptimizerName::Adamw,
            // the paper's peak rate (at batch 2048 with a 40-epoch warm-up)
            default_lr: Some(1e-3),
            micro_batch: super::MicroBatch::PER_IMAGE,
            ..MethodPlan::default()
        }
    }

    fn check(&self) -> Result<(), SettingError> {
        if !(1..=16).contains(&self.targets) {
            return Err(SettingError::out_of_range(
                "method.ijepa.targets",
                self.targets,
                "it must be between 1 and 16 (the paper's is 4)",
            ));
        }
        range("target_scale", self.target_scale, 1.0)?;
        range("target_aspect", self.target_aspect, 10.0)?;
        range("context_scale", self.context_scale, 1.0)?;
        unit_interval("method.ijepa.ema_momentum", self.ema_momentum)?;
        let (d, h) = (self.predictor_dim, self.predictor_heads);
        if d < 4 || d % 4 != 0 || h < 1 || d % h != 0 || self.predictor_depth == 0 {
            return Err(format!(
                "method.ijepa.predictor_dim {d} must be a multiple of 4 and of \
                 method.ijepa.predictor_heads {h}, with predictor_depth ≥ 1"
            )
            .into());
        }
        super::self_prediction::check_crop_min_scale("ijepa", self.crop_min_scale)
    }

    /// The crop only: no flip, no colour (the paper's `make_transforms` defaults).
    fn render_views(
        &self,
        mut recipes: Vec<ViewRecipe>,
    ) -> Result<Vec<Arc<dyn Views>>, SettingError> {
        recipes.iter_mut().for_each(|r| r.flip_p = 0.0);
        pixel_views(recipes, self.crop_min_scale)
    }

    fn build(&self, vs: &nn::VarStore, ctx: &BuildContext) -> anyhow::Result<Box<dyn Method>> {
        Ok(Box::new(IJepa::new(vs, ctx, self)?))
    }
}

/// Rows `ids` [B, n] (i64) of `t` [B, T, E]: [B, n, E].
fn rows_at(t: &Tensor, ids: &Tensor) -> Tensor {
    let (b, n) = (ids.size()[0], ids.size()[1]);
    t.gather(
        1,
        &ids.unsqueeze(-1).expand([b, n, t.size()[2]], false),
        false,
    )
}

/// I-JEPA: context encoder `backbone.*`, EMA target encoder `target.backbone.*`, predictor
/// `predictor.*`.
pub struct IJepa {
    pub backbone: Backbone,
    target_backbone: Backbone,
    target: Ema,
    predictor_embed: nn::Linear,
    mask_token: Tensor,
    /// Fixed sin-cos positions [1, 1 + L, D_p] (the class token's row zeros).
    predictor_pos: Tensor,
    predictor_blocks: Vec<Block>,
    predictor_norm: nn::LayerNorm,
    predictor_proj: nn::Linear,
    masks: MultiBlock,
    base_momentum: f64,
    seed: u64,
}

impl IJepa {
    pub fn new(vs: &nn::VarStore, ctx: &BuildContext, cfg: &IJepaConfig) -> anyhow::Result<Self> {
        let p = vs.root();
        let backbone = ctx.backbone(&p)?;
        let vit = backbone
            .as_vit()
            .context("method ijepa needs a ViT encoder: pass --backbone vit_tiny (or vit_small)")?;
        let (d, grid, dp) = (vit.config.dim, vit.config.grid(), cfg.predictor_dim);
        let target_backbone = ctx.backbone(&(&p / "target"))?;
        let target = Ema::new(vs, "target.").map_err(anyhow::Error::msg)?;
        let q = &p / "predictor";
        let mut predictor_pos = q.zeros_no_train("predictor_pos_embed", &[1, 1 + grid * grid, dp]);
        let table = Tensor::cat(
            &[
                Tensor::zeros([1, dp], (Kind::Float, p.device())),
                sincos_2d(dp, grid).to_device(p.device()),
            ],
            0,
        );
        tch::no_grad(|| predictor_pos.copy_(&table.unsqueeze(0)));
        let normal = nn::Init::Randn {
            mean: 0.0,
            stdev: 0.02,
        };
        let h = cfg.predictor_heads;
        Ok(IJepa {
            predictor_embed: xavier_linear(&q / "predictor_embed", d, dp),
            mask_token: q.var("mask_token", &[1, 1, dp], normal),
            predictor_pos,
            predictor_blocks: (0..cfg.predictor_depth)
                .map(|i| Block::new(&(&q / "predictor_blocks" / i), dp, h, 4.0))
                .collect(),
            predictor_norm: layer_norm(&q / "predictor_norm", dp),
            predictor_proj: xavier_linear(&q / "predictor_proj", dp, d),
            masks: MultiBlock {
                targets: cfg.targets,
                target_scale: cfg.target_scale,
                target_aspect: cfg.target_aspect,
                context_scale: cfg.context_scale,
                min_context: 4,
            },
            backbone,
            target_backbone,
            target,
            base_momentum: cfg.ema_momentum,
            seed: ctx.seed,
        })
    }

    fn vit(b: &Backbone) -> &Vit {
        b.as_vit().expect("checked at build")
    }

    /// `x` [K, 3, S, S] at `step` → `(ŝ [M·K, n_t, D], targets [M·K, n_t, D], z [K, 1 + n_c, D])`.
    fn forward(&self, x: &Tensor, step: u64) -> (Tensor, Tensor, Tensor) {
        let (vit, tvit) = (Self::vit(&self.backbone), Self::vit(&self.target_backbone));
        let (k, grid, d) = (x.size()[0], vit.config.grid(), vit.config.dim);
        let masks = self.masks.sample(k, grid, self.seed, step);
        let on = |t: &Tensor| crate::device::to_device(t, x.device());
        let (context, targets) = (on(&masks.context), on(&masks.targets));
        let (m, n_t) = (targets.size()[0], targets.size()[2]);
        let targets = targets.view([m * k, n_t]); // block-major
        let h = tch::no_grad(|| {
            tvit.encode_tokens(&tvit.embed_patches(x), tvit.config.depth)
                .to_kind(Kind::Float)
                .layer_norm([d], None::<Tensor>, None::<Tensor>, 1e-5, false)
        }); // [K, L, D]
        let wanted = rows_at(&h.repeat([m, 1, 1]), &targets); // [M·K, n_t, D]
        let seen = rows_at(&vit.embed_patches(x), &context); // [K, n_c, D]
        let z = vit.encode_tokens(&vit.prepend_class_token(&seen), vit.config.depth); // [K, 1 + n_c, D]
        let dp = self.predictor_pos.size()[2];
        let pos = self
            .predictor_pos
            .expand([m * k, 1 + grid * grid, dp], false);
        let cls = Tensor::zeros([k, 1], (Kind::Int64, x.device()));
        let context_pos = rows_at(&pos.narrow(0, 0, k), &Tensor::cat(&[cls, &context + 1], 1));
        let pred = crate::precision::autocast(|| {
            let u = (z.apply(&self.predictor_embed) + context_pos).repeat([m, 1, 1]); // [M·K, 1 + n_c, D_p]
            let queries = &self.mask_token + rows_at(&pos, &(&targets + 1)); // [M·K, n_t, D_p]
            let mut y = Tensor::cat(&[u, queries], 1);
            for b in &self.predictor_blocks {
                y = b.forward(&y);
            }
            let t = y.size()[1];
            y.narrow(1, t - n_t, n_t)
                .apply(&self.predictor_norm)
                .apply(&self.predictor_proj)
        })
        .to_kind(Kind::Float); // [M·K, n_t, D]
        (pred, wanted, z)
    }
}

/// I-JEPA's loss: `L = mean (ŝ − h)²` over blocks, images, patches and features.
/// # Shapes
/// `pred`, `target`: [B, n, D] → scalar
pub fn ijepa_loss(pred: &Tensor, target: &Tensor) -> Tensor {
    (pred - target).square().mean(Kind::Float)
}

impl Method for IJepa {
    fn step(
        &mut self,
        views: &[Tensor],
        _targets: Option<&Tensor>,
        ctx: &StepContext,
    ) -> anyhow::Result<StepOutput> {
        let (pred, wanted, z) = self.forward(&views[0], ctx.step);
        let loss = crate::dist::global_mean(&ijepa_loss(&pred, &wanted));
        let z = z.detach();
        let n_c = z.size()[1] - 1;
        Ok(StepOutput {
            loss,
            embeddings: z.select(1, 0),
            embeddings_b: z.narrow(1, 1, n_c).mean_dim(1, false, None),
            metrics: Vec::new(),
        })
    }

    /// Momentum from `ema_momentum` to 1, linearly over the run (the paper's schedule).
    fn after_step(&mut self, ctx: &StepContext) {
        let done = ctx.step as f64 / ctx.total_steps.max(1) as f64;
        let m = self.base_momentum + (1.0 - self.base_momentum) * done.min(1.0);
        self.target.update(m);
    }

    /// The predictor's mask token is not decayed (nor, as always, the encoder's tokens).
    fn param_plan(&self) -> ParamPlan {
        ParamPlan {
            no_decay: vec![self.mask_token.shallow_clone()],
            ..Default::default()
        }
    }

    fn encoder(&self) -> &Backbone {
        &self.backbone
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
        let mut v = VitConfig::tiny(4, 32);
        (v.dim, v.depth, v.heads) = (32, 2, 2);
        ctx.backbone = BackboneConfig::Vit(v);
        ctx
    }

    fn small() -> IJepaConfig {
        IJepaConfig {
            predictor_dim: 16,
            predictor_depth: 1,
            predictor_heads: 2,
            ..Default::default()
        }
    }

    #[test]
    fn the_targets_are_the_ema_encoders_normalised_patches_and_get_no_gradient() {
        let vs = nn::VarStore::new(Device::Cpu);
        let m = IJepa::new(&vs, &tiny_vit_context(), &small()).unwrap();
        tch::manual_seed(2);
        let x = Tensor::randn([3, 3, 32, 32], (Kind::Float, Device::Cpu));
        let (pred, wanted, z) = m.forward(&x, 5);
        let masks = m.masks.sample(3, 8, 0, 5);
        let n_t = masks.targets.size()[2];
        assert_eq!(pred.size(), vec![12, n_t, 32]);
        assert_eq!(wanted.size(), pred.size());
        assert_eq!(z.size(), vec![3, 1 + masks.context.size()[1], 32]);
        assert!(!wanted.requires_grad() && pred.requires_grad());
        // block 1 of image 2 by hand: the target encoder's patches at those ids, layer-normed
        let tv = IJepa::vit(&m.target_backbone);
        let h = tv.encode_tokens(&tv.embed_patches(&x), 2);
        let ids: Vec<i64> = Vec::try_from(masks.targets.get(1).get(2)).unwrap();
        let row = h.get(2).index_select(0, &Tensor::from_slice(&ids));
        let mean = row.mean_dim(-1, true, None);
        let var = row.var_dim(-1, false, true);
        let want = (&row - mean) / (var + 1e-5).sqrt();
        assert!(wanted.get(3 + 2).allclose(&want, 1e-4, 1e-4, false));
        let loss = ijepa_loss(&pred, &wanted);
        let by_hand = (&pred - &wanted)
            .square()
            .sum(Kind::Float)
            .double_value(&[])
            / (12 * n_t * 32) as f64;
        assert!((loss.double_value(&[]) - by_hand).abs() < 1e-6);
        loss.backward();
        let v = vs.variables();
        assert!(!v["target.backbone.blocks.0.attn.qkv.weight"]
            .grad()
            .defined());
        assert!(
            v["backbone.blocks.0.attn.qkv.weight"]
                .grad()
                .abs()
                .sum(Kind::Float)
                .double_value(&[])
                > 0.0
        );
        assert!(
            v["predictor.mask_token"]
                .grad()
                .abs()
                .sum(Kind::Float)
                .double_value(&[])
                > 0.0
        );
    }

    #[test]
    fn trains_the_target_follows_and_a_resnet_is_refused() {
        let vs = nn::VarStore::new(Device::Cpu);
        let mut m = small().build(&vs, &tiny_vit_context()).unwrap();
        tch::manual_seed(1);
        let views = vec![Tensor::randn([8, 3, 32, 32], (Kind::Float, Device::Cpu))];
        let mut opt = crate::optim::AdamW::new(&vs, (0.9, 0.95), 0.05);
        let name = "target.backbone.blocks.0.attn.qkv.weight";
        let before = vs.variables()[name].copy();
        let mut losses = Vec::new();
        for s in 0..20 {
            let out = m.step(&views, None, &at(s % 2, 20)).unwrap();
            losses.push(out.loss.double_value(&[]));
            opt.zero_grad();
            out.loss.backward();
            opt.step(2e-3);
            m.after_step(&at(s, 20));
        }
        assert!(losses.iter().all(|l| l.is_finite()));
        assert!(losses[19] < losses[1] * 0.9, "{losses:?}");
        assert!(!vs.variables()[name].equal(&before), "the target moved");
        let e = small()
            .build(&nn::VarStore::new(Device::Cpu), &tiny_context())
            .err()
            .unwrap();
        assert!(e.to_string().contains("--backbone vit_tiny"), "{e}");
        let bad = IJepaConfig {
            target_scale: (0.3, 0.2),
            ..Default::default()
        };
        let e = bad.check().unwrap_err().to_string();
        assert!(e.contains("method.ijepa.target_scale"), "{e}");
    }
}
