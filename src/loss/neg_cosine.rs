//! Negative cosine similarity, the loss of BYOL (Grill et al. 2020, eq. 2, up to a constant)
//! and SimSiam (Chen & He 2021, eq. 1).

use super::{check_pair, l2_normalize, LossError};
use tch::Tensor;

/// Negative cosine similarity of matching rows:
/// ```text
/// D(p, z) = −1/K Σ_k (p_k / ‖p_k‖) · (z_k / ‖z_k‖)
/// ```
/// Stop-gradient is the caller's: SimSiam writes `½ D(p_a, z_b.detach()) + ½ D(p_b, z_a.detach())`.
/// (BYOL's `2 − 2·cos` is `2 + 2·D`: the same gradients up to a factor 2.)
///
/// # Shapes
/// `p`, `z`: [K, D] → scalar in [−1, 1]
pub fn negative_cosine(p: &Tensor, z: &Tensor) -> Result<Tensor, LossError> {
    check_pair("p", p, "z", z, 1)?;
    let cos =
        (l2_normalize(p) * l2_normalize(z)).sum_dim_intlist([1i64].as_slice(), false, p.kind()); // [K]
    Ok(-cos.mean(p.kind()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::loss::testing::{dot, grad_check, randn, rows, to_rows, unit};

    #[test]
    fn two_rows_by_hand_and_by_a_loop() {
        // cos((1,0),(1,1)) = 1/√2, cos((0,2),(0,−1)) = −1: D = −(1/√2 − 1)/2
        let p = rows(&[&[1.0, 0.0], &[0.0, 2.0]]);
        let z = rows(&[&[1.0, 1.0], &[0.0, -1.0]]);
        let want = -(0.5f64.sqrt() - 1.0) / 2.0;
        assert!((negative_cosine(&p, &z).unwrap().double_value(&[]) - want).abs() < 1e-12);
        let (p, z) = (randn(&[6, 4], 0), randn(&[6, 4], 1));
        let (rp, rz) = (to_rows(&p), to_rows(&z));
        let want = -(0..6)
            .map(|k| dot(&unit(&rp[k]), &unit(&rz[k])))
            .sum::<f64>()
            / 6.0;
        assert!((negative_cosine(&p, &z).unwrap().double_value(&[]) - want).abs() < 1e-12);
    }

    #[test]
    fn aligned_opposite_and_scaled_rows() {
        let p = randn(&[5, 3], 2);
        assert!((negative_cosine(&p, &(&p * 4.0)).unwrap().double_value(&[]) + 1.0).abs() < 1e-12);
        assert!((negative_cosine(&p, &(-&p)).unwrap().double_value(&[]) - 1.0).abs() < 1e-12);
    }

    #[test]
    fn gradients_match_finite_differences_and_stop_gradient_is_respected() {
        let x = randn(&[8, 3], 3);
        let worst = grad_check(&x, |t| {
            negative_cosine(&t.narrow(0, 0, 4), &t.narrow(0, 4, 4)).unwrap()
        });
        assert!(worst < 1e-8, "{worst}");
        let p = randn(&[4, 3], 4).set_requires_grad(true);
        let z = randn(&[4, 3], 5).set_requires_grad(true);
        negative_cosine(&p, &z.detach()).unwrap().backward();
        assert!(p.grad().defined() && !z.grad().defined());
    }

    #[test]
    fn mismatched_shapes_are_named() {
        let e = negative_cosine(&randn(&[4, 3], 0), &randn(&[4, 2], 0))
            .unwrap_err()
            .to_string();
        assert!(e.contains("[4, 3]") && e.contains("[4, 2]"), "{e}");
    }
}
