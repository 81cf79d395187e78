//! Why a training step stops before changing any weight: a method's step reports a part of
//! its objective that went non-finite with it, and the trainer its loss and gradient.

/// Why a step stopped before changing any weight.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum StepFault {
    #[error("the loss became {0}")]
    Loss(f64),
    /// A part of the method's objective that is not the returned loss (the context encoder's
    /// discriminator loss).
    #[error("the {what} became {value}")]
    Part { what: &'static str, value: f64 },
    #[error("the gradient became non-finite ({grad_norm}) with a finite loss {loss}")]
    Gradient { grad_norm: f64, loss: f64 },
    /// fp16 kept overflowing until the loss scale fell below 1 (loss: the last step's).
    #[error("fp16 overflowed at every loss scale down to 1 (loss {loss})")]
    Fp16Overflow { loss: f64 },
}
