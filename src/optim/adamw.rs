//! AdamW (Loshchilov & Hutter 2019, arXiv:1711.05101): Adam with weight decay decoupled from
//! the gradient, PyTorch's `torch.optim.AdamW` semantics, with its moments exposed for
//! checkpoints. Which parameters it decays is the method's plan ([`super::groups`]): not
//! norms and biases, nor a ViT's tokens and position embeddings (timm's
//! `param_groups_weight_decay`, as MAE and DINO train).

use super::groups::Param;
use super::StateError;
use tch::{nn::VarStore, Kind, Tensor};

/// PyTorch's `AdamW.step` (`torch/optim/adamw.py`, `_single_tensor_adamw`, amsgrad off):
/// ```text
/// param.mul_(1 - lr * weight_decay)
/// exp_avg.lerp_(grad, 1 - beta1)
/// exp_avg_sq.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
/// bias_correction1 = 1 - beta1 ** step
/// bias_correction2 = 1 - beta2 ** step
/// step_size = lr / bias_correction1
/// denom = (exp_avg_sq.sqrt() / sqrt(bias_correction2)).add_(eps)
/// param.addcdiv_(exp_avg, denom, value=-step_size)
/// ```
/// The step count t is per optimiser (every parameter of a step has a gradient here).
pub struct AdamW {
    params: Vec<(String, Tensor)>,
    exp_avg: Vec<Tensor>,
    exp_avg_sq: Vec<Tensor>,
    decay: Vec<bool>,
    held_lr: Vec<Option<f64>>,
    /// Steps taken, t, as a [1] tensor so that it can live in a variable store.
    steps: Tensor,
    /// `steps` on the host, read from the tensor once (after a restore of the store or the
    /// state) and then kept in step with it: no device read per step.
    steps_host: std::cell::Cell<Option<u64>>,
    pub betas: (f64, f64),
    pub eps: f64,
    pub weight_decay: f64,
}

impl AdamW {
    /// Optimises every trainable variable of `vs`, in name order, all scheduled; its moments
    /// are plain tensors.
    pub fn new(vs: &VarStore, betas: (f64, f64), weight_decay: f64) -> Self {
        Self::planned(
            super::groups::scheduled(vs),
            betas,
            weight_decay,
            vs.device(),
        )
    }

    /// Optimises `params` as their groups say ([`super::ParamPlan`]): decayed or not, at a
    /// held learning rate where one is given; moments are plain tensors on `device`.
    pub fn planned(
        params: Vec<Param>,
        betas: (f64, f64),
        weight_decay: f64,
        device: tch::Device,
    ) -> Self {
        let steps = Tensor::zeros([1], (Kind::Float, device));
        Self::with_state(params, betas, weight_decay, |_, p| p.zeros_like(), steps)
    }

    /// Optimises `params`; `buffer(name, param)` makes each zeroed moment (variables of a store
    /// when the state is to be checkpointed with it, as the context encoder's discriminator
    /// does), `steps` (shape \[1\]) holds the step count.
    pub fn with_state(
        params: Vec<Param>,
        betas: (f64, f64),
        weight_decay: f64,
        mut buffer: impl FnMut(String, &Tensor) -> Tensor,
        steps: Tensor,
    ) -> Self {
        let decay = params.iter().map(|p| p.decay).collect();
        let held_lr = params.iter().map(|p| p.held_lr).collect();
        let params: Vec<(String, Tensor)> =
            params.into_iter().map(|p| (p.name, p.tensor)).collect();
        let exp_avg = params
            .iter()
            .map(|(n, p)| buffer(format!("exp_avg.{n}"), p))
            .collect();
        let exp_avg_sq = params
            .iter()
            .map(|(n, p)| buffer(format!("exp_avg_sq.{n}"), p))
            .collect();
        AdamW {
            decay,
            held_lr,
            params,
            exp_avg,
            exp_avg_sq,
            steps,
            steps_host: std::cell::Cell::new(None),
            betas,
            eps: 1e-8,
            weight_decay,
        }
    }

    /// The parameters, by name.
    pub fn params(&self) -> &[(String, Tensor)] {
        &self.params
    }

    /// Steps taken so far.
    pub fn steps_taken(&self) -> u64 {
        match self.steps_host.get() {
            Some(t) => t,
            None => {
                let t = self.steps.double_value(&[0]) as u64;
                self.steps_host.set(Some(t));
                t
            }
        }
    }

    /// One update at learning rate `lr`; parameters without a gradient are left alone.
    pub fn step(&mut self, lr: f64) {
        let (b1, b2) = self.betas;
        let t = self.steps_taken() + 1;
        tch::no_grad(|| {
            let _ = self.steps.fill_(t as f64);
            self.steps_host.set(Some(t));
            let bc1 = 1.0 - b1.powi(t as i32);
            let bc2 = 1.0 - b2.powi(t as i32);
            for i in 0..self.params.len() {
                let lr = self.held_lr[i].unwrap_or(lr);
                let p = &mut self.params[i].1;
                let g = p.grad();
                if !g.defined() {
                    continue;
                }
                if self.decay[i] && self.weight_decay != 0.0 {
                    let _ = p.g_mul_scalar_(1.0 - lr * self.weight_decay);
                }
                let m = &mut self.exp_avg[i];
                let _ = m.g_mul_scalar_(b1).g_add_(&(&g * (1.0 - b1)));
                let v = &mut self.exp_avg_sq[i];
                let _ = v.g_mul_scalar_(b2).g_add_(&(&g * &g * (1.0 - b2)));
                let denom = v.sqrt() / bc2.sqrt() + self.eps;
                let _ = p.g_sub_(&(&*m / denom * (lr / bc1)));
            }
        });
    }

