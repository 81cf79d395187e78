//! MoCo v3 (Chen, Xie & He 2021, "An Empirical Study of Training Self-Supervised Vision
//! Transformers", arXiv:2104.02057): MoCo without the queue. A query encoder with a projection
//! and a prediction head is trained by a symmetric InfoNCE over the batch against the keys of a
//! momentum encoder (backbone + projection, no predictor); the batch's other keys are the
//! negatives.
//! ```text
//! q_v = normalise(h(g(f(x_v))))          [K, D]   (query: projection g, predictor h)
//! k_v = normalise(g'(f'(x_v)))           [K, D]   (momentum encoder, no gradient)
//! L = 2τ · [CE(q_a k_bᵀ / τ, diag) + CE(q_b k_aᵀ / τ, diag)]     (the paper's Alg. 1)
//! ```
//! On a ViT the patch projection stays at its random initialisation (§4.2 of the paper: the
//! "frozen random patch projection" that removes the training instability's dips).
//!
//! Defaults are the paper's: τ 0.2, momentum 0.99 rising to 1 by cosine, BYOL's asymmetric
//! views, heads 4096 wide (`model.projection_hidden`), a 2-layer projector on a ResNet and a
//! 3-layer one on a ViT, a 2-layer predictor, BatchNorm after every hidden layer and after the
//! projector's output. Differences, and why: the output dimension is `model.projection_dim`
//! (the paper's 256 is `--projection-dim 256`); the projector's last BatchNorm has an affine
//! γ, β (the paper's has none: our MLP blocks always carry one; it starts at γ = 1, β = 0);
//! the optimiser is the run's (the paper trains ResNets with LARS and ViTs with AdamW at
//! 1.5e-4·B/256: `--optimizer adamw --lr 1.5e-4` for a ViT at batch 256).

use super::ema::Ema;
use super::{
    positive, unit_interval, BuildContext, Method, MethodPlan, MethodSection, MethodSpec,
    MicroBatch, StepContext, StepOutput, ViewPlan,
};
use crate::backbone::Backbone;
use crate::dist::gather_rows;
use crate::error::SettingError;
use crate::head::{Block, Mlp};
use crate::loss::{info_nce_in_batch, l2_normalize, LossError};
use crate::optim::cosine_schedule;
use serde::{Deserialize, Serialize};
use tch::nn::{self, ModuleT};
use tch::Tensor;

/// `[method.mocov3]`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MoCoV3Config {
    /// Temperature τ of the InfoNCE. Default 0.2 (the paper's for ViTs).
    pub temperature: f64,
    /// Starting momentum of the momentum encoder; it rises to 1 by a cosine schedule over the
    /// run. Default 0.99.
    pub ema_momentum: f64,
    /// On a ViT, keep the patch projection at its random initialisation (§4.2). Default true.
    /// Ignored on a ResNet.
    pub freeze_patch_embed: bool,
}

impl Default for MoCoV3Config {
    fn default() -> Self {
        MoCoV3Config {
            temperature: 0.2,
            ema_momentum: 0.99,
            freeze_patch_embed: true,
        }
    }
}

impl MethodSection for MoCoV3Config {
    const NAME: &'static str = "mocov3";
    const SUMMARY: &'static str =
        "MoCo v3: momentum encoder + predictor, symmetric InfoNCE over the batch (no queue)";
}

impl MethodSpec for MoCoV3Config {
    fn plan(&self) -> MethodPlan {
        MethodPlan {
            // Data-parallel: queries and keys gathered, the loss is the global batch's; the
            // momentum encoder moves identically on every rank.
            data_parallel: true,
            // BYOL's augmentations (the paper's §3): blur on view 1, solarize on view 2.
            views: ViewPlan {
                asymmetric: true,
                multi_crop: false,
            },
            micro_batch: MicroBatch::Split,
            ..MethodPlan::default()
        }
    }

    fn check(&self) -> Result<(), SettingError> {
        positive("method.mocov3.temperature", self.temperature)?;
        unit_interval("method.mocov3.ema_momentum", self.ema_momentum)
    }

