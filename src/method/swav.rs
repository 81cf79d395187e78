//! SwAV (Caron et al. 2020, arXiv:2006.09882): online clustering. Views are scored against
//! learnable prototypes; each large view's Sinkhorn-equipartitioned assignment (its "code") is
//! predicted from every other view, small multi-crop views included.

use super::sinkhorn::sinkhorn;
use super::MethodPlan;
use super::{
    positive, BuildContext, Method, MethodSection, MethodSpec, StepContext, StepOutput, ViewPlan,
};
use crate::backbone::Backbone;
use crate::error::SettingError;
use crate::head::Mlp;
use crate::loss::{cross_view_loss, l2_normalize};
use serde::{Deserialize, Serialize};
use tch::nn::{self, ModuleT};
use tch::Tensor;

/// Sinkhorn-Knopp iterations per batch (the paper's 3).
const SINKHORN_ITERATIONS: usize = 3;

/// `[method.swav]`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SwAVConfig {
    /// Prototypes P. Default 3000 (solo-learn's CIFAR recipe).
    pub prototypes: usize,
    /// Temperature τ of the softmax over prototype scores. Default 0.1.
    pub prototype_temperature: f64,
    /// Sinkhorn-Knopp entropy ε (3 iterations). Default 0.05.
    pub sinkhorn_epsilon: f64,
}

impl Default for SwAVConfig {
    fn default() -> Self {
        SwAVConfig {
            prototypes: 3000,
            prototype_temperature: 0.1,
            sinkhorn_epsilon: 0.05,
        }
    }
}

impl MethodSection for SwAVConfig {
    const NAME: &'static str = "swav";
    const SUMMARY: &'static str = "prototypes + Sinkhorn codes, swapped prediction, multi-crop";
}

/// Between 2 and 2¹⁶ prototypes (clusters, outputs), else the message names the key.
pub fn check_prototypes(method: &str, p: usize) -> Result<(), SettingError> {
    match (2..=1 << 16).contains(&p) {
        true => Ok(()),
        false => Err(SettingError::out_of_range(
            format!("method.{method}.prototypes"),
            p,
            "it must be between 2 and 65536 (SwAV uses 3000)",
        )),
    }
}

impl MethodSpec for SwAVConfig {
    fn plan(&self) -> MethodPlan {
        MethodPlan {
            // Data-parallel: Sinkhorn codes of the gathered global batch (each rank keeps its rows) and the global mean of the loss.
            data_parallel: true,
            views: ViewPlan {
                asymmetric: false,
                multi_crop: true,
            },
            ..MethodPlan::default()
        }
    }

    fn check(&self) -> Result<(), SettingError> {
        check_prototypes("swav", self.prototypes)?;
        positive(
            "method.swav.prototype_temperature",
            self.prototype_temperature,
        )?;
        positive("method.swav.sinkhorn_epsilon", self.sinkhorn_epsilon)
    }

    fn build(&self, vs: &nn::VarStore, ctx: &BuildContext) -> anyhow::Result<Box<dyn Method>> {
        Ok(Box::new(SwAV::new(&vs.root(), ctx, self)?))
    }
}

pub struct SwAV {
    pub backbone: Backbone,
    /// g: `Linear(d, hidden) → BN → ReLU → Linear(hidden, projection_dim)`.
    pub projection: Mlp,
    /// C: [P, D] prototypes, renormalised to unit rows before every step.
    pub prototypes: Tensor,
    temperature: f64,
    epsilon: f64,
}

impl SwAV {
    /// Variables `backbone.*`, `projection.*` and `prototypes.weight` [P, D]; projection
    /// hidden width `model.projection_hidden`, default 4 × the encoder's features.
    pub fn new(p: &nn::Path, ctx: &BuildContext, cfg: &SwAVConfig) -> anyhow::Result<Self> {
        let e = anyhow::Error::msg;
        let backbone = ctx.backbone(p)?;
        let d = backbone.out_dim();
        let hidden = ctx.hidden_or(4 * d);
        let out = ctx.projection_dim;
        let projection = Mlp::simclr_projection(&(p / "projection"), d, hidden, out).map_err(e)?;
        let prototypes = (p / "prototypes").var(
            "weight",
            &[cfg.prototypes as i64, out],
            nn::Init::Randn {
                mean: 0.0,
                stdev: 1.0,
            },
        );
        Ok(SwAV {
            backbone,
            projection,
            prototypes,
            temperature: cfg.prototype_temperature,
            epsilon: cfg.sinkhorn_epsilon,
        })
    }

    /// Unit-norm embeddings of views of one size, as one batch: [V·K, D].
    fn embed(&self, views: &[Tensor]) -> Tensor {
        let x = Tensor::cat(views, 0);
        l2_normalize(
            &self
                .projection
                .forward_t(&self.backbone.forward_t(&x, true), true),
        )
    }
}

