//! Triplet loss (Weinberger & Saul 2009; Schroff et al. 2015, FaceNet) and its in-batch mining
//! strategies, batch-all and batch-hard (Hermans, Beyer & Leibe 2017, "In Defense of the
//! Triplet Loss for Person Re-Identification").

use super::{
    check_non_negative, check_pair, check_rows, check_shape, pairwise_distances, row_distances,
    LossError,
};
use tch::{Kind, Tensor};

/// Triplet loss over given triplets, averaged over the K triplets:
/// ```text
/// L = 1/K Σ_k max(0, ‖a_k − p_k‖ − ‖a_k − n_k‖ + m)
/// ```
/// # Shapes
/// `anchor`, `positive`, `negative`: [K, D] → scalar
pub fn triplet(
    anchor: &Tensor,
    positive: &Tensor,
    negative: &Tensor,
    margin: f64,
) -> Result<Tensor, LossError> {
    check_pair("anchor", anchor, "positive", positive, 1)?;
    check_pair("anchor", anchor, "negative", negative, 1)?;
    check_non_negative("margin", margin)?;
    let d_ap = row_distances(anchor, positive); // [K]
    let d_an = row_distances(anchor, negative); // [K]
    Ok((d_ap - d_an + margin).clamp_min(0.0).mean(anchor.kind()))
}

/// Masks over the N×N pairs of a labelled batch: (positive pairs without the diagonal, negatives).
fn label_masks(labels: &Tensor) -> (Tensor, Tensor) {
    let n = labels.size()[0];
    let same = labels.unsqueeze(1).eq_tensor(&labels.unsqueeze(0)); // [N, N]
    let eye = Tensor::eye(n, (Kind::Bool, labels.device()));
    (same.logical_and(&eye.logical_not()), same.logical_not())
}

fn check_labelled(embeddings: &Tensor, labels: &Tensor, margin: f64) -> Result<(), LossError> {
    check_rows("embeddings", embeddings, 1)?;
    check_shape("labels", labels, &[embeddings.size()[0]])?;
    check_non_negative("margin", margin)
}

/// Batch-all mining: every valid triplet (a, p, n) of the batch — `label[a] = label[p]`,
/// `a ≠ p`, `label[n] ≠ label[a]` — averaged over the triplets whose loss is positive
/// (Hermans et al. 2017, §2: averaging over all would be dominated by easy zeros):
/// ```text
/// ℓ_apn = max(0, D_ap − D_an + m),   L = Σ ℓ_apn / #{ℓ_apn > 0}   (0 if none)
/// ```
/// Pair ids work as labels: with two views, the image index is the label.
///
/// # Shapes
/// `embeddings`: [N, D]; `labels`: \[N\] integer → scalar
pub fn batch_all_triplet(
    embeddings: &Tensor,
    labels: &Tensor,
    margin: f64,
) -> Result<Tensor, LossError> {
    check_labelled(embeddings, labels, margin)?;
    let d = pairwise_distances(embeddings, embeddings); // [N, N]
    let (pos, neg) = label_masks(labels);
    // ℓ[a, p, n] = D[a, p] − D[a, n] + m, valid where pos[a, p] and neg[a, n]: [N, N, N]
    let l = (d.unsqueeze(2) - d.unsqueeze(1) + margin).clamp_min(0.0);
    let valid = pos
        .unsqueeze(2)
        .logical_and(&neg.unsqueeze(1))
        .to_kind(embeddings.kind());
    let l = l * valid;
    let active = l.gt(1e-16).sum(Kind::Int64).double_value(&[]);
    Ok(l.sum(embeddings.kind()) / active.max(1.0))
}

