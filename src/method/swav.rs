//! SwAV (Caron et al. 2020, arXiv:2006.09882): online clustering. Views are scored against
//! learnable prototypes; each large view's Sinkhorn-equipartitioned assignment (its "code") is
//! predicted from every other view, small multi-crop views included.

use super::sinkhorn::sinkhorn;
use super::{Method, StepOutput};
use crate::backbone::ResNet;
use crate::config::TrainConfig;
use crate::head::Mlp;
use crate::loss::{cross_view_loss, l2_normalize};
use tch::nn::{self, ModuleT};
use tch::Tensor;

/// Sinkhorn-Knopp iterations per batch (the paper's 3).
const SINKHORN_ITERATIONS: usize = 3;

pub struct SwAV {
    pub backbone: ResNet,
    /// g: `Linear(d, hidden) → BN → ReLU → Linear(hidden, projection_dim)`.
    pub projection: Mlp,
    /// C: [P, D] prototypes, renormalised to unit rows before every step.
    pub prototypes: Tensor,
    temperature: f64,
    epsilon: f64,
}

impl SwAV {
    /// Variables `backbone.*`, `projection.*` and `prototypes.weight` [P, D].
    pub fn new(p: &nn::Path, cfg: &TrainConfig) -> anyhow::Result<Self> {
        let e = anyhow::Error::msg;
        let backbone = ResNet::new(&(p / "backbone"), &cfg.model.resnet()).map_err(e)?;
        let d = backbone.out_dim();
        let hidden = cfg.model.projection_hidden.unwrap_or(4 * d);
        let out = cfg.model.projection_dim;
        let projection = Mlp::simclr_projection(&(p / "projection"), d, hidden, out).map_err(e)?;
        let prototypes = (p / "prototypes").var(
            "weight",
            &[cfg.method.prototypes as i64, out],
            nn::Init::Randn {
                mean: 0.0,
                stdev: 1.0,
            },
        );
        Ok(SwAV {
            backbone,
            projection,
            prototypes,
            temperature: cfg.method.prototype_temperature,
            epsilon: cfg.method.sinkhorn_epsilon,
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
    fn step(&self, views: &[Tensor], _labels: Option<&Tensor>) -> anyhow::Result<StepOutput> {
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
        let codes: Vec<Tensor> = scores[..2]
            .iter()
            .map(|s| sinkhorn(s, self.epsilon, SINKHORN_ITERATIONS))
            .collect();
        let loss = cross_view_loss(&codes, &scores, self.temperature)?;
        Ok(StepOutput {
            loss,
            embeddings: z[0].narrow(0, 0, k).detach(),
            embeddings_b: z[0].narrow(0, k, k).detach(),
        })
    }

    fn encoder(&self) -> &ResNet {
        &self.backbone
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::method::testing::{tiny_config, tiny_views, train_a_few_steps};
    use tch::{Device, Kind};

    #[test]
    fn prototypes_stay_unit_rows_and_multi_crop_views_train() {
        let mut cfg = tiny_config("swav");
        cfg.method.prototypes = 12;
        let vs = nn::VarStore::new(Device::Cpu);
        let m = SwAV::new(&vs.root(), &cfg).unwrap();
        let mut views = tiny_views(8, 3);
        views.push(Tensor::randn([8, 3, 8, 8], (Kind::Float, Device::Cpu)));
        views.push(Tensor::randn([8, 3, 8, 8], (Kind::Float, Device::Cpu)));
        let out = m.step(&views, None).unwrap();
        out.loss.backward();
        let norms = m.prototypes.norm_scalaropt_dim(2, [1], false);
        assert!((norms - 1.0).abs().max().double_value(&[]) < 1e-5);
        assert!(m.prototypes.grad().defined(), "the prototypes learn");
        // a cross-entropy of softmax(s/τ) over 12 prototypes with cosine scores s ∈ [−1, 1]:
        // 0 < L ≤ 2/τ + log 12
        let l = out.loss.double_value(&[]);
        assert!(l > 0.0 && l <= 2.0 / 0.1 + 12f64.ln(), "{l}");
        assert!(m.step(&views[..1], None).is_err());
        train_a_few_steps(&vs, &m, &cfg);
    }

    #[test]
    fn the_codes_of_a_batch_are_an_equipartition() {
        let mut cfg = tiny_config("swav");
        cfg.method.prototypes = 4;
        let vs = nn::VarStore::new(Device::Cpu);
        let m = SwAV::new(&vs.root(), &cfg).unwrap();
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