impl Method for SwAV {
    /// Views 0 and 1 are the large ones, any further views the small multi-crops:
    /// ```text
    /// C ← C / ‖C‖ (rows);  z_v = g(f(x_v)) / ‖·‖;  s_v = z_v Cᵀ           [K, P]
    /// q_i = Sinkhorn(s_i / ε, 3 iterations), no gradient, for i ∈ {0, 1}
    /// L = mean over i ∈ {0, 1}, v ≠ i of  −Σ_p q_ip log softmax(s_v / τ)_p
    /// ```
    /// Large and small views go through the network as two batches (each size its own
    /// BatchNorm batch, as in the reference code).
    fn step(
        &mut self,
        views: &[Tensor],
        _targets: Option<&Tensor>,
        _ctx: &StepContext,
    ) -> anyhow::Result<StepOutput> {
        anyhow::ensure!(
            views.len() >= 2,
            "SwAV takes 2 large views (and optional small ones) per image, got {}",
            views.len()
        );
        let k = views[0].size()[0];
        tch::no_grad(|| {
            let mut c = self.prototypes.shallow_clone();
            c.copy_(&l2_normalize(&self.prototypes));
        });
        let mut z = vec![self.embed(&views[..2])]; // [2K, D]
        if views.len() > 2 {
            z.push(self.embed(&views[2..])); // [nK, D]
        }
        let scores: Vec<Tensor> = z
            .iter()
            .flat_map(|z| z.matmul(&self.prototypes.tr()).split(k, 0))
            .collect(); // V × [K, P]
                        // data-parallel: codes of the global batch [W·K, P] (its normalisation couples the
                        // images), this rank's rows kept; identity in one process
        let first = crate::dist::first_row(k);
        let codes: Vec<Tensor> = scores[..2]
            .iter()
            .map(|s| {
                let all = crate::dist::gather_rows(&s.detach());
                sinkhorn(&all, self.epsilon, SINKHORN_ITERATIONS).narrow(0, first, k)
            })
            .collect();
        let loss = cross_view_loss(&codes, &scores, self.temperature)?;
        let loss = crate::dist::global_mean(&loss);
        Ok(StepOutput {
            loss,
            embeddings: z[0].narrow(0, 0, k).detach(),
            embeddings_b: z[0].narrow(0, k, k).detach(),
            metrics: Vec::new(),
        })
    }

    fn encoder(&self) -> &Backbone {
        &self.backbone
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::method::testing::{at, tiny_context, tiny_views, train_a_few_steps};
    use tch::{Device, Kind};

    #[test]
    fn prototypes_stay_unit_rows_and_multi_crop_views_train() {
        let cfg = SwAVConfig {
            prototypes: 12,
            ..Default::default()
        };
        let vs = nn::VarStore::new(Device::Cpu);
        let mut m = SwAV::new(&vs.root(), &tiny_context(), &cfg).unwrap();
        let mut views = tiny_views(8, 3);
        views.push(Tensor::randn([8, 3, 8, 8], (Kind::Float, Device::Cpu)));
        views.push(Tensor::randn([8, 3, 8, 8], (Kind::Float, Device::Cpu)));
        let out = m.step(&views, None, &at(0, 1)).unwrap();
        out.loss.backward();
        let norms = m.prototypes.norm_scalaropt_dim(2, [1], false);
        assert!((norms - 1.0).abs().max().double_value(&[]) < 1e-5);
        assert!(m.prototypes.grad().defined(), "the prototypes learn");
        // a cross-entropy of softmax(s/τ) over 12 prototypes with cosine scores s ∈ [−1, 1]:
        // 0 < L ≤ 2/τ + log 12
        let l = out.loss.double_value(&[]);
        assert!(l > 0.0 && l <= 2.0 / 0.1 + 12f64.ln(), "{l}");
        assert!(m.step(&views[..1], None, &at(0, 1)).is_err());
        train_a_few_steps(&vs, &mut m);
    }

    #[test]
    fn the_codes_of_a_batch_are_an_equipartition() {
        let cfg = SwAVConfig {
            prototypes: 4,
            ..Default::default()
        };
        let vs = nn::VarStore::new(Device::Cpu);
        let m = SwAV::new(&vs.root(), &tiny_context(), &cfg).unwrap();
        let z = tch::no_grad(|| m.embed(&tiny_views(16, 5)[..1]));
        let s = z.matmul(&l2_normalize(&m.prototypes).tr());
        let q = sinkhorn(&s, 0.05, 50);
        let cols = q.sum_dim_intlist([0i64].as_slice(), false, Kind::Float);
        assert!(
            (cols - 4.0).abs().max().double_value(&[]) < 1e-2,
            "16 images / 4 prototypes"
        );
    }
}
