//! Losses over embeddings: pure functions of tensors (no config, device or global state
//! inside), each with its formula and paper in its doc comment.

pub mod nt_xent;

pub use nt_xent::nt_xent;

use thiserror::Error;

/// What a loss refuses: each message names the value or the shapes.
#[derive(Debug, Error, PartialEq)]
pub enum LossError {
    #[error("{what} must be > 0, got {value}")]
    NotPositive { what: &'static str, value: f64 },
    #[error(
        "{a_name} is {a_shape:?} but {b_name} is {b_shape:?}: they must have the same shape [K, D]"
    )]
    ShapeMismatch {
        a_name: &'static str,
        a_shape: Vec<i64>,
        b_name: &'static str,
        b_shape: Vec<i64>,
    },
    #[error("{name} must be a 2-D [K, D] tensor with K >= {min_rows}, got {shape:?}")]
    BadShape {
        name: &'static str,
        shape: Vec<i64>,
        min_rows: i64,
    },
}

/// Checks that `a` and `b` are both `[K, D]` with `K >= min_rows`.
pub(crate) fn check_pair(
    a_name: &'static str,
    a: &tch::Tensor,
    b_name: &'static str,
    b: &tch::Tensor,
    min_rows: i64,
) -> Result<(), LossError> {
    for (name, t) in [(a_name, a), (b_name, b)] {
        let s = t.size();
        if s.len() != 2 || s[0] < min_rows || s[1] < 1 {
            return Err(LossError::BadShape {
                name,
                shape: s,
                min_rows,
            });
        }
    }
    if a.size() != b.size() {
        return Err(LossError::ShapeMismatch {
            a_name,
            a_shape: a.size(),
            b_name,
            b_shape: b.size(),
        });
    }
    Ok(())
}

/// Checks that a temperature-like value is finite and > 0.
pub(crate) fn check_positive(what: &'static str, value: f64) -> Result<(), LossError> {
    if value.is_finite() && value > 0.0 {
        Ok(())
    } else {
        Err(LossError::NotPositive { what, value })
    }
}

#[cfg(test)]
pub(crate) mod testing {
    //! Helpers for the loss tests: finite differences against autodiff.
    use tch::{Kind, Tensor};

    /// Max |autodiff − central finite difference| of `f` at `x` (f64), over every element.
    pub fn grad_check(x: &Tensor, f: impl Fn(&Tensor) -> Tensor) -> f64 {
        let x = x.to_kind(Kind::Double).detach().set_requires_grad(true);
        let y = f(&x);
        y.backward();
        let g = x.grad();
        let flat = x.detach().view(-1);
        let n = flat.size()[0];
        let eps = 1e-6;
        let mut worst: f64 = 0.0;
        for i in 0..n {
            let bump = |d: f64| {
                let xp = flat.copy();
                let _ = xp.get(i).fill_(flat.double_value(&[i]) + d);
                f(&xp.view(x.size().as_slice())).double_value(&[])
            };
            let numeric = (bump(eps) - bump(-eps)) / (2.0 * eps);
            let analytic = g.view(-1).double_value(&[i]);
            worst = worst.max((numeric - analytic).abs());
        }
        worst
    }
}
