//! The swapped / cross-view prediction loss of SwAV (Caron et al. 2020, eq. 1–2) and DINO
//! (Caron et al. 2021, eq. 3): every view's predicted distribution is scored against the
//! soft target of every *other* view that has one.

use super::{check_pair, check_positive, LossError};
use tch::Tensor;

/// Mean cross-entropy between soft targets and the softmax of every other view's scores:
/// ```text
/// ℓ(q, s) = −(1/K) Σ_k Σ_p q_kp · log softmax(s_k / τ)_p
/// L = mean over pairs (i, v), i < targets.len(), v < scores.len(), v ≠ i, of ℓ(targets_i, scores_v)
/// ```
/// `targets[i]` belongs to view i (SwAV's codes, DINO's centred and sharpened teacher output:
/// rows sum to 1, no gradient expected); `scores[v]` are view v's raw scores (SwAV: cosine
/// to the prototypes; DINO: student logits). Views 0..targets.len() have targets.
///
/// # Shapes
/// `targets[i]`, `scores[v]`: [K, P] → scalar
pub fn cross_view_loss(
    targets: &[Tensor],
    scores: &[Tensor],
    temperature: f64,
) -> Result<Tensor, LossError> {
    check_positive("temperature", temperature)?;
    if targets.is_empty() || scores.len() < 2 || targets.len() > scores.len() {
        return Err(LossError::WrongShape {
            name: "views",
            shape: vec![targets.len() as i64, scores.len() as i64],
            expected: "1 ≤ targets ≤ scores and ≥ 2 scored views".into(),
        });
    }
    for t in targets {
        for s in scores {
            check_pair("targets", t, "scores", s, 1)?;
        }
    }
    let log_p: Vec<Tensor> = scores
        .iter()
        .map(|s| (s / temperature).log_softmax(1, s.kind()))
        .collect(); // [K, P] each
    let mut total = Tensor::zeros([], (scores[0].kind(), scores[0].device()));
    let mut pairs = 0;
    for (i, q) in targets.iter().enumerate() {
        for (v, lp) in log_p.iter().enumerate() {
            if v == i {
                continue;
            }
            let ce = -(q * lp).sum_dim_intlist([1i64].as_slice(), false, lp.kind()); // [K]
            total += ce.mean(lp.kind());
            pairs += 1;
        }
    }
    Ok(total / pairs as f64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::loss::testing::{grad_check, randn, to_rows};
    use tch::Kind;

    fn naive(targets: &[Tensor], scores: &[Tensor], tau: f64) -> f64 {
        let (mut sum, mut n) = (0.0, 0);
        for (i, q) in targets.iter().enumerate() {
            for (v, s) in scores.iter().enumerate() {
                if v == i {
                    continue;
                }
                let (q, s) = (to_rows(q), to_rows(s));
                let mut ce = 0.0;
                for (qk, sk) in q.iter().zip(&s) {
                    let lse = sk.iter().map(|x| (x / tau).exp()).sum::<f64>().ln();
                    ce -= qk
                        .iter()
                        .zip(sk)
                        .map(|(a, b)| a * (b / tau - lse))
                        .sum::<f64>();
                }
                sum += ce / q.len() as f64;
                n += 1;
            }
        }
        sum / n as f64
    }

    fn soft(x: &Tensor) -> Tensor {
        x.softmax(1, Kind::Double)
    }

    #[test]
    fn matches_a_loop_over_view_pairs_with_more_views_than_targets() {
        let scores: Vec<Tensor> = (0..4).map(|s| randn(&[5, 3], s)).collect();
        let targets = [soft(&randn(&[5, 3], 10)), soft(&randn(&[5, 3], 11))];
        let got = cross_view_loss(&targets, &scores, 0.1)
            .unwrap()
            .double_value(&[]);
        let want = naive(&targets, &scores, 0.1);
        assert!((got - want).abs() < 1e-9, "{got} vs {want}");
    }

    #[test]
    fn a_confident_correct_prediction_costs_little_and_a_wrong_one_much() {
        let target = Tensor::from_slice(&[1.0f64, 0.0]).view([1, 2]);
        let right = Tensor::from_slice(&[1.0f64, 0.0]).view([1, 2]);
        let wrong = Tensor::from_slice(&[0.0f64, 1.0]).view([1, 2]);
        let l = |s: &Tensor| {
            cross_view_loss(
                &[target.shallow_clone()],
                &[target.zeros_like(), s.shallow_clone()],
                0.1,
            )
            .unwrap()
            .double_value(&[])
        };
        // ℓ = log(1 + e^{∓10}) for τ = 0.1
        assert!((l(&right) - (1.0 + (-10f64).exp()).ln()).abs() < 1e-9);
        assert!((l(&wrong) - (1.0 + 10f64.exp()).ln()).abs() < 1e-9);
    }

    #[test]
    fn gradients_match_finite_differences() {
        let t = [soft(&randn(&[3, 4], 1))];
        let other = randn(&[3, 4], 2);
        let worst = grad_check(&randn(&[3, 4], 3), |x| {
            cross_view_loss(&t, &[other.shallow_clone(), x.shallow_clone()], 0.5).unwrap()
        });
        assert!(worst < 1e-6, "{worst}");
    }

    #[test]
    fn bad_arguments_are_named() {
        let a = randn(&[3, 4], 1);
        let e = cross_view_loss(&[a.shallow_clone()], &[a.shallow_clone()], 0.1).unwrap_err();
        assert!(e.to_string().contains("views"), "{e}");
        let e = cross_view_loss(
            &[a.shallow_clone()],
            &[a.shallow_clone(), randn(&[3, 5], 2)],
            0.1,
        )
        .unwrap_err();
        assert!(e.to_string().contains("scores"), "{e}");
        let e = cross_view_loss(
            &[a.shallow_clone()],
            &[a.shallow_clone(), a.shallow_clone()],
            0.0,
        )
        .unwrap_err();
        assert!(e.to_string().contains("temperature"), "{e}");
    }
}
