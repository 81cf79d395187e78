//! NT-Xent, the normalised temperature-scaled cross-entropy of SimCLR.

use super::{check_pair, check_positive, LossError};
use tch::{Kind, Tensor};

/// NT-Xent (SimCLR, Chen et al. 2020, arXiv:2002.05709), eq. (1), averaged over all 2K anchors:
/// ```text
/// z = [z_a; z_b] (2K rows), u_i = z_i / ‖z_i‖,  s_ij = u_i·u_j / τ
/// ℓ(i, p) = −log( exp(s_ip) / Σ_{k≠i} exp(s_ik) )     p = the other view of i
/// L = 1/(2K) Σ_k [ℓ(k, K+k) + ℓ(K+k, k)]
/// ```
/// Every other view in the batch (2K − 2 of them) is a negative. The same value as lightly's
/// `NTXentLoss(temperature)` without a memory bank.
///
/// # Shapes
/// `z_a`, `z_b`: [K, D], row k of each is a positive pair, K ≥ 1 → scalar.
///
/// # Errors
/// Mismatched or non-2-D shapes, K = 0, or τ ≤ 0.
pub fn nt_xent(z_a: &Tensor, z_b: &Tensor, temperature: f64) -> Result<Tensor, LossError> {
    check_pair("z_a", z_a, "z_b", z_b, 1)?;
    check_positive("temperature", temperature)?;
    let k = z_a.size()[0];
    let z = Tensor::cat(&[z_a, z_b], 0); // [2K, D]
    let u = &z / z.norm_scalaropt_dim(2, [1], true).clamp_min(1e-12); // [2K, D]
    let sim = u.matmul(&u.tr()) / temperature; // [2K, 2K]
                                               // An anchor is never its own negative: −∞ on the diagonal removes it from the softmax.
    let eye = Tensor::eye(2 * k, (Kind::Bool, z.device()));
    let logits = sim.masked_fill(&eye, f64::NEG_INFINITY); // [2K, 2K]
    let idx = Tensor::arange(2 * k, (Kind::Int64, z.device()));
    let positives = (idx + k).remainder(2 * k); // [2K]: i ↔ i ± K
                                                // Cross-entropy in the inputs' precision (tch's cross_entropy_for_logits casts to f32).
    Ok(logits.log_softmax(-1, z.kind()).nll_loss(&positives))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::loss::testing::grad_check;

    fn rows(v: &[&[f64]]) -> Tensor {
        let d = v[0].len() as i64;
        let flat: Vec<f64> = v.iter().flat_map(|r| r.iter().copied()).collect();
        Tensor::from_slice(&flat).view([v.len() as i64, d])
    }

    /// A naive loop over anchors, written from eq. (1) with plain f64 arithmetic.
    fn naive(za: &[&[f64]], zb: &[&[f64]], t: f64) -> f64 {
        let z: Vec<Vec<f64>> = za
            .iter()
            .chain(zb.iter())
            .map(|r| {
                let n = r.iter().map(|x| x * x).sum::<f64>().sqrt();
                r.iter().map(|x| x / n).collect()
            })
            .collect();
        let n = z.len();
        let k = n / 2;
        let dot = |a: &Vec<f64>, b: &Vec<f64>| a.iter().zip(b).map(|(x, y)| x * y).sum::<f64>();
        let mut total = 0.0;
        for i in 0..n {
            let p = (i + k) % n;
            let denom: f64 = (0..n)
                .filter(|&j| j != i)
                .map(|j| (dot(&z[i], &z[j]) / t).exp())
                .sum();
            total += -((dot(&z[i], &z[p]) / t).exp() / denom).ln();
        }
        total / n as f64
    }

    #[test]
    fn matches_a_hand_written_loop() {
        let za: &[&[f64]] = &[&[1.0, 0.0, 2.0], &[0.5, -1.0, 0.0], &[0.1, 0.2, 0.3]];
        let zb: &[&[f64]] = &[&[0.9, 0.1, 1.5], &[0.0, -1.0, 0.5], &[-0.3, 0.2, 0.1]];
        for t in [0.1, 0.5, 1.0] {
            let got = nt_xent(&rows(za), &rows(zb), t).unwrap().double_value(&[]);
            let want = naive(za, zb, t);
            assert!((got - want).abs() < 1e-10, "τ={t}: {got} vs {want}");
        }
    }

    #[test]
    fn two_samples_by_hand() {
        // K = 1: the only other view is the positive, so s = 1 and L = 0 whatever the inputs.
        let l = nt_xent(&rows(&[&[1.0, 2.0]]), &rows(&[&[-3.0, 0.5]]), 0.5).unwrap();
        assert!(l.double_value(&[]).abs() < 1e-12);
        // K = 2, orthogonal unit vectors a0 ⟂ a1, positives identical: cosines are 1 (positive)
        // and 0, 0 (negatives); ℓ = −log(e^{1/τ} / (e^{1/τ} + 2)) for every anchor.
        let t = 0.5f64;
        let a = rows(&[&[1.0, 0.0], &[0.0, 1.0]]);
        let l = nt_xent(&a, &a, t).unwrap().double_value(&[]);
        let want = -((1.0 / t).exp() / ((1.0 / t).exp() + 2.0)).ln();
        assert!((l - want).abs() < 1e-12, "{l} vs {want}");
    }

    #[test]
    fn identical_rows_give_ln_2k_minus_1() {
        for k in [2i64, 5, 16] {
            let z = Tensor::ones([k, 8], (Kind::Double, tch::Device::Cpu));
            let l = nt_xent(&z, &z, 0.3).unwrap().double_value(&[]);
            let want = ((2 * k - 1) as f64).ln();
            assert!((l - want).abs() < 1e-10, "K={k}: {l} vs {want}");
        }
    }

    #[test]
    fn symmetric_in_the_views_and_scale_invariant() {
        tch::manual_seed(0);
        let a = Tensor::randn([6, 4], (Kind::Double, tch::Device::Cpu));
        let b = Tensor::randn([6, 4], (Kind::Double, tch::Device::Cpu));
        let l = nt_xent(&a, &b, 0.2).unwrap().double_value(&[]);
        let swapped = nt_xent(&b, &a, 0.2).unwrap().double_value(&[]);
        let scaled = nt_xent(&(&a * 3.0), &(&b * 0.5), 0.2)
            .unwrap()
            .double_value(&[]);
        assert!((l - swapped).abs() < 1e-12);
        assert!((l - scaled).abs() < 1e-12);
    }

    #[test]
    fn gradients_match_finite_differences() {
        tch::manual_seed(1);
        let x = Tensor::randn([8, 5], (Kind::Double, tch::Device::Cpu)); // rows 0..4 = z_a, 4..8 = z_b
        let worst = grad_check(&x, |x| {
            let (a, b) = (x.narrow(0, 0, 4), x.narrow(0, 4, 4));
            nt_xent(&a, &b, 0.5).unwrap()
        });
        assert!(worst < 1e-7, "max gradient error {worst}");
    }

    #[test]
    fn bad_arguments_are_named() {
        let a = Tensor::zeros([4, 3], (Kind::Float, tch::Device::Cpu));
        let b = Tensor::zeros([4, 2], (Kind::Float, tch::Device::Cpu));
        let e = nt_xent(&a, &b, 0.5).unwrap_err().to_string();
        assert!(e.contains("[4, 3]") && e.contains("[4, 2]"), "{e}");
        let e = nt_xent(&a, &a, 0.0).unwrap_err().to_string();
        assert!(e.contains("temperature") && e.contains('0'), "{e}");
        let empty = Tensor::zeros([0, 3], (Kind::Float, tch::Device::Cpu));
        assert!(matches!(
            nt_xent(&empty, &empty, 0.5),
            Err(LossError::BadShape { .. })
        ));
        let flat = Tensor::zeros([4], (Kind::Float, tch::Device::Cpu));
        assert!(matches!(
            nt_xent(&flat, &flat, 0.5),
            Err(LossError::BadShape { .. })
        ));
    }
}
