//! SGD with momentum and weight decay (PyTorch's `torch.optim.SGD` semantics), with its
//! momentum buffers exposed for checkpointing.

use super::groups::Param;
use super::StateError;
use tch::{nn::VarStore, Tensor};

/// For every trainable parameter p with gradient g (PyTorch `SGD`, dampening 0):
/// ```text
/// g ← g + λ p          (weight decay λ)
/// b ← μ b + g          (momentum μ; b starts at 0, so the first b = g)
/// p ← p − η b          (learning rate η)
/// ```
pub struct Sgd {
    params: Vec<(String, Tensor)>,
    momentum_buffers: Vec<Tensor>,
    /// A learning rate held constant for a parameter whatever `step` is given (SimSiam's
    /// predictor); None: the step's.
    held_lr: Vec<Option<f64>>,
    pub momentum: f64,
    pub weight_decay: f64,
}

impl Sgd {
    /// Optimises every trainable variable of `vs`, in name order, all scheduled.
    pub fn new(vs: &VarStore, momentum: f64, weight_decay: f64) -> Self {
        Self::planned(super::groups::scheduled(vs), momentum, weight_decay)
    }

    /// Optimises `params` as their groups say ([`super::ParamPlan`]): a held learning rate
    /// where one is given. SGD's coupled decay applies to all of them.
    pub fn planned(params: Vec<Param>, momentum: f64, weight_decay: f64) -> Self {
        let held_lr = params.iter().map(|p| p.held_lr).collect();
        let params: Vec<(String, Tensor)> =
            params.into_iter().map(|p| (p.name, p.tensor)).collect();
        let momentum_buffers = params.iter().map(|(_, p)| p.zeros_like()).collect();
        Sgd {
            held_lr,
            params,
            momentum_buffers,
            momentum,
            weight_decay,
        }
    }

    pub fn zero_grad(&mut self) {
        for (_, p) in &mut self.params {
            let mut g = p.grad();
            if g.defined() {
                let _ = g.detach_().zero_();
            }
        }
    }

    /// `sqrt(Σ_p ‖∂L/∂p‖²)` over the parameters that have a gradient (see [`grad_norm`]).
    pub fn grad_norm(&self) -> f64 {
        grad_norm(&self.params)
    }

    /// The parameters, by name.
    pub fn params(&self) -> &[(String, Tensor)] {
        &self.params
    }

    /// One update with learning rate `lr` (or a parameter's held one, [`Param::held_lr`]); parameters
    /// without a gradient are left alone.
    pub fn step(&mut self, lr: f64) {
        tch::no_grad(|| {
            for (((_, p), b), held) in self
                .params
                .iter_mut()
                .zip(self.momentum_buffers.iter_mut())
                .zip(&self.held_lr)
            {
                let lr = held.unwrap_or(lr);
                let g = p.grad();
                if !g.defined() {
                    continue;
                }
                let d = if self.weight_decay != 0.0 {
                    &g + &*p * self.weight_decay
                } else {
                    g
                };
                let _ = b.g_mul_scalar_(self.momentum).g_add_(&d);
                let _ = p.g_sub_(&(&*b * lr));
            }
        });
    }

    /// Momentum buffers as `(momentum.<parameter name>, buffer)`, for checkpoints.
    pub fn state(&self) -> Vec<(String, Tensor)> {
        self.params
            .iter()
            .zip(&self.momentum_buffers)
            .map(|((n, _), b)| (format!("momentum.{n}"), b.shallow_clone()))
            .collect()
    }

    /// Restores the buffers saved by [`Sgd::state`]; every parameter must be present with its shape.
    pub fn load_state(&mut self, state: &[(String, Tensor)]) -> Result<(), StateError> {
        for ((name, _), buf) in self.params.iter().zip(self.momentum_buffers.iter_mut()) {
            let key = format!("momentum.{name}");
            let src = state
                .iter()
                .find(|(n, _)| *n == key)
                .ok_or_else(|| StateError::Missing {
                    what: format!("momentum buffer for {name}"),
                })?;
            if src.1.size() != buf.size() {
                return Err(StateError::Shape {
                    what: format!("momentum buffer {name}"),
                    saved: src.1.size(),
                    needed: buf.size(),
                });
            }
            tch::no_grad(|| buf.copy_(&src.1));
        }
        Ok(())
    }
}

/// `sqrt(Σ_p ‖∂L/∂p‖²)` over the parameters that have a gradient: non-finite if any
/// gradient element is (NaN and ±∞ propagate through the sum).
pub fn grad_norm(params: &[(String, Tensor)]) -> f64 {
    grad_norm_tensor(params).map_or(0.0, |n| n.double_value(&[]))
}

