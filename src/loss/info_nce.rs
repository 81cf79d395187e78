//! InfoNCE (van den Oord, Li & Vinyals 2018, "Representation Learning with Contrastive
//! Predictive Coding", eq. 4): pick the positive among negatives given a context.

use super::{check_pair, check_positive, LossError};
use tch::{Kind, Tensor};

/// InfoNCE with explicit negatives. For each context (query) q_b, the score of a candidate k is
/// `f(k, q) = exp(q·k / τ)` (pass L2-normalised rows for cosine scores, as MoCo does; CPC's
/// bilinear `zᵀ W c` is `q = W c`):
/// ```text
/// L = −1/B Σ_b log( exp(q_b·k⁺_b/τ) / (exp(q_b·k⁺_b/τ) + Σ_n exp(q_b·k⁻_n/τ)) )
/// ```
/// # Shapes
/// `query`, `positive`: [B, D]; `negatives`: [M, D] shared by every query (a MoCo queue) or
/// [B, N, D] per query → scalar
pub fn info_nce(
    query: &Tensor,
    positive: &Tensor,
    negatives: &Tensor,
    temperature: f64,
) -> Result<Tensor, LossError> {
    check_pair("query", query, "positive", positive, 1)?;
    check_positive("temperature", temperature)?;
    let (b, d) = (query.size()[0], query.size()[1]);
    let neg_logits = match negatives.size().as_slice() {
        [m, dn] if *dn == d && *m >= 1 => query.matmul(&negatives.tr()), // [B, M]
        [bn, n, dn] if *bn == b && *dn == d && *n >= 1 => {
            negatives.bmm(&query.unsqueeze(2)).squeeze_dim(2) // [B, N]
        }
        _ => {
            return Err(LossError::WrongShape {
                name: "negatives",
                shape: negatives.size(),
                expected: format!("[M, {d}] (shared) or [{b}, N, {d}] (per query)"),
            })
        }
    };
    let pos_logits = (query * positive).sum_dim_intlist([1i64].as_slice(), true, query.kind()); // [B, 1]
    let logits = Tensor::cat(&[pos_logits, neg_logits], 1) / temperature; // [B, 1 + N]
    let targets = Tensor::zeros([b], (Kind::Int64, query.device()));
    Ok(logits.log_softmax(-1, query.kind()).nll_loss(&targets))
}

/// InfoNCE with in-batch negatives: query b's positive is key b, the other B−1 keys are its
/// negatives (one direction of CLIP's loss):
/// ```text
/// L = −1/B Σ_b log( exp(q_b·k_b/τ) / Σ_j exp(q_b·k_j/τ) )
/// ```
/// # Shapes
/// `query`, `keys`: [B, D] → scalar
pub fn info_nce_in_batch(
    query: &Tensor,
    keys: &Tensor,
    temperature: f64,
) -> Result<Tensor, LossError> {
    check_pair("query", query, "keys", keys, 1)?;
    check_positive("temperature", temperature)?;
    let b = query.size()[0];
    let logits = query.matmul(&keys.tr()) / temperature; // [B, B]
    let targets = Tensor::arange(b, (Kind::Int64, query.device()));
    Ok(logits.log_softmax(-1, query.kind()).nll_loss(&targets))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::loss::testing::{dot, grad_check, randn, rows, to_rows};

    #[test]
    fn one_query_by_hand() {
        // q·k⁺ = 1, q·k⁻ = (0, −1), τ = 0.5: L = −log(e² / (e² + 1 + e⁻²))
        let q = rows(&[&[1.0, 0.0]]);
        let kp = rows(&[&[1.0, 3.0]]);
        let kn = rows(&[&[0.0, 1.0], &[-1.0, 0.0]]);
        let e2 = 2f64.exp();
        let want = -(e2 / (e2 + 1.0 + 1.0 / e2)).ln();
        let got = info_nce(&q, &kp, &kn, 0.5).unwrap().double_value(&[]);
        assert!((got - want).abs() < 1e-12, "{got} vs {want}");
        // the same negatives given per query: same value
        let per = info_nce(&q, &kp, &kn.unsqueeze(0), 0.5)
            .unwrap()
            .double_value(&[]);
        assert!((per - want).abs() < 1e-12);
    }

    #[test]
    fn matches_naive_loops() {
        let (q, kp) = (randn(&[5, 3], 0), randn(&[5, 3], 1));
        let neg = randn(&[5, 4, 3], 2);
        let t = 0.3;
        let (rq, rp) = (to_rows(&q), to_rows(&kp));
        let mut want = 0.0;
        for b in 0..5 {
            let rn = to_rows(&neg.get(b as i64));
            let pos = (dot(&rq[b], &rp[b]) / t).exp();
            let den = pos + rn.iter().map(|n| (dot(&rq[b], n) / t).exp()).sum::<f64>();
            want -= (pos / den).ln();
        }
        want /= 5.0;
        let got = info_nce(&q, &kp, &neg, t).unwrap().double_value(&[]);
        assert!((got - want).abs() < 1e-10);

        let mut want = 0.0;
        for b in 0..5 {
            let den: f64 = (0..5).map(|j| (dot(&rq[b], &rp[j]) / t).exp()).sum();
            want -= ((dot(&rq[b], &rp[b]) / t).exp() / den).ln();
        }
        want /= 5.0;
        let got = info_nce_in_batch(&q, &kp, t).unwrap().double_value(&[]);
        assert!((got - want).abs() < 1e-10);
    }

    #[test]
    fn equal_scores_give_log_of_the_candidates() {
        let z = Tensor::ones([4, 2], (Kind::Double, tch::Device::Cpu));
        let neg = Tensor::ones([9, 2], (Kind::Double, tch::Device::Cpu));
        let l = info_nce(&z, &z, &neg, 0.1).unwrap().double_value(&[]);
        assert!((l - 10f64.ln()).abs() < 1e-10);
        let l = info_nce_in_batch(&z, &z, 0.1).unwrap().double_value(&[]);
        assert!((l - 4f64.ln()).abs() < 1e-10);
    }

    #[test]
    fn gradients_match_finite_differences() {
        let x = randn(&[10, 3], 3); // query 0..3, positive 3..6, negatives 6..10
        let worst = grad_check(&x, |t| {
            info_nce(
                &t.narrow(0, 0, 3),
                &t.narrow(0, 3, 3),
                &t.narrow(0, 6, 4),
                0.5,
            )
            .unwrap()
        });
        assert!(worst < 1e-7, "{worst}");
        let worst = grad_check(&x, |t| {
            info_nce_in_batch(&t.narrow(0, 0, 5), &t.narrow(0, 5, 5), 0.5).unwrap()
        });
        assert!(worst < 1e-7, "{worst}");
    }

    #[test]
    fn bad_arguments_are_named() {
        let q = randn(&[2, 3], 0);
        let e = info_nce(&q, &q, &randn(&[4, 2], 0), 0.5)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("negatives") && e.contains("[4, 2]") && e.contains("[M, 3]"),
            "{e}"
        );
        let e = info_nce(&q, &q, &randn(&[3, 4, 3], 0), 0.5)
            .unwrap_err()
            .to_string();
        assert!(e.contains("[2, N, 3]"), "{e}");
        let e = info_nce_in_batch(&q, &q, -1.0).unwrap_err().to_string();
        assert!(e.contains("temperature") && e.contains("-1"), "{e}");
    }
}
