//! Losses over embeddings: pure functions of tensors (no config, device or global state
//! inside), each with its formula and paper in its doc comment.

pub mod barlow_twins;
pub mod clip;
pub mod cpc;
pub mod cross_entropy;
pub mod cross_view;
pub mod dcl;
pub mod info_nce;
pub mod koleo;
pub mod margin;
pub mod n_pair;
pub mod nce;
pub mod neg_cosine;
pub mod nt_xent;
pub mod supcon;
pub mod tiled;
pub mod triplet;
pub mod two_view;
pub mod vicreg;

pub use barlow_twins::barlow_twins;
pub use clip::clip_loss;
pub use cross_entropy::cross_entropy;
pub use cross_view::cross_view_loss;
pub use dcl::dcl;
pub use info_nce::{info_nce, info_nce_in_batch};
pub use koleo::koleo;
pub use margin::margin_contrastive;
pub use n_pair::n_pair;
pub use nce::nce;
pub use neg_cosine::negative_cosine;
pub use nt_xent::nt_xent;
pub use supcon::supcon;
pub use tiled::{info_nce_in_batch_tiled, nt_xent_tiled};
pub use triplet::{batch_all_triplet, batch_hard_triplet, triplet};
pub use two_view::TwoViewLoss;
pub use vicreg::{vicreg, vicreg_loss, VicRegParts};

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
    #[error("{what} must be ≥ 0, got {value}")]
    Negative { what: &'static str, value: f64 },
    #[error("{name} is {shape:?} but must be {expected}")]
    WrongShape {
        name: &'static str,
        shape: Vec<i64>,
        expected: String,
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
    check_rows(a_name, a, min_rows)?;
    check_rows(b_name, b, min_rows)?;
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

/// Checks that `t` is `[K, D]` with `K >= min_rows` and `D >= 1`.
pub(crate) fn check_rows(
    name: &'static str,
    t: &tch::Tensor,
    min_rows: i64,
) -> Result<(), LossError> {
    let s = t.size();
    if s.len() != 2 || s[0] < min_rows || s[1] < 1 {
        return Err(LossError::BadShape {
            name,
            shape: s,
            min_rows,
        });
    }
    Ok(())
}

/// Checks that `t` has exactly the shape `want`.
pub(crate) fn check_shape(
    name: &'static str,
    t: &tch::Tensor,
    want: &[i64],
) -> Result<(), LossError> {
    if t.size() != want {
        return Err(LossError::WrongShape {
            name,
            shape: t.size(),
            expected: format!("{want:?}"),
        });
    }
    Ok(())
}

/// Checks that a margin-like value is finite and ≥ 0.
pub(crate) fn check_non_negative(what: &'static str, value: f64) -> Result<(), LossError> {
    if value.is_finite() && value >= 0.0 {
        Ok(())
    } else {
        Err(LossError::Negative { what, value })
    }
}

/// Row-wise L2 normalisation `u_i = z_i / max(‖z_i‖, 1e-12)`: [N, D] → [N, D].
pub fn l2_normalize(z: &tch::Tensor) -> tch::Tensor {
    z / z.norm_scalaropt_dim(2, [1], true).clamp_min(1e-12)
}

/// Euclidean distances between the rows of `a` [N, D] and `b` [M, D]: [N, M].
/// `D_ij = sqrt(max(‖a_i‖² + ‖b_j‖² − 2 a_i·b_j, 1e-12))`; the floor keeps the gradient finite
/// at zero distance (it is 0 there).
pub(crate) fn pairwise_distances(a: &tch::Tensor, b: &tch::Tensor) -> tch::Tensor {
    let kind = a.kind();
    let aa = a
        .pow_tensor_scalar(2)
        .sum_dim_intlist([1i64].as_slice(), true, kind); // [N, 1]
    let bb = b
        .pow_tensor_scalar(2)
        .sum_dim_intlist([1i64].as_slice(), true, kind); // [M, 1]
    let d2 = aa + bb.tr() - a.matmul(&b.tr()) * 2.0; // [N, M]
    d2.clamp_min(1e-12).sqrt()
}

/// Euclidean distance of matching rows: `‖a_i − b_i‖`, [K, D] × [K, D] → \[K\], floored as
/// [`pairwise_distances`].
pub(crate) fn row_distances(a: &tch::Tensor, b: &tch::Tensor) -> tch::Tensor {
    (a - b)
        .pow_tensor_scalar(2)
        .sum_dim_intlist([1i64].as_slice(), false, a.kind())
        .clamp_min(1e-12)
        .sqrt()
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

    /// A [K, D] f64 tensor from rows.
    pub fn rows(v: &[&[f64]]) -> Tensor {
        let d = v[0].len() as i64;
        let flat: Vec<f64> = v.iter().flat_map(|r| r.iter().copied()).collect();
        Tensor::from_slice(&flat).view([v.len() as i64, d])
    }

    /// Standard normal f64 [shape], seeded.
    pub fn randn(shape: &[i64], seed: i64) -> Tensor {
        tch::manual_seed(seed);
        Tensor::randn(shape, (Kind::Double, tch::Device::Cpu))
    }

    /// Plain f64 rows of a 2-D tensor.
    pub fn to_rows(t: &Tensor) -> Vec<Vec<f64>> {
        let t = t.to_kind(Kind::Double);
        let (n, d) = (t.size()[0], t.size()[1]);
        (0..n)
            .map(|i| (0..d).map(|j| t.double_value(&[i, j])).collect())
            .collect()
    }

    pub fn dot(a: &[f64], b: &[f64]) -> f64 {
        a.iter().zip(b).map(|(x, y)| x * y).sum()
    }

    pub fn dist(a: &[f64], b: &[f64]) -> f64 {
        a.iter()
            .zip(b)
            .map(|(x, y)| (x - y) * (x - y))
            .sum::<f64>()
            .sqrt()
    }

    pub fn unit(a: &[f64]) -> Vec<f64> {
        let n = dot(a, a).sqrt();
        a.iter().map(|x| x / n).collect()
    }

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
