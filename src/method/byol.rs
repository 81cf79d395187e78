//! BYOL (Grill et al. 2020, arXiv:2006.07733): an online network with a predictor regresses
//! the projection of a momentum (EMA) target network; no negatives.

use super::ema::Ema;
use super::MethodPlan;
use super::{
    unit_interval, BuildContext, Method, MethodSection, MethodSpec, StepContext, StepOutput,
    ViewPlan,
};
use crate::backbone::Backbone;
use crate::error::SettingError;
use crate::head::Mlp;
use crate::loss::negative_cosine;
use crate::optim::cosine_schedule;
use serde::{Deserialize, Serialize};
use tch::nn::{self, ModuleT};
use tch::Tensor;

/// `[method.byol]`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ByolConfig {
    /// Starting momentum τ of the EMA target; it rises to 1 by a cosine schedule over the run
    /// (BYOL §3.2). Default 0.99.
    pub ema_momentum: f64,
}

impl Default for ByolConfig {
    fn default() -> Self {
        ByolConfig { ema_momentum: 0.99 }
    }
}

impl MethodSection for ByolConfig {
    const NAME: &'static str = "byol";
    const SUMMARY: &'static str =
        "predictor + EMA target, negative cosine, asymmetric views (solarize 0.2 on view 2)";
}

impl MethodSpec for ByolConfig {
    fn plan(&self) -> MethodPlan {
        MethodPlan {
            // Data-parallel: the global mean of the per-image loss; the EMA target moves identically.
            data_parallel: true,
            views: ViewPlan {
                asymmetric: true,
                multi_crop: false,
            },
            micro_batch: super::MicroBatch::PER_IMAGE,
            ..MethodPlan::default()
        }
    }

    fn check(&self) -> Result<(), SettingError> {
        unit_interval("method.byol.ema_momentum", self.ema_momentum)
    }

    fn build(&self, vs: &nn::VarStore, ctx: &BuildContext) -> anyhow::Result<Box<dyn Method>> {
        Ok(Box::new(Byol::new(vs, ctx, self)?))
    }
}

pub struct Byol {
    pub backbone: Backbone,
    pub projection: Mlp,
    /// q: `Linear(out, hidden) → BN → ReLU → Linear(hidden, out)`, online only.
    pub predictor: Mlp,
    target_backbone: Backbone,
    target_projection: Mlp,
    target: Ema,
    base_momentum: f64,
}

impl Byol {
    /// Online network under `backbone.*`, `projection.*`, `predictor.*`; target under
    /// `target.*`. Hidden width `model.projection_hidden`, default 4 × the encoder's features.
    pub fn new(vs: &nn::VarStore, ctx: &BuildContext, cfg: &ByolConfig) -> anyhow::Result<Self> {
        let p = vs.root();
        let e = anyhow::Error::msg;
        let backbone = ctx.backbone(&p)?;
        let d = backbone.out_dim();
        let hidden = ctx.hidden_or(4 * d);
        let out = ctx.projection_dim;
        let projection = Mlp::simclr_projection(&(&p / "projection"), d, hidden, out).map_err(e)?;
        let predictor = Mlp::simclr_projection(&(&p / "predictor"), out, hidden, out).map_err(e)?;
        let t = &p / "target";
        let target_backbone = ctx.backbone(&t)?;
        let target_projection =
            Mlp::simclr_projection(&(&t / "projection"), d, hidden, out).map_err(e)?;
        let target = Ema::new(vs, "target.").map_err(e)?;
        Ok(Byol {
            backbone,
            projection,
            predictor,
            target_backbone,
            target_projection,
            target,
            base_momentum: cfg.ema_momentum,
        })
    }
}

impl Method for Byol {
    /// `p = q(g(f(x)))` online, `z' = g'(f'(x))` target (no gradient), symmetric:
    /// `L = ½ [D(p_a, z'_b) + D(p_b, z'_a)]`, D the negative cosine (lightly's byol.py).
    fn step(
        &mut self,
        views: &[Tensor],
        _targets: Option<&Tensor>,
        _ctx: &StepContext,
    ) -> anyhow::Result<StepOutput> {
        let (k, x) = super::two_views(views, "BYOL")?; // x: [2K, 3, H, W]
        let z = self
            .projection
            .forward_t(&self.backbone.forward_t(&x, true), true); // [2K, D]
        let p = self.predictor.forward_t(&z, true); // [2K, D]
        let zt = tch::no_grad(|| {
            self.target_projection
                .forward_t(&self.target_backbone.forward_t(&x, true), true)
        }); // [2K, D]
        let (p_a, p_b) = (p.narrow(0, 0, k), p.narrow(0, k, k));
        let (t_a, t_b) = (zt.narrow(0, 0, k), zt.narrow(0, k, k));
        let loss = (negative_cosine(&p_a, &t_b)? + negative_cosine(&p_b, &t_a)?) * 0.5;
        let loss = crate::dist::global_mean(&loss); // data-parallel: the global batch's mean
        Ok(StepOutput {
            loss,
            embeddings: z.narrow(0, 0, k).detach(),
            embeddings_b: z.narrow(0, k, k).detach(),
            metrics: Vec::new(),
        })
    }

    /// τ_m from `ema_momentum` (0.99) to 1 by cosine over the run (BYOL §3.2).
    fn after_step(&mut self, ctx: &StepContext) {
        self.target.update(cosine_schedule(
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
    use crate::method::testing::{at, tiny_context, tiny_views, train_a_few_steps};

    #[test]
    fn the_target_gets_no_gradient_and_follows_the_momentum_schedule() {
        let vs = nn::VarStore::new(tch::Device::Cpu);
        let mut m = Byol::new(&vs, &tiny_context(), &ByolConfig::default()).unwrap();
        let name = "projection.layers.0.linear.weight";
        let online = vs.variables()[name].shallow_clone();
        let target = vs.variables()[&format!("target.{name}")].shallow_clone();
        assert!(online.equal(&target), "the target starts as a copy");
        m.step(&tiny_views(8, 1), None, &at(0, 100))
            .unwrap()
            .loss
            .backward();
        assert!(online.grad().defined() && !target.grad().defined());
        let before = target.copy();
        let _ = tch::no_grad(|| online.shallow_clone().g_add_scalar_(1.0));
        // halfway through the run m = 1 − (1 − 0.99)/2 = 0.995
        m.after_step(&at(50, 100));
        let want = &before * 0.995 + &online * 0.005;
        assert!((target.copy() - &want).abs().max().double_value(&[]) < 1e-6);
        m.after_step(&at(100, 100)); // m = 1 at the end: frozen
        assert!((target.copy() - &want).abs().max().double_value(&[]) < 1e-6);
        train_a_few_steps(&vs, &mut m);
    }
}