    fn build(&self, vs: &nn::VarStore, ctx: &BuildContext) -> anyhow::Result<Box<dyn Method>> {
        Ok(Box::new(MoCoV3::new(vs, ctx, self)?))
    }
}

/// MoCo v3's loss over two views' queries and keys (all rows L2-normalised):
/// ```text
/// L = 2τ · [ −1/B Σ_i log softmax_j(q_a,i·k_b,j / τ)_i  −  1/B Σ_i log softmax_j(q_b,i·k_a,j / τ)_i ]
/// ```
/// (the factor 2τ is the paper's: it makes the gradient's scale independent of τ).
/// # Shapes
/// `q_a`, `q_b`, `k_a`, `k_b`: [B, D] → scalar
pub fn mocov3_loss(
    q_a: &Tensor,
    q_b: &Tensor,
    k_a: &Tensor,
    k_b: &Tensor,
    temperature: f64,
) -> Result<Tensor, LossError> {
    let ab = info_nce_in_batch(q_a, k_b, temperature)?;
    let ba = info_nce_in_batch(q_b, k_a, temperature)?;
    Ok((ab + ba) * (2.0 * temperature))
}

/// MoCo v3's MLP: `layers` linear layers `in → hidden → … → out`, BatchNorm and ReLU after
/// every hidden one; BatchNorm on the output too when `last_bn` (the projector).
fn mlp(p: &nn::Path, layers: usize, dims: (i64, i64, i64), last_bn: bool) -> anyhow::Result<Mlp> {
    let (input, hidden, out) = dims;
    let blocks: Vec<Block> = (0..layers)
        .map(|i| {
            let from = if i == 0 { input } else { hidden };
            match i + 1 == layers {
                true => Block::new(from, out, last_bn, false),
                false => Block::new(from, hidden, true, true),
            }
        })
        .collect();
    Mlp::new(p, &blocks).map_err(anyhow::Error::msg)
}

pub struct MoCoV3 {
    pub backbone: Backbone,
    pub projection: Mlp,
    pub predictor: Mlp,
    momentum_backbone: Backbone,
    momentum_projection: Mlp,
    momentum_encoder: Ema,
    temperature: f64,
    base_momentum: f64,
}

impl MoCoV3 {
    /// Query encoder under `backbone.*`, `projection.*`, `predictor.*`; momentum encoder under
    /// `target.*`. Heads `model.projection_hidden` wide (default 4096, the paper's).
    pub fn new(vs: &nn::VarStore, ctx: &BuildContext, cfg: &MoCoV3Config) -> anyhow::Result<Self> {
        let p = vs.root();
        let backbone = ctx.backbone(&p)?;
        let d = backbone.out_dim();
        let (hidden, out) = (ctx.hidden_or(4096), ctx.projection_dim);
        // the paper's projector: 2 layers after a ResNet, 3 after a ViT
        let depth = if backbone.as_vit().is_some() { 3 } else { 2 };
        let projection = mlp(&(&p / "projection"), depth, (d, hidden, out), true)?;
        let predictor = mlp(&(&p / "predictor"), 2, (out, hidden, out), false)?;
        let t = &p / "target";
        let momentum_backbone = ctx.backbone(&t)?;
        let momentum_projection = mlp(&(&t / "projection"), depth, (d, hidden, out), true)?;
        // copies every trainable query weight (the patch projection too) into the target
        let momentum_encoder = Ema::new(vs, "target.").map_err(anyhow::Error::msg)?;
        if cfg.freeze_patch_embed && backbone.as_vit().is_some() {
            for (name, t) in vs.variables() {
                if name.contains("patch_embed.") {
                    let _ = t.set_requires_grad(false);
                }
            }
        }
        Ok(MoCoV3 {
            backbone,
            projection,
            predictor,
            momentum_backbone,
            momentum_projection,
            momentum_encoder,
            temperature: cfg.temperature,
            base_momentum: cfg.ema_momentum,
        })
    }
}

