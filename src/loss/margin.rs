//! The margin contrastive loss of Hadsell, Chopra & LeCun (2006), "Dimensionality Reduction by
//! Learning an Invariant Mapping", eq. (4).

use super::{check_non_negative, check_pair, check_shape, row_distances, LossError};
use tch::{Kind, Tensor};

/// Margin contrastive loss over labelled pairs, averaged over the K pairs:
/// ```text
/// D_k = ‖x_k − x'_k‖₂
/// L = 1/K Σ_k [ (1 − y_k) · ½ D_k²  +  y_k · ½ max(0, m − D_k)² ]
/// ```
/// `y_k = 0` marks a similar pair (pulled together), `y_k = 1` a dissimilar pair (pushed apart
/// until it is at least `m` away; beyond the margin it contributes nothing).
///
/// # Shapes
/// `x`, `x_prime`: [K, D]; `y`: \[K\] of 0/1 (any numeric kind) → scalar
///
/// # Errors
/// Mismatched shapes, K = 0, `y` not \[K\], or a negative margin.
pub fn margin_contrastive(
    x: &Tensor,
    x_prime: &Tensor,
    y: &Tensor,
    margin: f64,
) -> Result<Tensor, LossError> {
    check_pair("x", x, "x_prime", x_prime, 1)?;
    check_shape("y", y, &[x.size()[0]])?;
    check_non_negative("margin", margin)?;
    let y = y.to_kind(x.kind()); // [K]
    let d = row_distances(x, x_prime); // [K]
    let similar = (-&y + 1.0) * d.pow_tensor_scalar(2) * 0.5;
    let dissimilar = &y * (-&d + margin).clamp_min(0.0).pow_tensor_scalar(2) * 0.5;
    Ok((similar + dissimilar).mean(x.kind()))
}

