//! Barlow Twins (Zbontar et al. 2021, "Barlow Twins: Self-Supervised Learning via Redundancy
//! Reduction", eq. 1–2 and Algorithm 1).

use super::{check_non_negative, check_pair, LossError};
use tch::Tensor;

/// Batch-norm epsilon of Algorithm 1's `BatchNorm1d(affine=False)`.
const BN_EPS: f64 = 1e-5;

/// Each column standardised over the batch, as `BatchNorm1d(affine=False)` in training mode:
/// `(z − mean) / sqrt(var + 1e-5)`, biased variance. [N, D] → [N, D]
pub(crate) fn standardize_columns(z: &Tensor) -> Tensor {
    let kind = z.kind();
    let mean = z.mean_dim([0i64].as_slice(), true, kind); // [1, D]
    let var = z.var_correction([0i64].as_slice(), 0, true); // [1, D], biased
    (z - mean) / (var + BN_EPS).sqrt()
}

/// Barlow Twins: the cross-correlation of the two views' standardised embeddings is pushed
/// to the identity:
/// ```text
/// ẑ = standardize_columns(z),  C = ẑ_aᵀ ẑ_b / N                  [D, D]
/// L = Σ_i (1 − C_ii)²  +  λ Σ_i Σ_{j≠i} C_ij²
/// ```
/// The first term makes each dimension invariant to the augmentation, the second
/// decorrelates dimensions (redundancy reduction). The paper uses λ = 5·10⁻³ with D = 8192.
///
/// # Shapes
/// `z_a`, `z_b`: [N, D], N ≥ 2 → scalar
pub fn barlow_twins(z_a: &Tensor, z_b: &Tensor, lambda: f64) -> Result<Tensor, LossError> {
    check_pair("z_a", z_a, "z_b", z_b, 2)?;
    check_non_negative("lambda", lambda)?;
    let n = z_a.size()[0] as f64;
    let kind = z_a.kind();
    let c = standardize_columns(z_a)
        .tr()
        .matmul(&standardize_columns(z_b))
        / n; // [D, D]
    let diag = c.diagonal(0, 0, 1); // [D]
    let on = (&diag - 1.0).pow_tensor_scalar(2).sum(kind);
    let off = c.pow_tensor_scalar(2).sum(kind) - diag.pow_tensor_scalar(2).sum(kind);
    Ok(on + off * lambda)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::loss::testing::{grad_check, randn, rows, to_rows};

    /// Algorithm 1 with plain loops.
    fn naive(a: &Tensor, b: &Tensor, lambda: f64) -> f64 {
        let std = |m: &[Vec<f64>]| -> Vec<Vec<f64>> {
            let (n, d) = (m.len(), m[0].len());
            let mut out = m.to_vec();
            for j in 0..d {
                let mean = m.iter().map(|r| r[j]).sum::<f64>() / n as f64;
                let var = m.iter().map(|r| (r[j] - mean).powi(2)).sum::<f64>() / n as f64;
                for i in 0..n {
                    out[i][j] = (m[i][j] - mean) / (var + BN_EPS).sqrt();
                }
            }
            out
        };
        let (a, b) = (std(&to_rows(a)), std(&to_rows(b)));
        let (n, d) = (a.len(), a[0].len());
        let mut l = 0.0;
        for i in 0..d {
            for j in 0..d {
                let c = a.iter().zip(&b).map(|(ra, rb)| ra[i] * rb[j]).sum::<f64>() / n as f64;
                l += if i == j {
                    (1.0 - c).powi(2)
                } else {
                    lambda * c * c
                };
            }
        }
        l
    }

    #[test]
    fn matches_algorithm_1_by_a_loop() {
        let (a, b) = (randn(&[7, 4], 0), randn(&[7, 4], 1));
        for lambda in [0.0, 5e-3, 1.0] {
            let got = barlow_twins(&a, &b, lambda).unwrap().double_value(&[]);
            let want = naive(&a, &b, lambda);
            assert!((got - want).abs() < 1e-10, "λ={lambda}: {got} vs {want}");
        }
    }

    #[test]
    fn two_samples_by_hand() {
        // N = 2, D = 1: standardised columns are (±1)·(1/√(1 + ε)) up to sign.
        // z_a = (0, 2) → (−1, 1)/√(1+ε'), z_b = (5, 3) → (1, −1)/√(1+ε''): C = −1 (≈), L ≈ 4.
        let a = rows(&[&[0.0], &[2.0]]);
        let b = rows(&[&[5.0], &[3.0]]);
        let l = barlow_twins(&a, &b, 0.5).unwrap().double_value(&[]);
        let c = -1.0 / ((1.0 + BN_EPS) * (1.0 + BN_EPS)).sqrt();
        assert!((l - (1.0 - c) * (1.0 - c)).abs() < 1e-10, "{l}");
    }

    #[test]
    fn identical_decorrelated_views_cost_almost_nothing() {
        // Orthogonal ±1 columns (Hadamard rows): standardised they are orthonormal/√N, C ≈ I.
        let h = rows(&[
            &[1.0, 1.0, 1.0],
            &[1.0, -1.0, 1.0],
            &[1.0, 1.0, -1.0],
            &[1.0, -1.0, -1.0],
        ])
        .narrow(1, 1, 2); // the two zero-mean columns
        let l = barlow_twins(&h, &h, 1.0).unwrap().double_value(&[]);
        assert!(l < 1e-9, "{l}");
        // Same with a view scaled and shifted per column: standardisation removes it.
        let l = barlow_twins(&h, &(&h * 3.0 + 7.0), 1.0)
            .unwrap()
            .double_value(&[]);
        assert!(l < 1e-9, "{l}");
        // Perfectly correlated columns are penalised by λ·(off-diagonal)² = λ·2·1².
        let dup = Tensor::cat(&[h.narrow(1, 0, 1), h.narrow(1, 0, 1)], 1);
        let l = barlow_twins(&dup, &dup, 0.25).unwrap().double_value(&[]);
        assert!((l - 0.5).abs() < 1e-4, "{l}");
    }

    #[test]
    fn gradients_match_finite_differences() {
        let x = randn(&[10, 3], 2);
        let worst = grad_check(&x, |t| {
            barlow_twins(&t.narrow(0, 0, 5), &t.narrow(0, 5, 5), 0.1).unwrap()
        });
        assert!(worst < 1e-6, "{worst}");
    }

    #[test]
    fn bad_arguments_are_named() {
        let z = randn(&[1, 3], 0);
        let e = barlow_twins(&z, &z, 0.1).unwrap_err().to_string();
        assert!(e.contains("[1, 3]") && e.contains("K >= 2"), "{e}");
        let z = randn(&[4, 3], 0);
        let e = barlow_twins(&z, &z, -0.1).unwrap_err().to_string();
        assert!(e.contains("lambda"), "{e}");
    }
}