impl Method for MoCoV3 {
    /// Both views through both encoders in one batch each (BatchNorm sees the 2K views, as in
    /// the paper's code): the projections z_a, z_b, the queries q_a, q_b and the keys k_a, k_b
    /// (no gradient), each [K, D].
    fn embed_views(
        &mut self,
        views: &[Tensor],
        _targets: Option<&Tensor>,
        _ctx: &StepContext,
    ) -> anyhow::Result<Vec<Tensor>> {
        let (k, x) = super::two_views(views, "MoCo v3")?; // x: [2K, 3, H, W]
        let z = self
            .projection
            .forward_t(&self.backbone.forward_t(&x, true), true); // [2K, D]
        let q = l2_normalize(&self.predictor.forward_t(&z, true)); // [2K, D]
        let keys = tch::no_grad(|| {
            l2_normalize(
                &self
                    .momentum_projection
                    .forward_t(&self.momentum_backbone.forward_t(&x, true), true),
            )
        }); // [2K, D]
        let halves = |t: &Tensor| [t.narrow(0, 0, k), t.narrow(0, k, k)];
        let [za, zb] = halves(&z);
        let [qa, qb] = halves(&q);
        let [ka, kb] = halves(&keys);
        Ok(vec![za, zb, qa, qb, ka, kb])
    }

    /// [`mocov3_loss`] over the global batch.
    fn embedding_loss(
        &mut self,
        e: &[Tensor],
        _targets: Option<&Tensor>,
        _ctx: &StepContext,
    ) -> anyhow::Result<StepOutput> {
        // data-parallel: the global batch's rows [W·K, D] (identity in one process)
        let g = |i: usize| gather_rows(&e[i]);
        let loss = mocov3_loss(&g(2), &g(3), &g(4), &g(5), self.temperature)?;
        Ok(StepOutput {
            loss,
            embeddings: e[0].detach(),
            embeddings_b: e[1].detach(),
            metrics: Vec::new(),
        })
    }

    /// Momentum update of the momentum encoder: m from `ema_momentum` to 1, cosine.
    fn after_step(&mut self, ctx: &StepContext) {
        self.momentum_encoder.update(cosine_schedule(
            ctx.step,
            ctx.total_steps,
            self.base_momentum,
            1.0,
        ));
    }

