//! One training step of [`Trainer::run`](super::Trainer::run):
//! ```text
//! zero_grad → method step (loss; encoder and heads in train.precision) → backward (of
//!   loss × scale under fp16; with train.micro_batch both by gradient caching, grad_cache.rs)
//!   → all-reduce ∇ (data-parallel) → ∇ ÷ scale → ‖∇‖ → check finite → SGD(lr) → after_step
//! ```
//! Under fp16 a non-finite loss or gradient is an overflow, not a fault: the step is skipped
//! and the loss scale halved ([`LossScaler`]); only when the scale falls below 1 does it stop.

use super::Model;
pub use crate::method::StepFault;
use crate::method::{StepContext, StepOutput};
use crate::optim::Optimizer;
use crate::precision::{LossScaler, Precision};
use tch::Tensor;

/// What a finished step gives back.
pub struct StepDone {
    pub out: StepOutput,
    pub loss: f64,
    /// Global L2 norm of the gradient before the update (infinite on a skipped step).
    pub grad_norm: f64,
    /// fp16 only: the step overflowed, was not applied, and halved the loss scale.
    pub skipped: bool,
}

/// A [`StepFault`] at a step of the run.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{fault} at step {step} (epoch {epoch})")]
pub struct FaultAt {
    pub fault: StepFault,
    pub step: u64,
    pub epoch: u64,
}

/// How a run's steps are taken: their precision, the fp16 loss scale ([`LossScaler`], None
/// otherwise), and the micro-batch of exact gradient caching ([`super::grad_cache`]; None: the
/// whole batch at once).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct StepMode {
    pub precision: Precision,
    pub scaler: Option<LossScaler>,
    pub micro_batch: Option<usize>,
}

impl StepMode {
    pub fn new(precision: Precision) -> Self {
        StepMode {
            precision,
            scaler: (precision == Precision::Fp16).then(LossScaler::default),
            micro_batch: None,
        }
    }
}

/// Runs step `ctx.step` at learning rate `ctx.lr` on `views` (and `targets` for methods that
/// use them). In a data-parallel job the gradients of `shared` (every trainable variable, in
/// name order) are summed over the ranks after the backward pass ([`crate::dist`]). A
/// non-finite loss or gradient stops it before the update (under fp16: skips the update and
/// halves the scale): the trainable weights are as they were (state the forward pass updates,
/// such as BatchNorm statistics or DINO's centre, has moved), and the error is a [`StepFault`].
pub fn sgd_step(
    model: &mut Model,
    opt: &mut Optimizer,
    shared: &[Tensor],
    views: &[Tensor],
    targets: Option<&Tensor>,
    ctx: &StepContext,
    mode: &mut StepMode,
) -> anyhow::Result<StepDone> {
    let scale = mode.scaler.map_or(1.0, |s| s.scale);
    opt.zero_grad();
    // backward whatever the loss: a non-finite loss gives a non-finite gradient, and the one
    // host read below (loss and ‖∇‖ together) decides before any update
    let k = views.first().map_or(0, |v| v.size()[0] as usize);
    let out = match mode.micro_batch.filter(|&m| m < k) {
        Some(m) => {
            super::grad_cache::backward(model, m, views, targets, ctx, (mode.precision, scale))?
        }
        None => {
            let (device, method) = (model.vs.device(), &mut model.method);
            let out = crate::precision::training(mode.precision, device, || {
                method.step(views, targets, ctx)
            })?;
            match scale == 1.0 {
                true => out.loss.backward(),
                false => (&out.loss * scale).backward(),
            }
            out
        }
    };
    crate::dist::all_reduce_gradients(shared);
    if scale != 1.0 {
        unscale(shared, scale);
    }
    let (loss, grad_norm) = loss_and_grad_norm(&out.loss, opt);
    if !(loss.is_finite() && grad_norm.is_finite()) {
        if let Some(s) = &mut mode.scaler {
            if s.overflow() {
                opt.zero_grad();
                return Ok(StepDone {
                    out,
                    loss,
                    grad_norm,
                    skipped: true,
                });
            }
            return Err(StepFault::Fp16Overflow { loss }.into());
        }
        return Err(match loss.is_finite() {
            false => StepFault::Loss(loss),
            true => StepFault::Gradient { grad_norm, loss },
        }
        .into());
    }
    if let Some(s) = &mut mode.scaler {
        s.good();
    }
    opt.step(ctx.lr);
    model.method.after_step(ctx);
    Ok(StepDone {
        out,
        loss,
        grad_norm,
        skipped: false,
    })
}

