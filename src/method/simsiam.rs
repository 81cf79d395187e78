//! SimSiam (Chen & He 2021, arXiv:2011.10566): two views, a predictor on one side and
//! stop-gradient on the other; no negatives, no momentum encoder.

use super::{
    BuildContext, Method, MethodPlan, MethodSection, MethodSpec, ParamPlan, StepContext, StepOutput,
};
use crate::backbone::Backbone;
use crate::head::{Block, Mlp};
use crate::loss::negative_cosine;
use serde::{Deserialize, Serialize};
use tch::nn::{self, ModuleT};
use tch::Tensor;

/// `[method.simsiam]`: the paper's heads (Chen & He 2021, §3, §4.3 and the CIFAR appendix).
/// Without `optim.lr`, SimSiam trains at [`SIMSIAM_LR`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SimSiamConfig {
    /// Output dimension of the projector and the predictor; 0: `model.projection_dim`.
    /// Default 2048 (the paper).
    pub out_dim: usize,
    /// Hidden width of the bottleneck predictor; 0: a quarter of the output. Default 512 (the
    /// paper's, for 2048).
    pub predictor_hidden: usize,
    /// Train the predictor at the constant peak learning rate, not the decayed one (§4.3:
    /// "using a fixed learning rate for the predictor ... works better"). Default true.
    pub fixed_predictor_lr: bool,
}

/// SimSiam's learning rate when `optim.lr` is not given: 0.3, measured on CIFAR-10 at the
/// guide's 6-minute budget (kNN top-1 37.5 % at 0.3, 33.0 % at 0.5, 23.6 % at the paper's
/// 0.05, which is meant for 800 epochs and leaves the features dimensionally collapsed, effective
/// rank 10, after 3.5). Set per method so that it does not follow the global default.
pub const SIMSIAM_LR: f64 = 0.3;

impl Default for SimSiamConfig {
    fn default() -> Self {
        SimSiamConfig {
            out_dim: 2048,
            predictor_hidden: 512,
            fixed_predictor_lr: true,
        }
    }
}

impl MethodSection for SimSiamConfig {
    const NAME: &'static str = "simsiam";
    const SUMMARY: &'static str = "predictor + stop-gradient, negative cosine, no momentum";
}

impl MethodSpec for SimSiamConfig {
    fn plan(&self) -> MethodPlan {
        MethodPlan {
            // Data-parallel: the global mean of the per-image loss.
            data_parallel: true,
            default_lr: Some(SIMSIAM_LR),
            micro_batch: super::MicroBatch::PER_IMAGE,
            ..MethodPlan::default()
        }
    }

    fn build(&self, vs: &nn::VarStore, ctx: &BuildContext) -> anyhow::Result<Box<dyn Method>> {
        Ok(Box::new(SimSiam::new(vs, ctx, self)?))
    }
}

pub struct SimSiam {
    pub backbone: Backbone,
    /// SimSiam's 3-layer projector (BN on every layer, the last without ReLU); 2 layers on
    /// CIFAR as in the paper's §B: `Linear → BN → ReLU → Linear → BN`.
    pub projection: Mlp,
    /// The bottleneck predictor h: `Linear(out, hidden) → BN → ReLU → Linear(hidden, out)`.
    pub predictor: Mlp,
    /// The predictor's variables with `fixed_predictor_lr`: trained at the peak rate.
    constant_lr: Vec<Tensor>,
}

impl SimSiam {
    /// Projector hidden width `model.projection_hidden`, default 4 × the encoder's features.
    pub fn new(vs: &nn::VarStore, ctx: &BuildContext, cfg: &SimSiamConfig) -> anyhow::Result<Self> {
        let p = vs.root();
        let e = anyhow::Error::msg;
        let backbone = ctx.backbone(&p)?;
        let d = backbone.out_dim();
        let hidden = ctx.hidden_or(4 * d);
        let out = match cfg.out_dim {
            0 => ctx.projection_dim,
            o => o as i64,
        };
        let projection = Mlp::new(
            &(&p / "projection"),
            &[
                Block::new(d, hidden, true, true),
                Block::new(hidden, out, true, false),
            ],
        )
        .map_err(e)?;
        let bottleneck = match cfg.predictor_hidden {
            0 => (out / 4).max(1),
            h => h as i64,
        };
        let predictor = Mlp::new(
            &(&p / "predictor"),
            &[
                Block::new(out, bottleneck, true, true),
                Block::new(bottleneck, out, false, false),
            ],
        )
        .map_err(e)?;
        Ok(SimSiam {
            backbone,
            projection,
            predictor,
            // §4.3: the predictor at the peak learning rate, outside the schedule
            constant_lr: match cfg.fixed_predictor_lr {
                true => super::plan::variables_under(vs, "predictor"),
                false => Vec::new(),
            },
        })
    }

