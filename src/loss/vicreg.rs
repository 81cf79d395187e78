//! VICReg (Bardes, Ponce & LeCun 2022, "VICReg: Variance-Invariance-Covariance Regularization
//! for Self-Supervised Learning", eq. 1–6), as three named parts.

use super::{check_non_negative, check_pair, LossError};
use tch::Tensor;

/// The ε inside the standard deviation of the variance term (the paper's code uses 1e-4).
const STD_EPS: f64 = 1e-4;

/// The three terms of VICReg, unweighted.
pub struct VicRegParts {
    /// `1/(N·D) Σ ‖z_a − z_b‖²` (mean squared error of the two views).
    pub invariance: Tensor,
    /// `½ [v(z_a) + v(z_b)]`, `v(z) = 1/D Σ_j max(0, γ − sqrt(Var(z_·j) + ε))`, γ = 1.
    pub variance: Tensor,
    /// `c(z_a) + c(z_b)`, `c(z) = 1/D Σ_{i≠j} Cov(z)_ij²`.
    pub covariance: Tensor,
}

impl VicRegParts {
    /// `λ·invariance + μ·variance + ν·covariance` (the paper: λ = μ = 25, ν = 1).
    pub fn weighted(&self, lambda: f64, mu: f64, nu: f64) -> Tensor {
        &self.invariance * lambda + &self.variance * mu + &self.covariance * nu
    }
}

fn variance_term(z: &Tensor) -> Tensor {
    let std = (z.var_correction([0i64].as_slice(), 1, false) + STD_EPS).sqrt(); // [D]
    (-std + 1.0).relu().mean(z.kind())
}

fn covariance_term(z: &Tensor) -> Tensor {
    let (n, d) = (z.size()[0] as f64, z.size()[1] as f64);
    let kind = z.kind();
    let c = z - z.mean_dim([0i64].as_slice(), true, kind); // [N, D]
    let cov = c.tr().matmul(&c) / (n - 1.0); // [D, D]
    let off =
        cov.pow_tensor_scalar(2).sum(kind) - cov.diagonal(0, 0, 1).pow_tensor_scalar(2).sum(kind);
    off / d
}

/// VICReg's three terms (unbiased variance and covariance over the batch, as the paper's code).
///
/// # Shapes
/// `z_a`, `z_b`: [N, D], N ≥ 2 → three scalars
pub fn vicreg(z_a: &Tensor, z_b: &Tensor) -> Result<VicRegParts, LossError> {
    check_pair("z_a", z_a, "z_b", z_b, 2)?;
    Ok(VicRegParts {
        invariance: (z_a - z_b).pow_tensor_scalar(2).mean(z_a.kind()),
        variance: (variance_term(z_a) + variance_term(z_b)) * 0.5,
        covariance: covariance_term(z_a) + covariance_term(z_b),
    })
}