/// The loss and ‖∇‖ read to the host in one copy (one wait for the device per step).
fn loss_and_grad_norm(loss: &Tensor, opt: &Optimizer) -> (f64, f64) {
    let both = match opt.grad_norm_tensor() {
        Some(norm) => Tensor::stack(&[loss.detach().to_kind(tch::Kind::Double), norm], 0),
        None => loss.detach().to_kind(tch::Kind::Double).reshape([1]),
    };
    let v = Vec::<f64>::try_from(both.to_device(tch::Device::Cpu)).unwrap_or_default();
    (
        v.first().copied().unwrap_or(f64::NAN),
        v.get(1).copied().unwrap_or(0.0),
    )
}

/// ∇ ← ∇ / scale for every variable that has a gradient.
fn unscale(shared: &[Tensor], scale: f64) {
    tch::no_grad(|| {
        for t in shared {
            let mut g = t.grad();
            if g.defined() {
                let _ = g.g_mul_scalar_(1.0 / scale);
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::TrainConfig;
    use crate::method::testing::{at, tiny_views};
    use crate::train::build_model;

    fn tiny_model() -> Model {
        let set = [
            "model.width=0.0625",
            "model.crop_size=16",
            "train.threads=1",
        ];
        let set: Vec<String> = set.iter().map(|s| s.to_string()).collect();
        build_model(&TrainConfig::load(None, &set).unwrap(), None, None).unwrap()
    }

    /// A step whose loss is not finite: fp32 stops with a fault; fp16 skips it, halves the
    /// scale and leaves the weights as they were.
    fn poisoned_step(precision: Precision) -> (anyhow::Result<StepDone>, StepMode, bool) {
        let mut model = tiny_model();
        let plan = crate::method::plan::parameter_groups(model.method.as_ref());
        let mut opt = Optimizer::new(
            crate::optim::OptimizerName::Sgd,
            &model.vs,
            &plan,
            crate::optim::Settings {
                momentum: 0.9,
                betas: (0.9, 0.999),
                weight_decay: 0.0,
                trust_coefficient: 0.0,
            },
            0.1,
        );
        let shared: Vec<Tensor> = crate::optim::trainable_by_name(&model.vs)
            .into_iter()
            .map(|(_, t)| t)
            .collect();
        let before: Vec<Tensor> = shared.iter().map(|t| t.copy()).collect();
        let mut views = tiny_views(4, 3);
        views[0] = views[0].fill(f64::INFINITY);
        let mut mixed = StepMode::new(precision);
        let r = sgd_step(
            &mut model,
            &mut opt,
            &shared,
            &views,
            None,
            &at(0, 5),
            &mut mixed,
        );
        let unchanged = shared.iter().zip(&before).all(|(a, b)| a.equal(b));
        (r, mixed, unchanged)
    }

    #[test]
    fn an_fp16_overflow_skips_the_step_and_halves_the_scale() {
        let (r, mixed, unchanged) = poisoned_step(Precision::Fp16);
        let done = r.unwrap();
        assert!(done.skipped && !done.grad_norm.is_finite());
        assert_eq!(mixed.scaler.unwrap().scale, 32768.0);
        assert!(unchanged, "no update on a skipped step");
    }

    #[test]
    fn a_non_finite_loss_in_fp32_is_a_fault_before_the_update() {
        let (r, _, unchanged) = poisoned_step(Precision::Fp32);
        let e = r.err().unwrap();
        assert!(
            matches!(e.downcast_ref::<StepFault>(), Some(StepFault::Loss(_))),
            "{e}"
        );
        assert!(unchanged);
    }
}