/// [`grad_norm`] as an f64 scalar tensor on the parameters' device (None: no gradient).
pub fn grad_norm_tensor(params: &[(String, Tensor)]) -> Option<Tensor> {
    let squares: Vec<Tensor> = params
        .iter()
        .map(|(_, p)| p.grad())
        .filter(|g| g.defined())
        .map(|g| g.detach().norm().to_kind(tch::Kind::Double).square())
        .collect();
    if squares.is_empty() {
        return None;
    }
    Some(Tensor::stack(&squares, 0).sum(tch::Kind::Double).sqrt())
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::{nn, Device, Kind};

    #[test]
    fn a_held_learning_rate_ignores_the_steps() {
        let vs = VarStore::new(Device::Cpu);
        let a = vs.root().var_copy("a", &Tensor::from_slice(&[1.0f32]));
        let h = (vs.root() / "head").var_copy("w", &Tensor::from_slice(&[1.0f32]));
        let plan = crate::optim::ParamPlan {
            constant_lr: vec![h.shallow_clone()],
            ..Default::default()
        };
        let mut opt = Sgd::planned(plan.params(&vs, 0.5), 0.0, 0.0);
        opt.zero_grad();
        (&a * 1.0 + &h * 1.0).sum(Kind::Float).backward(); // both gradients 1
        opt.step(0.1);
        assert!((a.double_value(&[0]) - 0.9).abs() < 1e-6);
        assert!((h.double_value(&[0]) - 0.5).abs() < 1e-6);
    }

    #[test]
    fn matches_the_update_rule_by_hand() {
        let vs = VarStore::new(Device::Cpu);
        let w = vs
            .root()
            .var_copy("w", &Tensor::from_slice(&[1.0f32, -2.0]));
        let mut opt = Sgd::new(&vs, 0.9, 0.1);
        // loss = Σ w² → g = 2w
        let mut expect = [1.0f64, -2.0];
        let mut buf = [0.0f64; 2];
        for _ in 0..3 {
            opt.zero_grad();
            (&w * &w).sum(Kind::Float).backward();
            opt.step(0.05);
            for (e, b) in expect.iter_mut().zip(buf.iter_mut()) {
                let g = 2.0 * *e + 0.1 * *e;
                *b = 0.9 * *b + g;
                *e -= 0.05 * *b;
            }
        }
        for (i, e) in expect.iter().enumerate() {
            let got = w.double_value(&[i as i64]);
            assert!((got - e).abs() < 1e-6, "{got} vs {e}");
        }
    }

    #[test]
    fn state_round_trips_and_checks_shapes() {
        let vs = VarStore::new(Device::Cpu);
        let _ = nn::linear(vs.root() / "l", 3, 2, Default::default());
        let mut opt = Sgd::new(&vs, 0.9, 0.0);
        let state: Vec<(String, Tensor)> = opt
            .state()
            .into_iter()
            .map(|(n, t)| (n, t.ones_like() * 3.0))
            .collect();
        opt.load_state(&state).unwrap();
        assert!(opt
            .state()
            .iter()
            .all(|(_, b)| b.min().double_value(&[]) == 3.0));
        let bad: Vec<(String, Tensor)> = state
            .iter()
            .map(|(n, _)| (n.clone(), Tensor::zeros([7], (Kind::Float, Device::Cpu))))
            .collect();
        let e = opt.load_state(&bad).unwrap_err();
        assert!(
            matches!(&e, StateError::Shape { saved, .. } if *saved == [7]),
            "{e}"
        );
        assert!(
            opt.load_state(&[])
                .unwrap_err()
                .to_string()
                .contains("l.weight")
                || opt.load_state(&[]).is_err()
        );
    }

    #[test]
    fn grad_norm_by_hand_and_non_finite_gradients_show() {
        let vs = VarStore::new(Device::Cpu);
        let a = vs.root().var_copy("a", &Tensor::from_slice(&[3.0f32]));
        let b = vs.root().var_copy("b", &Tensor::from_slice(&[1.0f32, 2.0]));
        let opt = Sgd::new(&vs, 0.9, 0.0);
        assert_eq!(opt.grad_norm(), 0.0); // no gradient yet
                                          // L = 2a + Σ b² → ∂a = 2, ∂b = (2, 4): norm √(4 + 4 + 16) = √24
        (&a * 2.0 + (&b * &b).sum(Kind::Float))
            .sum(Kind::Float)
            .backward();
        assert!((opt.grad_norm() - 24f64.sqrt()).abs() < 1e-5);
        // L = sqrt(a − 3) at a = 3: ∂a = +∞
        (&a - 3.0).sqrt().sum(Kind::Float).backward();
        assert!(!opt.grad_norm().is_finite());
    }
}