/// Two-view use: row k of `z_a` and `z_b` is a similar pair; `(z_a[k], z_b[k+1 mod K])` is a
/// dissimilar pair. Both kinds count equally: `L = ½ (L_similar + L_dissimilar)`.
///
/// # Shapes
/// `z_a`, `z_b`: [K, D], K ≥ 2 → scalar
pub fn margin_contrastive_two_view(
    z_a: &Tensor,
    z_b: &Tensor,
    margin: f64,
) -> Result<Tensor, LossError> {
    check_pair("z_a", z_a, "z_b", z_b, 2)?;
    let k = z_a.size()[0];
    let shifted = z_b.roll([1], [0]); // row k holds z_b[k−1]: a different image
    let x = Tensor::cat(&[z_a, z_a], 0); // [2K, D]
    let xp = Tensor::cat(&[z_b, &shifted], 0); // [2K, D]
    let y = Tensor::cat(
        &[
            Tensor::zeros([k], (Kind::Float, z_a.device())),
            Tensor::ones([k], (Kind::Float, z_a.device())),
        ],
        0,
    ); // [2K]
    margin_contrastive(&x, &xp, &y, margin)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::loss::testing::{dist, grad_check, randn, rows, to_rows};

    fn labels(v: &[f64]) -> Tensor {
        Tensor::from_slice(v)
    }

    #[test]
    fn three_pairs_by_hand() {
        // similar, D = 5 → ½·25 = 12.5; dissimilar, D = 1 < m = 2 → ½·1 = 0.5;
        // dissimilar, D = 3 ≥ m → 0.  Mean = 13/3.
        let x = rows(&[&[0.0, 0.0], &[1.0, 1.0], &[0.0, 0.0]]);
        let xp = rows(&[&[3.0, 4.0], &[1.0, 2.0], &[0.0, 3.0]]);
        let l = margin_contrastive(&x, &xp, &labels(&[0.0, 1.0, 1.0]), 2.0).unwrap();
        assert!((l.double_value(&[]) - 13.0 / 3.0).abs() < 1e-9);
    }

    #[test]
    fn matches_a_naive_loop() {
        let (x, xp) = (randn(&[7, 3], 0), randn(&[7, 3], 1));
        let y = [0.0, 1.0, 1.0, 0.0, 1.0, 0.0, 1.0];
        let m = 2.5;
        let (a, b) = (to_rows(&x), to_rows(&xp));
        let want = (0..7)
            .map(|k| {
                let d = dist(&a[k], &b[k]);
                (1.0 - y[k]) * 0.5 * d * d + y[k] * 0.5 * (m - d).max(0.0).powi(2)
            })
            .sum::<f64>()
            / 7.0;
        let got = margin_contrastive(&x, &xp, &labels(&y), m).unwrap();
        assert!((got.double_value(&[]) - want).abs() < 1e-10);
    }

    #[test]
    fn closed_forms() {
        let x = randn(&[5, 4], 2);
        // Identical similar pairs cost nothing; identical dissimilar pairs cost ½m² each.
        let zeros = labels(&[0.0; 5]);
        let ones = labels(&[1.0; 5]);
        assert!(
            margin_contrastive(&x, &x, &zeros, 1.5)
                .unwrap()
                .double_value(&[])
                < 1e-10
        );
        let l = margin_contrastive(&x, &x, &ones, 1.5)
            .unwrap()
            .double_value(&[]);
        assert!((l - 0.5 * 1.5 * 1.5).abs() < 1e-5, "{l}");
        // Dissimilar pairs farther apart than the margin cost nothing.
        let far = &x + 100.0;
        assert_eq!(
            margin_contrastive(&x, &far, &ones, 1.5)
                .unwrap()
                .double_value(&[]),
            0.0
        );
    }

    #[test]
    fn gradients_match_finite_differences() {
        let x = randn(&[8, 3], 3); // rows 0..4 = x, 4..8 = x'
        let y = labels(&[0.0, 1.0, 1.0, 0.0]);
        let worst = grad_check(&x, |t| {
            margin_contrastive(&t.narrow(0, 0, 4), &t.narrow(0, 4, 4), &y, 3.0).unwrap()
        });
        assert!(worst < 1e-6, "{worst}");
        let worst = grad_check(&x, |t| {
            margin_contrastive_two_view(&t.narrow(0, 0, 4), &t.narrow(0, 4, 4), 3.0).unwrap()
        });
        assert!(worst < 1e-6, "{worst}");
    }

    #[test]
    fn two_view_form_is_the_mean_of_similar_and_shifted_dissimilar_pairs() {
        let (a, b) = (randn(&[4, 3], 4), randn(&[4, 3], 5));
        let (ra, rb) = (to_rows(&a), to_rows(&b));
        let m = 2.0;
        let mut want = 0.0;
        for k in 0..4 {
            let d = dist(&ra[k], &rb[k]);
            want += 0.5 * d * d;
            let dn = dist(&ra[k], &rb[(k + 3) % 4]);
            want += 0.5 * (m - dn).max(0.0).powi(2);
        }
        want /= 8.0;
        let got = margin_contrastive_two_view(&a, &b, m)
            .unwrap()
            .double_value(&[]);
        assert!((got - want).abs() < 1e-10, "{got} vs {want}");
    }

    #[test]
    fn bad_arguments_are_named() {
        let x = randn(&[4, 3], 0);
        let e = margin_contrastive(&x, &x, &labels(&[0.0; 4]), -1.0)
            .unwrap_err()
            .to_string();
        assert!(e.contains("margin") && e.contains("-1"), "{e}");
        let e = margin_contrastive(&x, &x, &labels(&[0.0; 3]), 1.0)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains('y') && e.contains("[3]") && e.contains("[4]"),
            "{e}"
        );
        let e = margin_contrastive(&x, &randn(&[4, 2], 1), &labels(&[0.0; 4]), 1.0)
            .unwrap_err()
            .to_string();
        assert!(e.contains("[4, 3]") && e.contains("[4, 2]"), "{e}");
    }
}