/// Batch-hard mining: for every anchor, its farthest positive and nearest negative, averaged
/// over the anchors that have both:
/// ```text
/// ℓ_a = max(0, max_{p: y_p = y_a, p ≠ a} D_ap − min_{n: y_n ≠ y_a} D_an + m)
/// ```
/// # Shapes
/// `embeddings`: [N, D]; `labels`: \[N\] integer → scalar (0 if no anchor has both)
pub fn batch_hard_triplet(
    embeddings: &Tensor,
    labels: &Tensor,
    margin: f64,
) -> Result<Tensor, LossError> {
    check_labelled(embeddings, labels, margin)?;
    let d = pairwise_distances(embeddings, embeddings); // [N, N]
    let (pos, neg) = label_masks(labels);
    let hardest_pos = d
        .masked_fill(&pos.logical_not(), f64::NEG_INFINITY)
        .amax([1], false); // [N]
    let hardest_neg = d
        .masked_fill(&neg.logical_not(), f64::INFINITY)
        .amin([1], false); // [N]
    let usable = pos.any_dim(1, false).logical_and(&neg.any_dim(1, false)); // [N]
                                                                            // rows without a positive or a negative add 0; none usable gives 0 (no host read)
    let count = usable.sum(embeddings.kind()).clamp_min(1.0);
    let l = (hardest_pos - hardest_neg + margin).clamp_min(0.0);
    let l = l.masked_fill(&usable.logical_not(), 0.0);
    Ok(l.sum(embeddings.kind()) / count)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::loss::testing::{dist, grad_check, randn, rows, to_rows};

    fn ids(v: &[i64]) -> Tensor {
        Tensor::from_slice(v)
    }

    #[test]
    fn one_triplet_by_hand() {
        // D(a,p) = 1, D(a,n) = 2: max(0, 1 − 2 + 1.5) = 0.5; with m = 0.5 it is 0.
        let a = rows(&[&[0.0, 0.0]]);
        let p = rows(&[&[1.0, 0.0]]);
        let n = rows(&[&[0.0, 2.0]]);
        assert!((triplet(&a, &p, &n, 1.5).unwrap().double_value(&[]) - 0.5).abs() < 1e-9);
        assert_eq!(triplet(&a, &p, &n, 0.5).unwrap().double_value(&[]), 0.0);
    }

    /// Every (a, p, n) with a naive loop: (sum of positive losses, their count, per-anchor hard).
    fn naive(e: &[Vec<f64>], y: &[i64], m: f64) -> (f64, f64, f64) {
        let n = e.len();
        let (mut sum, mut count) = (0.0f64, 0.0f64);
        let (mut hard_sum, mut hard_count) = (0.0f64, 0.0f64);
        for a in 0..n {
            let (mut hp, mut hn) = (f64::NEG_INFINITY, f64::INFINITY);
            for p in 0..n {
                if p == a || y[p] != y[a] {
                    continue;
                }
                hp = hp.max(dist(&e[a], &e[p]));
                for q in 0..n {
                    if y[q] == y[a] {
                        continue;
                    }
                    let l = (dist(&e[a], &e[p]) - dist(&e[a], &e[q]) + m).max(0.0);
                    if l > 0.0 {
                        sum += l;
                        count += 1.0;
                    }
                }
            }
            for q in 0..n {
                if y[q] != y[a] {
                    hn = hn.min(dist(&e[a], &e[q]));
                }
            }
            if hp.is_finite() && hn.is_finite() {
                hard_sum += (hp - hn + m).max(0.0);
                hard_count += 1.0;
            }
        }
        (sum / count.max(1.0), count, hard_sum / hard_count.max(1.0))
    }

    #[test]
    fn mining_matches_a_naive_loop() {
        let e = randn(&[9, 3], 0);
        let y = [0i64, 1, 0, 2, 1, 0, 2, 2, 3]; // label 3 has no positive: never an anchor
        let (all, count, hard) = naive(&to_rows(&e), &y, 1.0);
        assert!(count > 0.0);
        let got_all = batch_all_triplet(&e, &ids(&y), 1.0)
            .unwrap()
            .double_value(&[]);
        let got_hard = batch_hard_triplet(&e, &ids(&y), 1.0)
            .unwrap()
            .double_value(&[]);
        assert!((got_all - all).abs() < 1e-9, "{got_all} vs {all}");
        assert!((got_hard - hard).abs() < 1e-9, "{got_hard} vs {hard}");
    }

    #[test]
    fn closed_forms() {
        // Well-separated classes (distance 100 between, ≤ √2 within) and margin 1: no loss.
        let e = rows(&[&[0.0, 0.0], &[1.0, 1.0], &[100.0, 0.0], &[101.0, 1.0]]);
        let y = ids(&[0, 0, 1, 1]);
        assert_eq!(
            batch_all_triplet(&e, &y, 1.0).unwrap().double_value(&[]),
            0.0
        );
        assert_eq!(
            batch_hard_triplet(&e, &y, 1.0).unwrap().double_value(&[]),
            0.0
        );
        // All embeddings equal: every triplet costs exactly the margin.
        let same = Tensor::ones([6, 4], (Kind::Double, tch::Device::Cpu));
        let y = ids(&[0, 0, 1, 1, 2, 2]);
        for f in [batch_all_triplet, batch_hard_triplet] {
            let l = f(&same, &y, 0.7).unwrap().double_value(&[]);
            assert!((l - 0.7).abs() < 1e-5, "{l}");
        }
        // No valid triplet (one class): 0, not NaN.
        let l = batch_hard_triplet(&randn(&[4, 2], 1), &ids(&[5; 4]), 1.0).unwrap();
        assert_eq!(l.double_value(&[]), 0.0);
        let l = batch_all_triplet(&randn(&[4, 2], 1), &ids(&[5; 4]), 1.0).unwrap();
        assert_eq!(l.double_value(&[]), 0.0);
    }

    #[test]
    fn gradients_match_finite_differences() {
        let x = randn(&[6, 3], 2);
        let worst = grad_check(&x, |t| {
            triplet(
                &t.narrow(0, 0, 2),
                &t.narrow(0, 2, 2),
                &t.narrow(0, 4, 2),
                5.0,
            )
            .unwrap()
        });
        assert!(worst < 1e-6, "{worst}");
        let y = ids(&[0, 1, 0, 1, 2, 2]);
        for f in [batch_all_triplet, batch_hard_triplet] {
            let worst = grad_check(&x, |t| f(t, &y, 5.0).unwrap());
            assert!(worst < 1e-6, "{worst}");
        }
    }

    #[test]
    fn bad_arguments_are_named() {
        let e = randn(&[4, 3], 0);
        let e_msg = batch_hard_triplet(&e, &ids(&[0, 1, 0]), 1.0)
            .unwrap_err()
            .to_string();
        assert!(
            e_msg.contains("labels") && e_msg.contains("[3]") && e_msg.contains("[4]"),
            "{e_msg}"
        );
        let e_msg = triplet(&e, &e, &e, -0.1).unwrap_err().to_string();
        assert!(
            e_msg.contains("margin") && e_msg.contains("-0.1"),
            "{e_msg}"
        );
        let empty = Tensor::zeros([0, 3], (Kind::Double, tch::Device::Cpu));
        assert!(batch_all_triplet(&empty, &ids(&[]), 1.0).is_err());
    }
}
