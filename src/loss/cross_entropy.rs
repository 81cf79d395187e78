//! Cross-entropy of a classifier, the loss of every pretext task (RotNet, relative patch
//! position, jigsaw: "we train … with the cross-entropy loss", Gidaris et al. 2018 §2):
//! ```text
//! L = −1/K Σ_k log softmax(logits_k)[y_k]
//! ```
//! with the top-1 accuracy of the same logits, which tells whether the task is learnable (it
//! rises) and not trivially solved (it does not reach 100 % in a few steps).
//!
//! # Shapes
//! `logits` [K, C], `labels` \[K\] (i64 in 0..C) → (scalar, accuracy in [0, 1] as a detached
//! f64 scalar tensor on the logits' device)

use super::{check_rows, LossError};
use tch::{Kind, Tensor};

pub fn cross_entropy(logits: &Tensor, labels: &Tensor) -> Result<(Tensor, Tensor), LossError> {
    check_rows("logits", logits, 1)?;
    super::check_shape("labels", labels, &[logits.size()[0]])?;
    let loss = logits
        .log_softmax(1, Kind::Double)
        .nll_loss(labels)
        .to_kind(logits.kind());
    let hits = logits.detach().argmax(1, false).eq_tensor(labels);
    let accuracy = hits.to_kind(Kind::Double).mean(Kind::Double);
    Ok((loss, accuracy))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::loss::testing::{grad_check, randn, rows};

    #[test]
    fn a_two_sample_case_by_hand() {
        // logits [[2, 0], [0, 1]], labels [0, 0]: L = ½ [log(1 + e⁻²) + log(1 + e¹)], acc ½
        let logits = rows(&[&[2.0, 0.0], &[0.0, 1.0]]);
        let (loss, acc) = cross_entropy(&logits, &Tensor::from_slice(&[0i64, 0])).unwrap();
        let want = 0.5 * ((1.0 + (-2.0f64).exp()).ln() + (1.0 + 1.0f64.exp()).ln());
        assert!((loss.double_value(&[]) - want).abs() < 1e-12);
        assert_eq!(acc.double_value(&[]), 0.5);
    }

    #[test]
    fn equal_logits_cost_log_c_whatever_the_labels() {
        let logits = Tensor::zeros([5, 8], (Kind::Double, tch::Device::Cpu));
        let labels = Tensor::from_slice(&[0i64, 3, 7, 7, 1]);
        let (loss, _) = cross_entropy(&logits, &labels).unwrap();
        assert!((loss.double_value(&[]) - 8f64.ln()).abs() < 1e-12);
    }

    #[test]
    fn gradients_match_finite_differences_and_bad_shapes_are_named() {
        let labels = Tensor::from_slice(&[2i64, 0, 1]);
        let worst = grad_check(&randn(&[3, 4], 1), |x| cross_entropy(x, &labels).unwrap().0);
        assert!(worst < 1e-6, "{worst}");
        let e = cross_entropy(&randn(&[3, 4], 0), &Tensor::from_slice(&[0i64, 1])).unwrap_err();
        assert!(e.to_string().contains("labels is [2]"), "{e}");
    }
}
