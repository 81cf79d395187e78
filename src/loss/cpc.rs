//! CPC's InfoNCE for predicting k steps ahead (van den Oord, Li & Vinyals 2018, eq. 4 with the
//! log-bilinear score `f_k(z, c) = exp(zᵀ W_k c)`): the prediction made from the context at
//! time t must pick out the true latent at t + k among every latent of the batch: those of the
//! other sequences (at any time) and those of its own sequence at other times.
//!
//! ```text
//! ẑ_{b,t} = W_k c_{b,t}                                    (the caller's prediction)
//! ℓ_{b,t} = −log( exp(ẑ_{b,t}·z_{b,t+k}) / Σ_{b',t'} exp(ẑ_{b,t}·z_{b',t'}) )
//! L_k     = mean over b < B, t < T − k of ℓ_{b,t}
//! ```

use super::LossError;
use tch::{Kind, Tensor};

/// The shapes agree: `pred` [B, T − k, D], `latents` [B, T, D], 1 ≤ k < T.
fn check(pred: &Tensor, latents: &Tensor, k: i64) -> Result<(i64, i64, i64), LossError> {
    let [b, t, d] = latents.size()[..] else {
        return Err(LossError::WrongShape {
            name: "latents",
            shape: latents.size(),
            expected: "[B, T, D]".into(),
        });
    };
    if k < 1 || k >= t {
        return Err(LossError::WrongShape {
            name: "latents",
            shape: latents.size(),
            expected: format!("[B, T, D] with T > k = {k} ≥ 1"),
        });
    }
    if pred.size() != [b, t - k, d] {
        return Err(LossError::WrongShape {
            name: "pred",
            shape: pred.size(),
            expected: format!(
                "[{b}, {}, {d}] (one prediction per time with a latent k = {k} later)",
                t - k
            ),
        });
    }
    Ok((b, t, d))
}

/// The scores of every prediction against every latent, and the column of each one's positive.
/// # Shapes
/// → logits [B·(T − k), B·T], targets [B·(T − k)]
fn scores(pred: &Tensor, latents: &Tensor, k: i64) -> Result<(Tensor, Tensor), LossError> {
    let (b, t, d) = check(pred, latents, k)?;
    let logits = pred.reshape([-1, d]).matmul(&latents.reshape([-1, d]).tr()); // [B(T−k), BT]
    let dev = pred.device();
    // prediction (b, s) → latent (b, s + k) at column b·T + s + k
    let rows = Tensor::arange(b, (Kind::Int64, dev)).unsqueeze(1) * t; // [B, 1]
    let cols = Tensor::arange_start(k, t, (Kind::Int64, dev)).unsqueeze(0); // [1, T − k]
    Ok((logits, (rows + cols).reshape([-1])))
}

/// `L_k` above.
/// # Shapes
/// `pred`: [B, T − k, D], `latents`: [B, T, D] → scalar
pub fn k_step_info_nce(pred: &Tensor, latents: &Tensor, k: i64) -> Result<Tensor, LossError> {
    let (logits, targets) = scores(pred, latents, k)?;
    Ok(logits.log_softmax(-1, pred.kind()).nll_loss(&targets))
}

/// The fraction of predictions whose highest score is their true latent (chance: 1 / (B·T)).
/// # Shapes
/// `pred`: [B, T − k, D], `latents`: [B, T, D] → in [0, 1]
pub fn k_step_accuracy(pred: &Tensor, latents: &Tensor, k: i64) -> Result<f64, LossError> {
    let (logits, targets) = scores(pred, latents, k)?;
    Ok(logits
        .argmax(-1, false)
        .eq_tensor(&targets)
        .to_kind(Kind::Float)
        .mean(Kind::Float)
        .double_value(&[]))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::loss::testing::{grad_check, randn};
    use tch::Device;

    #[test]
    fn uniform_scores_give_log_of_the_candidates_and_perfect_predictions_give_zero() {
        let (b, t, d, k) = (3, 5, 4, 2);
        let z = Tensor::zeros([b, t, d], (Kind::Float, Device::Cpu));
        let pred = Tensor::zeros([b, t - k, d], (Kind::Float, Device::Cpu));
        let l = k_step_info_nce(&pred, &z, k).unwrap().double_value(&[]);
        assert!((l - ((b * t) as f64).ln()).abs() < 1e-6, "{l}");
        // one-hot latents, each its own direction: a scaled copy of the future latent wins
        let z = Tensor::eye(b * t, (Kind::Float, Device::Cpu)).view([b, t, b * t]);
        let pred = z.narrow(1, k, t - k) * 50.0;
        assert!(k_step_info_nce(&pred, &z, k).unwrap().double_value(&[]) < 1e-6);
        assert_eq!(k_step_accuracy(&pred, &z, k).unwrap(), 1.0);
        // predicting the present instead of the future is wrong every time
        let now = z.narrow(1, 0, t - k) * 50.0;
        assert_eq!(k_step_accuracy(&now, &z, k).unwrap(), 0.0);
        assert!(k_step_info_nce(&now, &z, k).unwrap().double_value(&[]) > 40.0);
    }

    #[test]
    fn negatives_come_from_other_sequences_and_other_times() {
        let (b, t, d, k) = (2, 4, 3, 1);
        let z = randn(&[b, t, d], 1);
        let pred = randn(&[b, t - k, d], 2);
        let base = k_step_info_nce(&pred, &z, k).unwrap().double_value(&[]);
        // move one latent of sequence 1 at time 0: it is a positive of nobody (time 0 is never
        // k later), only a negative, of sequence 0's predictions too
        let moved = z.copy();
        let _ = moved.get(1).get(0).fill_(3.0);
        let after = k_step_info_nce(&pred, &moved, k).unwrap().double_value(&[]);
        assert!((after - base).abs() > 1e-3, "{base} {after}");
        let only_seq0 = k_step_info_nce(&pred.narrow(0, 0, 1), &moved, k);
        assert!(
            only_seq0.is_err(),
            "pred and latents must have the same batch"
        );
        // gradients match finite differences
        let err = grad_check(&pred, |p| k_step_info_nce(p, &z, k).unwrap());
        assert!(err < 1e-4, "{err}");
    }

    #[test]
    fn wrong_shapes_are_errors() {
        let z = randn(&[2, 4, 3], 0);
        assert!(k_step_info_nce(&randn(&[2, 3, 3], 0), &z, 2).is_err());
        assert!(k_step_info_nce(&randn(&[2, 0, 3], 0), &z, 4).is_err());
        assert!(k_step_info_nce(&randn(&[2, 4, 3], 0), &z, 0).is_err());
        assert!(k_step_info_nce(&randn(&[2, 3], 0), &randn(&[2, 3], 0), 1).is_err());
    }
}
