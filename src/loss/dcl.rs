//! Decoupled contrastive loss (Yeh et al. 2022, "Decoupled Contrastive Learning", eq. 6).

use super::{check_pair, check_positive, l2_normalize, LossError};
use tch::{Kind, Tensor};

/// DCL: NT-Xent with the positive removed from the denominator, which removes the
/// negative–positive coupling that makes NT-Xent need large batches:
/// ```text
/// z = [z_a; z_b] (2K rows), u_i = z_i / ‖z_i‖,  s_ij = u_i·u_j / τ,  p(i) = i ± K
/// ℓ_i = −s_{i,p(i)} + log Σ_{k ∉ {i, p(i)}} exp(s_ik)
/// L = 1/(2K) Σ_i ℓ_i
/// ```
/// Unlike NT-Xent it can be negative (a positive closer than every negative gives ℓ < 0).
///
/// # Shapes
/// `z_a`, `z_b`: [K, D], K ≥ 2 (an anchor needs at least one negative) → scalar
pub fn dcl(z_a: &Tensor, z_b: &Tensor, temperature: f64) -> Result<Tensor, LossError> {
    check_pair("z_a", z_a, "z_b", z_b, 2)?;
    check_positive("temperature", temperature)?;
    let k = z_a.size()[0];
    let u = l2_normalize(&Tensor::cat(&[z_a, z_b], 0)); // [2K, D]
    let sim = u.matmul(&u.tr()) / temperature; // [2K, 2K]
    let idx = Tensor::arange(2 * k, (Kind::Int64, u.device()));
    let positives = (&idx + k).remainder(2 * k); // [2K]
    let pos_logit = sim.gather(1, &positives.unsqueeze(1), false).squeeze_dim(1); // [2K]
    let eye = Tensor::eye(2 * k, (Kind::Bool, u.device()));
    let pos_mask = eye.roll([k], [1]); // row i is true at column p(i)
    let negatives = sim.masked_fill(&eye.logical_or(&pos_mask), f64::NEG_INFINITY); // [2K, 2K]
    let lse = negatives.logsumexp([1i64].as_slice(), false); // [2K]
    Ok((lse - pos_logit).mean(z_a.kind()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::loss::testing::{dot, grad_check, randn, to_rows, unit};

    fn naive(za: &Tensor, zb: &Tensor, t: f64) -> f64 {
        let z: Vec<Vec<f64>> = to_rows(&Tensor::cat(&[za, zb], 0))
            .iter()
            .map(|r| unit(r))
            .collect();
        let n = z.len();
        let k = n / 2;
        (0..n)
            .map(|i| {
                let p = (i + k) % n;
                let den: f64 = (0..n)
                    .filter(|&j| j != i && j != p)
                    .map(|j| (dot(&z[i], &z[j]) / t).exp())
                    .sum();
                -((dot(&z[i], &z[p]) / t).exp() / den).ln()
            })
            .sum::<f64>()
            / n as f64
    }

    #[test]
    fn two_pairs_by_hand_and_by_a_naive_loop() {
        // K = 2, a0 = b0 = e1, a1 = b1 = e2: s_pos = 1/τ, the two negatives have cosine 0:
        // ℓ = −1/τ + log 2 for every anchor.
        let t = 0.5;
        let a = crate::loss::testing::rows(&[&[1.0, 0.0], &[0.0, 1.0]]);
        let l = dcl(&a, &a, t).unwrap().double_value(&[]);
        assert!((l - (2f64.ln() - 1.0 / t)).abs() < 1e-12, "{l}");
        let (za, zb) = (randn(&[5, 3], 0), randn(&[5, 3], 1));
        for t in [0.1, 0.5] {
            let got = dcl(&za, &zb, t).unwrap().double_value(&[]);
            let want = naive(&za, &zb, t);
            assert!((got - want).abs() < 1e-10, "τ={t}: {got} vs {want}");
        }
    }

    #[test]
    fn identical_rows_give_ln_2k_minus_2() {
        for k in [2i64, 6] {
            let z = Tensor::ones([k, 4], (Kind::Double, tch::Device::Cpu));
            let l = dcl(&z, &z, 0.2).unwrap().double_value(&[]);
            assert!((l - ((2 * k - 2) as f64).ln()).abs() < 1e-10);
        }
    }

    #[test]
    fn gradients_match_finite_differences() {
        let x = randn(&[8, 3], 2);
        let worst = grad_check(&x, |t| {
            dcl(&t.narrow(0, 0, 4), &t.narrow(0, 4, 4), 0.5).unwrap()
        });
        assert!(worst < 1e-7, "{worst}");
    }

    #[test]
    fn one_pair_has_no_negative_and_is_refused() {
        let z = randn(&[1, 3], 0);
        let e = dcl(&z, &z, 0.5).unwrap_err().to_string();
        assert!(e.contains("[1, 3]") && e.contains("K >= 2"), "{e}");
    }
}