    fn encoder(&self) -> &Backbone {
        &self.backbone
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backbone::{BackboneConfig, VitConfig};
    use crate::loss::testing::{dot, randn, rows, to_rows};
    use crate::method::testing::{at, tiny_context, tiny_views, train_a_few_steps};
    use crate::optim::Sgd;

    /// −log softmax_j(s_ij)_i averaged over i, by hand.
    fn ce_by_hand(q: &[Vec<f64>], k: &[Vec<f64>], tau: f64) -> f64 {
        let mut total = 0.0;
        for (i, qi) in q.iter().enumerate() {
            let logits: Vec<f64> = k.iter().map(|kj| dot(qi, kj) / tau).collect();
            let lse = logits.iter().map(|l| l.exp()).sum::<f64>().ln();
            total += lse - logits[i];
        }
        total / q.len() as f64
    }

    #[test]
    fn the_loss_is_two_tau_times_the_two_directions_cross_entropy() {
        let (qa, qb, ka, kb) = (
            l2_normalize(&randn(&[3, 4], 1)),
            l2_normalize(&randn(&[3, 4], 2)),
            l2_normalize(&randn(&[3, 4], 3)),
            l2_normalize(&randn(&[3, 4], 4)),
        );
        let tau = 0.2;
        let got = mocov3_loss(&qa, &qb, &ka, &kb, tau)
            .unwrap()
            .double_value(&[]);
        let want = 2.0
            * tau
            * (ce_by_hand(&to_rows(&qa), &to_rows(&kb), tau)
                + ce_by_hand(&to_rows(&qb), &to_rows(&ka), tau));
        assert!((got - want).abs() < 1e-10, "{got} vs {want}");
        // perfect, well-separated keys: the loss goes to 0
        let e = rows(&[&[1.0, 0.0], &[0.0, 1.0]]);
        let l = mocov3_loss(&e, &e, &e, &e, 0.01).unwrap().double_value(&[]);
        assert!(l < 1e-10, "{l}");
        // a shape mismatch is named
        let err = mocov3_loss(&qa, &qb, &ka, &randn(&[2, 4], 5), tau).unwrap_err();
        assert!(err.to_string().contains("keys"), "{err}");
    }

    #[test]
    fn trains_without_gradient_to_the_momentum_encoder_which_follows_by_ema() {
        let cfg = MoCoV3Config::default();
        let vs = nn::VarStore::new(tch::Device::Cpu);
        let mut m = MoCoV3::new(&vs, &tiny_context(), &cfg).unwrap();
        // a ResNet: 2-layer projector with a BatchNorm on its output, nothing frozen
        let v = vs.variables();
        assert!(v.contains_key("projection.layers.1.bn.running_mean"));
        assert!(!v.contains_key("projection.layers.2.linear.weight"));
        assert!(!v.contains_key("predictor.layers.1.bn.running_mean"));
        assert!(!v.contains_key("target.predictor.layers.0.linear.weight"));
        let out = m.step(&tiny_views(8, 0), None, &at(0, 10)).unwrap();
        out.loss.backward();
        let key = vs.variables()["target.backbone.conv1.weight"].copy();
        assert!(!vs.variables()["target.backbone.conv1.weight"]
            .grad()
            .defined());
        let query = vs.variables()["backbone.conv1.weight"].shallow_clone();
        let _ = tch::no_grad(|| query.shallow_clone().g_add_scalar_(0.5));
        m.after_step(&at(0, 10));
        let mom = cfg.ema_momentum;
        let want = &key * mom + &query * (1.0 - mom);
        let got = vs.variables()["target.backbone.conv1.weight"].copy();
        assert!((got - want).abs().max().double_value(&[]) < 1e-6);
        train_a_few_steps(&vs, &mut m);
    }

    #[test]
    fn on_a_vit_the_patch_projection_stays_random_and_the_projector_has_three_layers() {
        let mut ctx = tiny_context();
        let mut vit = VitConfig::tiny(4, 16);
        (vit.dim, vit.depth, vit.heads) = (16, 1, 2);
        ctx.backbone = BackboneConfig::Vit(vit);
        for freeze in [true, false] {
            let cfg = MoCoV3Config {
                freeze_patch_embed: freeze,
                ..Default::default()
            };
            let vs = nn::VarStore::new(tch::Device::Cpu);
            let mut m = MoCoV3::new(&vs, &ctx, &cfg).unwrap();
            assert!(vs.variables().contains_key("projection.layers.2.bn.weight"));
            let name = "backbone.patch_embed.proj.weight";
            let before = vs.variables()[name].copy();
            assert!(before.equal(&vs.variables()[&format!("target.{name}")]));
            let mut opt = Sgd::new(&vs, 0.9, 0.0);
            for s in 0..2 {
                let out = m.step(&tiny_views(8, 1), None, &at(s, 2)).unwrap();
                opt.zero_grad();
                out.loss.backward();
                opt.step(0.1);
                m.after_step(&at(s, 2));
            }
            let moved = !vs.variables()[name].equal(&before);
            assert_eq!(moved, !freeze, "freeze_patch_embed = {freeze}");
            assert!(!vs.variables()["backbone.blocks.0.attn.qkv.weight"]
                .grad()
                .equal(&tch::Tensor::zeros_like(
                    &vs.variables()["backbone.blocks.0.attn.qkv.weight"]
                )));
        }
    }

    #[test]
    fn settings_out_of_range_are_named() {
        let bad = MoCoV3Config {
            temperature: 0.0,
            ..Default::default()
        };
        let e = bad.check().unwrap_err().to_string();
        assert!(e.contains("method.mocov3.temperature"), "{e}");
        let bad = MoCoV3Config {
            ema_momentum: 1.5,
            ..Default::default()
        };
        let e = bad.check().unwrap_err().to_string();
        assert!(e.contains("method.mocov3.ema_momentum"), "{e}");
    }
}