    pub fn zero_grad(&mut self) {
        for (_, p) in &mut self.params {
            let mut g = p.grad();
            if g.defined() {
                let _ = g.detach_().zero_();
            }
        }
    }

    /// The moments `exp_avg.<param>`, `exp_avg_sq.<param>` and `step`, for checkpoints.
    pub fn state(&self) -> Vec<(String, Tensor)> {
        let mut out = Vec::with_capacity(2 * self.params.len() + 1);
        for ((n, _), (m, v)) in self
            .params
            .iter()
            .zip(self.exp_avg.iter().zip(&self.exp_avg_sq))
        {
            out.push((format!("exp_avg.{n}"), m.shallow_clone()));
            out.push((format!("exp_avg_sq.{n}"), v.shallow_clone()));
        }
        out.push(("step".into(), self.steps.shallow_clone()));
        out
    }

    /// Restores what [`AdamW::state`] saved; every moment must be there with its shape.
    pub fn load_state(&mut self, state: &[(String, Tensor)]) -> Result<(), StateError> {
        let find = |name: &str| {
            state
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, t)| t)
                .ok_or_else(|| StateError::Missing {
                    what: format!("{name} (is it an AdamW run?)"),
                })
        };
        for i in 0..self.params.len() {
            let n = self.params[i].0.clone();
            for (key, buf) in [
                (format!("exp_avg.{n}"), &mut self.exp_avg[i]),
                (format!("exp_avg_sq.{n}"), &mut self.exp_avg_sq[i]),
            ] {
                let src = find(&key)?;
                if src.size() != buf.size() {
                    return Err(StateError::Shape {
                        what: key,
                        saved: src.size(),
                        needed: buf.size(),
                    });
                }
                tch::no_grad(|| buf.copy_(src));
            }
        }
        let s = find("step")?;
        tch::no_grad(|| self.steps.copy_(&s.reshape([1])));
        self.steps_host.set(None);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::{nn, Device};

    #[test]
    fn matches_pytorchs_formula_by_hand_on_two_parameters() {
        // w (2-D, decayed) and b (1-D, not decayed); loss = Σ w² + 3·Σ b
        let vs = VarStore::new(Device::Cpu);
        let w = vs
            .root()
            .var_copy("w", &Tensor::from_slice(&[1.0f32, -2.0]).view([1, 2]));
        let b = vs.root().var_copy("b", &Tensor::from_slice(&[0.5f32]));
        let mut opt = AdamW::new(&vs, (0.9, 0.95), 0.1);
        let (lr, eps) = (0.01, 1e-8);
        let mut pw = [1.0f64, -2.0];
        let mut pb = 0.5f64;
        let (mut mw, mut vw, mut mb, mut vb) = ([0.0f64; 2], [0.0f64; 2], 0.0f64, 0.0f64);
        for t in 1..=4 {
            opt.zero_grad();
            ((&w * &w).sum(Kind::Float) + (&b * 3.0).sum(Kind::Float)).backward();
            opt.step(lr);
            let (bc1, bc2) = (1.0 - 0.9f64.powi(t), 1.0 - 0.95f64.powi(t));
            for j in 0..2 {
                let g = 2.0 * pw[j];
                pw[j] *= 1.0 - lr * 0.1;
                mw[j] = 0.9 * mw[j] + 0.1 * g;
                vw[j] = 0.95 * vw[j] + 0.05 * g * g;
                pw[j] -= lr / bc1 * mw[j] / (vw[j].sqrt() / bc2.sqrt() + eps);
            }
            let g = 3.0;
            mb = 0.9 * mb + 0.1 * g;
            vb = 0.95 * vb + 0.05 * g * g;
            pb -= lr / bc1 * mb / (vb.sqrt() / bc2.sqrt() + eps); // no decay on a 1-D parameter
        }
        for (j, want) in pw.iter().enumerate() {
            let got = w.double_value(&[0, j as i64]);
            assert!((got - want).abs() < 1e-6, "w[{j}] {got} vs {want}");
        }
        assert!((b.double_value(&[0]) - pb).abs() < 1e-6);
        assert_eq!(opt.steps_taken(), 4);
    }

    #[test]
    fn state_round_trips_resumes_exactly_and_checks_shapes() {
        let run = |split: Option<usize>| {
            tch::manual_seed(0);
            let vs = VarStore::new(Device::Cpu);
            let l = nn::linear(vs.root() / "l", 3, 2, Default::default());
            let x = Tensor::from_slice(&[1.0f32, 2.0, -1.0]).view([1, 3]);
            let mut opt = AdamW::new(&vs, (0.9, 0.999), 0.05);
            for s in 0..6 {
                if split == Some(s) {
                    let saved = opt.state();
                    let copies: Vec<(String, Tensor)> =
                        saved.iter().map(|(n, t)| (n.clone(), t.copy())).collect();
                    opt = AdamW::new(&vs, (0.9, 0.999), 0.05);
                    opt.load_state(&copies).unwrap();
                }
                opt.zero_grad();
                x.apply(&l).square().sum(Kind::Float).backward();
                opt.step(0.1);
            }
            (vs.variables()["l.weight"].copy(), opt)
        };
        let (straight, mut opt) = run(None);
        let (resumed, _) = run(Some(3));
        assert!(straight.equal(&resumed), "resume changed the result");
        let bad: Vec<(String, Tensor)> = opt
            .state()
            .into_iter()
            .map(|(n, _)| (n, Tensor::zeros([7], (Kind::Float, Device::Cpu))))
            .collect();
        assert!(opt
            .load_state(&bad)
            .unwrap_err()
            .to_string()
            .contains("[7]"));
        assert!(opt
            .load_state(&[])
            .unwrap_err()
            .to_string()
            .contains("exp_avg"));
    }
}