/// The weighted VICReg loss, checking the weights.
pub fn vicreg_loss(
    z_a: &Tensor,
    z_b: &Tensor,
    lambda: f64,
    mu: f64,
    nu: f64,
) -> Result<Tensor, LossError> {
    check_non_negative("vicreg lambda (invariance weight)", lambda)?;
    check_non_negative("vicreg mu (variance weight)", mu)?;
    check_non_negative("vicreg nu (covariance weight)", nu)?;
    Ok(vicreg(z_a, z_b)?.weighted(lambda, mu, nu))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::loss::testing::{grad_check, randn, rows, to_rows};
    use tch::Kind;

    fn naive(a: &[Vec<f64>], b: &[Vec<f64>]) -> (f64, f64, f64) {
        let (n, d) = (a.len(), a[0].len());
        let inv = (0..n)
            .map(|i| (0..d).map(|j| (a[i][j] - b[i][j]).powi(2)).sum::<f64>())
            .sum::<f64>()
            / (n * d) as f64;
        let stats = |m: &[Vec<f64>]| {
            let mean: Vec<f64> = (0..d)
                .map(|j| m.iter().map(|r| r[j]).sum::<f64>() / n as f64)
                .collect();
            let cov = |i: usize, j: usize| {
                m.iter()
                    .map(|r| (r[i] - mean[i]) * (r[j] - mean[j]))
                    .sum::<f64>()
                    / (n - 1) as f64
            };
            let var = (0..d)
                .map(|j| (1.0 - (cov(j, j) + STD_EPS).sqrt()).max(0.0))
                .sum::<f64>()
                / d as f64;
            let mut off = 0.0;
            for i in 0..d {
                for j in 0..d {
                    if i != j {
                        off += cov(i, j).powi(2);
                    }
                }
            }
            (var, off / d as f64)
        };
        let ((va, ca), (vb, cb)) = (stats(a), stats(b));
        (inv, 0.5 * (va + vb), ca + cb)
    }

    #[test]
    fn parts_match_a_naive_loop() {
        let (a, b) = (randn(&[6, 3], 0) * 0.5, randn(&[6, 3], 1) * 0.5);
        let p = vicreg(&a, &b).unwrap();
        let (inv, var, cov) = naive(&to_rows(&a), &to_rows(&b));
        assert!((p.invariance.double_value(&[]) - inv).abs() < 1e-10);
        assert!((p.variance.double_value(&[]) - var).abs() < 1e-10);
        assert!((p.covariance.double_value(&[]) - cov).abs() < 1e-10);
        assert!(var > 0.0 && cov > 0.0, "the case must exercise every term");
        let total = vicreg_loss(&a, &b, 25.0, 25.0, 1.0)
            .unwrap()
            .double_value(&[]);
        assert!((total - (25.0 * inv + 25.0 * var + cov)).abs() < 1e-9);
    }

    #[test]
    fn two_samples_by_hand() {
        // N = 2, D = 1: a = (0, 1), b = (0, 3). invariance = (0 + 4)/2 = 2;
        // Var(a) = ½ → std ≈ 0.7072, Var(b) = 2 → std ≈ 1.414 (no penalty);
        // variance = ½ (1 − √(½ + ε)); covariance = 0 (one dimension).
        let a = rows(&[&[0.0], &[1.0]]);
        let b = rows(&[&[0.0], &[3.0]]);
        let p = vicreg(&a, &b).unwrap();
        assert!((p.invariance.double_value(&[]) - 2.0).abs() < 1e-12);
        let want = 0.5 * (1.0 - (0.5 + STD_EPS).sqrt());
        assert!((p.variance.double_value(&[]) - want).abs() < 1e-12);
        assert_eq!(p.covariance.double_value(&[]), 0.0);
    }

    #[test]
    fn identical_spread_decorrelated_views_cost_nothing_and_collapse_costs_the_variance() {
        // ±2 orthogonal columns: std ≥ 1, zero covariance, identical views → all parts 0.
        let h = rows(&[&[2.0, 2.0], &[-2.0, 2.0], &[2.0, -2.0], &[-2.0, -2.0]]);
        let p = vicreg(&h, &h).unwrap();
        for t in [&p.invariance, &p.variance, &p.covariance] {
            assert!(t.double_value(&[]).abs() < 1e-12);
        }
        // Complete collapse: std = √ε in every dimension → variance = 1 − √ε.
        let c = Tensor::ones([4, 3], (Kind::Double, tch::Device::Cpu));
        let v = vicreg(&c, &c).unwrap().variance.double_value(&[]);
        assert!((v - (1.0 - STD_EPS.sqrt())).abs() < 1e-12);
    }

    #[test]
    fn gradients_match_finite_differences() {
        let x = randn(&[10, 3], 2) * 0.5;
        let worst = grad_check(&x, |t| {
            vicreg_loss(&t.narrow(0, 0, 5), &t.narrow(0, 5, 5), 25.0, 25.0, 1.0).unwrap()
        });
        assert!(worst < 1e-5, "{worst}");
    }

    #[test]
    fn bad_arguments_are_named() {
        let z = randn(&[4, 3], 0);
        let e = vicreg_loss(&z, &randn(&[4, 2], 0), 1.0, 1.0, 1.0)
            .unwrap_err()
            .to_string();
        assert!(e.contains("[4, 3]") && e.contains("[4, 2]"), "{e}");
        let e = vicreg_loss(&z, &z, 1.0, -2.0, 1.0).unwrap_err().to_string();
        assert!(e.contains("mu") && e.contains("-2"), "{e}");
    }
}
