//! LARS, layer-wise adaptive rate scaling (You, Gitman and Ginsburg 2017, arXiv:1708.03888):
//! SimCLR's optimiser for large batches (`optim.name = "lars"`).
//!
//! For every parameter p with gradient g, as SimCLR's and solo-learn's LARS apply it (the
//! trust ratio scales the decayed gradient, then SGD's momentum):
//! ```text
//! adapted p (≥ 2-D, not in the no-decay group):
//!     d = g + λ p
//!     r = η ‖p‖ / (‖g‖ + λ ‖p‖)    (η the trust coefficient; r = 1 where ‖p‖ or ‖g‖ is 0)
//!     d ← r d
//! other p (biases, norms, tokens): d = g             (neither decayed nor adapted)
//! b ← μ b + d                                        (momentum μ; b starts at 0)
//! p ← p − lr b
//! ```
//! Which parameters are adapted is the parameter plan's `decay` flag ([`super::Param`]), the
//! same one AdamW reads: nothing here reads a variable's name.

use super::groups::Param;
use super::sgd::Sgd;
use super::StateError;
use tch::Tensor;

/// LARS over SGD's momentum buffers (the same state, `momentum.<param>`).
pub struct Lars {
    sgd: Sgd,
    /// Adapted and decayed, per parameter.
    adapted: Vec<bool>,
    /// η.
    pub trust_coefficient: f64,
    /// λ.
    pub weight_decay: f64,
}

impl Lars {
    /// LARS with momentum μ, weight decay λ and trust coefficient η over `params`.
    pub fn planned(params: Vec<Param>, momentum: f64, weight_decay: f64, trust: f64) -> Self {
        let adapted = params.iter().map(|p| p.decay).collect();
        Lars {
            // the decay and the trust ratio are applied here, before SGD's momentum
            sgd: Sgd::planned(params, momentum, 0.0),
            adapted,
            trust_coefficient: trust,
            weight_decay,
        }
    }

    pub fn zero_grad(&mut self) {
        self.sgd.zero_grad();
    }

    pub fn params(&self) -> &[(String, Tensor)] {
        self.sgd.params()
    }

    /// One update at learning rate `lr`: the gradients are replaced by `d`, then SGD's step.
    pub fn step(&mut self, lr: f64) {
        let (eta, wd) = (self.trust_coefficient, self.weight_decay);
        tch::no_grad(|| {
            for ((_, p), adapted) in self.sgd.params().iter().zip(&self.adapted) {
                let mut g = p.grad();
                if !(g.defined() && *adapted) {
                    continue;
                }
                let (p_norm, g_norm) = (p.norm(), g.norm()); // scalars, on the device
                let ratio = (&p_norm * eta) / (&g_norm + &p_norm * wd);
                // r = 1 where either norm is 0 (a fresh zero weight, an unused one)
                let usable = p_norm.gt(0.0).logical_and(&g_norm.gt(0.0));
                let ratio = ratio.where_self(&usable, &ratio.ones_like());
                let d = (&g + p * wd) * ratio;
                g.copy_(&d);
            }
        });
        self.sgd.step(lr);
    }

    pub fn state(&self) -> Vec<(String, Tensor)> {
        self.sgd.state()
    }

    pub fn load_state(&mut self, state: &[(String, Tensor)]) -> Result<(), StateError> {
        self.sgd.load_state(state)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::optim::ParamPlan;
    use tch::{nn::VarStore, Device, Kind};

    /// Two steps on L = Σ w² + Σ b² (g = 2p) against the rule computed by hand in f64: the
    /// matrix w adapted and decayed, the bias b plain SGD with momentum.
    #[test]
    fn matches_the_update_rule_by_hand() {
        let vs = VarStore::new(Device::Cpu);
        let w0 = [3.0f64, -4.0, 1.0, 2.0];
        let b0 = [0.5f64, -1.0];
        let w = vs.root().var_copy(
            "w",
            &Tensor::from_slice(&w0.map(|v| v as f32)).reshape([2, 2]),
        );
        let b = vs
            .root()
            .var_copy("b", &Tensor::from_slice(&b0.map(|v| v as f32)));
        let (mu, wd, eta, lr) = (0.9, 0.1, 0.001, 2.0);
        let mut opt = Lars::planned(ParamPlan::default().params(&vs, lr), mu, wd, eta);
        let (mut we, mut be) = (w0.to_vec(), b0.to_vec());
        let (mut wbuf, mut bbuf) = (vec![0.0; 4], vec![0.0; 2]);
        let norm = |v: &[f64]| v.iter().map(|x| x * x).sum::<f64>().sqrt();
        for _ in 0..2 {
            opt.zero_grad();
            ((&w * &w).sum(Kind::Float) + (&b * &b).sum(Kind::Float)).backward();
            opt.step(lr);
            // by hand: w adapted
            let g: Vec<f64> = we.iter().map(|p| 2.0 * p).collect();
            let r = eta * norm(&we) / (norm(&g) + wd * norm(&we));
            for i in 0..4 {
                let d = r * (g[i] + wd * we[i]);
                wbuf[i] = mu * wbuf[i] + d;
                we[i] -= lr * wbuf[i];
            }
            // b: 1-D, plain momentum SGD without decay
            for i in 0..2 {
                bbuf[i] = mu * bbuf[i] + 2.0 * be[i];
                be[i] -= lr * bbuf[i];
            }
        }
        let got_w = Vec::<f64>::try_from(w.flatten(0, -1).to_kind(Kind::Double)).unwrap();
        let got_b = Vec::<f64>::try_from(b.to_kind(Kind::Double)).unwrap();
        for (g, e) in got_w.iter().zip(&we).chain(got_b.iter().zip(&be)) {
            assert!((g - e).abs() < 1e-5 * e.abs().max(1.0), "{g} vs {e}");
        }
        // the adapted step is small (about lr · η · p per step), the bias's is not
        assert!((got_w[0] - w0[0]).abs() < 0.05);
        assert!((got_b[0] - b0[0]).abs() > 0.5);
    }

    #[test]
    fn a_zero_weight_or_gradient_steps_with_ratio_one() {
        let vs = VarStore::new(Device::Cpu);
        let w = vs.root().var("w", &[2, 2], tch::nn::Init::Const(0.0));
        let mut opt = Lars::planned(ParamPlan::default().params(&vs, 1.0), 0.0, 0.0, 0.001);
        opt.zero_grad();
        (&w * 3.0).sum(Kind::Float).backward(); // g = 3, ‖p‖ = 0
        opt.step(0.5);
        assert!(w.allclose(&(w.ones_like() * -1.5), 1e-6, 1e-6, false));
    }
}
