//! The multi-class N-pair loss of Sohn (2016), "Improved Deep Metric Learning with Multi-class
//! N-pair Loss Objective", eq. (6) with the efficient batch construction of §3.2.

use super::{check_non_negative, check_pair, LossError};
use tch::{Kind, Tensor};

/// N-pair loss: N pairs (f_i, f_i⁺) of N different classes; each anchor's positive is its own
/// f_i⁺ and the other N−1 positives are its negatives:
/// ```text
/// L = 1/N Σ_i log(1 + Σ_{j≠i} exp(f_i·f_j⁺ − f_i·f_i⁺))  +  λ/N Σ_i (‖f_i‖² + ‖f_i⁺‖²)
/// ```
/// (the first term is the cross-entropy of the logits `f·f⁺ᵀ` with target i; Sohn regularises
/// the embedding norms with λ = 0.002 instead of normalising them.)
///
/// # Shapes
/// `anchors`, `positives`: [N, D], N ≥ 1 → scalar
pub fn n_pair(anchors: &Tensor, positives: &Tensor, l2_reg: f64) -> Result<Tensor, LossError> {
    check_pair("anchors", anchors, "positives", positives, 1)?;
    check_non_negative("l2_reg", l2_reg)?;
    let n = anchors.size()[0];
    let kind = anchors.kind();
    let logits = anchors.matmul(&positives.tr()); // [N, N]
    let targets = Tensor::arange(n, (Kind::Int64, anchors.device()));
    let ce = logits.log_softmax(-1, kind).nll_loss(&targets);
    let norms = (anchors.pow_tensor_scalar(2).sum(kind) + positives.pow_tensor_scalar(2).sum(kind))
        / n as f64;
    Ok(ce + norms * l2_reg)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::loss::testing::{dot, grad_check, randn, rows, to_rows};

    #[test]
    fn two_pairs_by_hand() {
        // f1·f1⁺ = 1, f1·f2⁺ = 0, f2·f2⁺ = 2, f2·f1⁺ = 0:
        // L = ½[log(1 + e^{−1}) + log(1 + e^{−2})]
        let f = rows(&[&[1.0, 0.0], &[0.0, 1.0]]);
        let fp = rows(&[&[1.0, 0.0], &[0.0, 2.0]]);
        let want = 0.5 * ((1.0 + (-1.0f64).exp()).ln() + (1.0 + (-2.0f64).exp()).ln());
        let got = n_pair(&f, &fp, 0.0).unwrap().double_value(&[]);
        assert!((got - want).abs() < 1e-12, "{got} vs {want}");
        // the regulariser: λ/N Σ ‖·‖² = 0.1/2 · (1 + 1 + 1 + 4)
        let got = n_pair(&f, &fp, 0.1).unwrap().double_value(&[]);
        assert!((got - want - 0.35).abs() < 1e-12);
    }

    #[test]
    fn matches_a_naive_loop() {
        let (f, fp) = (randn(&[6, 4], 0), randn(&[6, 4], 1));
        let (a, p) = (to_rows(&f), to_rows(&fp));
        let want = (0..6)
            .map(|i| {
                let s: f64 = (0..6)
                    .filter(|&j| j != i)
                    .map(|j| (dot(&a[i], &p[j]) - dot(&a[i], &p[i])).exp())
                    .sum();
                (1.0 + s).ln()
            })
            .sum::<f64>()
            / 6.0;
        let got = n_pair(&f, &fp, 0.0).unwrap().double_value(&[]);
        assert!((got - want).abs() < 1e-10);
    }

    #[test]
    fn equal_logits_give_log_n() {
        // All dot products equal → every anchor is a uniform guess among N: log N.
        for n in [2i64, 7] {
            let z = Tensor::ones([n, 3], (Kind::Double, tch::Device::Cpu));
            let l = n_pair(&z, &z, 0.0).unwrap().double_value(&[]);
            assert!((l - (n as f64).ln()).abs() < 1e-12);
        }
    }

    #[test]
    fn gradients_match_finite_differences() {
        let x = randn(&[10, 3], 2);
        let worst = grad_check(&x, |t| {
            n_pair(&t.narrow(0, 0, 5), &t.narrow(0, 5, 5), 0.01).unwrap()
        });
        assert!(worst < 1e-7, "{worst}");
    }

    #[test]
    fn bad_arguments_are_named() {
        let e = n_pair(&randn(&[3, 2], 0), &randn(&[4, 2], 0), 0.0)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("anchors") && e.contains("[3, 2]") && e.contains("[4, 2]"),
            "{e}"
        );
        let e = n_pair(&randn(&[3, 2], 0), &randn(&[3, 2], 0), -1.0)
            .unwrap_err()
            .to_string();
        assert!(e.contains("l2_reg"), "{e}");
    }
}
