//! One training step of [`Trainer::run`](super::Trainer::run):
//! ```text
//! method step (loss) → check finite → zero_grad → backward → all-reduce ∇ (data-parallel)
//!   → ‖∇‖ → check finite → SGD(lr) → after_step
//! ```

use super::Model;
pub use crate::method::StepFault;
use crate::method::{StepContext, StepOutput};
use crate::optim::Optimizer;
use tch::Tensor;

/// What a finished step gives back.
pub struct StepDone {
    pub out: StepOutput,
    pub loss: f64,
    /// Global L2 norm of the gradient before the update.
    pub grad_norm: f64,
}

/// A [`StepFault`] at a step of the run.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{fault} at step {step} (epoch {epoch})")]
pub struct FaultAt {
    pub fault: StepFault,
    pub step: u64,
    pub epoch: u64,
}

/// Runs step `ctx.step` at learning rate `ctx.lr` on `views` (and `targets` for methods that
/// use them). In a data-parallel job the gradients of `shared` (every trainable variable, in
/// name order) are summed over the ranks after the backward pass ([`crate::dist`]). A non-finite loss or gradient stops it before the update: the trainable weights
/// are as they were (state the forward pass updates, such as BatchNorm statistics or DINO's
/// centre, has moved), and the error is a [`StepFault`].
pub fn sgd_step(
    model: &mut Model,
    opt: &mut Optimizer,
    shared: &[Tensor],
    views: &[Tensor],
    targets: Option<&Tensor>,
    ctx: &StepContext,
) -> anyhow::Result<StepDone> {
    let out = model.method.step(views, targets, ctx)?;
    let loss = out.loss.double_value(&[]);
    if !loss.is_finite() {
        return Err(StepFault::Loss(loss).into());
    }
    opt.zero_grad();
    out.loss.backward();
    crate::dist::all_reduce_gradients(shared);
    let grad_norm = opt.grad_norm();
    if !grad_norm.is_finite() {
        return Err(StepFault::Gradient { grad_norm, loss }.into());
    }
    opt.step(ctx.lr);
    model.method.after_step(ctx);
    Ok(StepDone {
        out,
        loss,
        grad_norm,
    })
}