    /// `z = g(f(x))`, `p = h(z)` in training mode (FastSiam shares it).
    /// # Shapes
    /// `x`: [N, 3, H, W] → (`z`, `p`): [N, D] each
    pub fn project_and_predict(&self, x: &Tensor) -> (Tensor, Tensor) {
        let z = self
            .projection
            .forward_t(&self.backbone.forward_t(x, true), true);
        let p = self.predictor.forward_t(&z, true);
        (z, p)
    }
}

impl Method for SimSiam {
    /// `z = g(f(x))`, `p = h(z)`, `L = ½ D(p_a, stopgrad(z_b)) + ½ D(p_b, stopgrad(z_a))` (eq. 2).
    fn step(
        &mut self,
        views: &[Tensor],
        _targets: Option<&Tensor>,
        _ctx: &StepContext,
    ) -> anyhow::Result<StepOutput> {
        let (k, x) = super::two_views(views, "SimSiam")?; // x: [2K, 3, H, W]
        let (z, p) = self.project_and_predict(&x); // [2K, D] each
        let (z_a, z_b) = (z.narrow(0, 0, k), z.narrow(0, k, k));
        let (p_a, p_b) = (p.narrow(0, 0, k), p.narrow(0, k, k));
        let loss = negative_cosine(&p_a, &z_b.detach())? * 0.5
            + negative_cosine(&p_b, &z_a.detach())? * 0.5;
        let loss = crate::dist::global_mean(&loss); // data-parallel: the global batch's mean
        Ok(StepOutput {
            loss,
            embeddings: z_a.detach(),
            embeddings_b: z_b.detach(),
            metrics: Vec::new(),
        })
    }

    /// With `fixed_predictor_lr`, the predictor at the peak learning rate (§4.3).
    fn param_plan(&self) -> ParamPlan {
        ParamPlan {
            constant_lr: self.constant_lr.iter().map(Tensor::shallow_clone).collect(),
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
    use crate::method::testing::{at, tiny_context, tiny_views, train_a_few_steps};

    #[test]
    fn the_gradient_reaches_the_encoder_only_through_the_predictor_side() {
        let vs = nn::VarStore::new(tch::Device::Cpu);
        let cfg = SimSiamConfig {
            out_dim: 0,
            predictor_hidden: 0,
            ..Default::default()
        };
        let mut m = SimSiam::new(&vs, &tiny_context(), &cfg).unwrap();
        let out = m.step(&tiny_views(8, 2), None, &at(0, 1)).unwrap();
        let l = out.loss.double_value(&[]);
        assert!((-1.0..=1.0).contains(&l), "a negative cosine: {l}");
        out.loss.backward();
        for n in [
            "predictor.layers.0.linear.weight",
            "projection.layers.0.linear.weight",
            "backbone.conv1.weight",
        ] {
            assert!(vs.variables()[n].grad().defined(), "{n}");
        }
        train_a_few_steps(&vs, &mut m);
        assert_eq!(
            vs.variables()["predictor.layers.0.linear.weight"].size(),
            [4, 16],
            "0: a quarter of model.projection_dim"
        );
        let paper = SimSiamConfig::default();
        let vs = nn::VarStore::new(tch::Device::Cpu);
        let m = SimSiam::new(&vs, &tiny_context(), &paper).unwrap();
        let held: Vec<String> = m
            .param_plan()
            .params(&vs, 0.5)
            .into_iter()
            .filter(|p| p.held_lr == Some(0.5))
            .map(|p| p.name)
            .collect();
        let predictor: Vec<String> = crate::optim::trainable_by_name(&vs)
            .into_iter()
            .map(|(n, _)| n)
            .filter(|n| n.starts_with("predictor."))
            .collect();
        assert!(!held.is_empty());
        assert_eq!(
            held, predictor,
            "held: the predictor's variables, no others"
        );
        assert_eq!(
            vs.variables()["predictor.layers.0.linear.weight"].size(),
            [512, 2048]
        );
    }
}
