//! Noise-contrastive estimation (Gutmann & Hyvärinen 2010; Mnih & Teh 2012, "A fast and simple
//! algorithm for training neural probabilistic language models", eq. 7–8).

use super::{check_shape, LossError};
use tch::{Kind, Tensor};

/// NCE: binary logistic regression telling each data sample from `k` samples of a known noise
/// distribution p_n. A model score `s(x)` is an unnormalised log-probability (e.g. the dot
/// product of a centre-word and a context-word embedding); with
/// ```text
/// Δ(x) = s(x) − log(k · p_n(x))                 (the log(k·p_n) correction)
/// L = −1/B Σ_b [ log σ(Δ(x_b)) + Σ_{j=1..k} log(1 − σ(Δ(x̃_bj))) ]
/// ```
/// where x_b is a data sample and x̃_bj its j-th noise sample. At the optimum
/// `s(x) = log p_data(x)`: the model learns normalised log-probabilities without computing a
/// partition function.
///
/// # Shapes
/// `data_scores`, `data_log_pn`: \[B\] (scores of the data samples and `log p_n` of them);
/// `noise_scores`, `noise_log_pn`: [B, k] (the same for the noise samples), k ≥ 1 → scalar
pub fn nce(
    data_scores: &Tensor,
    data_log_pn: &Tensor,
    noise_scores: &Tensor,
    noise_log_pn: &Tensor,
) -> Result<Tensor, LossError> {
    let b = data_scores.size().first().copied().unwrap_or(0);
    if data_scores.dim() != 1 || b < 1 {
        return Err(LossError::WrongShape {
            name: "data_scores",
            shape: data_scores.size(),
            expected: "[B] with B ≥ 1".into(),
        });
    }
    check_shape("data_log_pn", data_log_pn, &[b])?;
    let k = noise_scores.size().get(1).copied().unwrap_or(0);
    if noise_scores.dim() != 2 || noise_scores.size()[0] != b || k < 1 {
        return Err(LossError::WrongShape {
            name: "noise_scores",
            shape: noise_scores.size(),
            expected: format!("[{b}, k] with k ≥ 1"),
        });
    }
    check_shape("noise_log_pn", noise_log_pn, &[b, k])?;
    let log_k = (k as f64).ln();
    let delta_data = data_scores - data_log_pn - log_k; // [B]
    let delta_noise = noise_scores - noise_log_pn - log_k; // [B, k]
    let kind = data_scores.kind();
    let per_sample = delta_data.log_sigmoid()
        + (-delta_noise)
            .log_sigmoid()
            .sum_dim_intlist([1i64].as_slice(), false, kind); // [B]
    Ok(-per_sample.mean(kind))
}

/// Log-probabilities of a unigram noise distribution raised to `power` (word2vec uses 0.75):
/// `log p_n(w) = log(c_w^power / Σ_v c_v^power)`. Words with count 0 get −∞ (never drawn).
///
/// # Shapes
/// `counts`: \[V\] → \[V\] float64
pub fn unigram_log_noise(counts: &[u64], power: f64) -> Tensor {
    let w: Vec<f64> = counts.iter().map(|&c| (c as f64).powf(power)).collect();
    let total: f64 = w.iter().sum();
    Tensor::from_slice(&w)
        .to_kind(Kind::Double)
        .divide_scalar(total)
        .log()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::loss::testing::{grad_check, randn};

    fn sigmoid(x: f64) -> f64 {
        1.0 / (1.0 + (-x).exp())
    }

    #[test]
    fn one_sample_by_hand() {
        // k = 2, p_n = ½ for everything → log(k p_n) = 0, Δ = s.
        // s_data = 1, s_noise = (0, −1): L = −[log σ(1) + log(1 − σ(0)) + log(1 − σ(−1))]
        let half = 0.5f64.ln();
        let l = nce(
            &Tensor::from_slice(&[1.0f64]),
            &Tensor::from_slice(&[half]),
            &Tensor::from_slice(&[0.0f64, -1.0]).view([1, 2]),
            &Tensor::from_slice(&[half, half]).view([1, 2]),
        )
        .unwrap()
        .double_value(&[]);
        let want = -(sigmoid(1.0).ln() + (1.0 - sigmoid(0.0)).ln() + (1.0 - sigmoid(-1.0)).ln());
        assert!((l - want).abs() < 1e-12, "{l} vs {want}");
    }

    #[test]
    fn matches_a_naive_loop() {
        let (ds, dl) = (randn(&[4], 0), randn(&[4], 1) - 3.0);
        let (ns, nl) = (randn(&[4, 3], 2), randn(&[4, 3], 3) - 3.0);
        let lk = 3f64.ln();
        let mut want = 0.0;
        for b in 0..4 {
            want -= sigmoid(ds.double_value(&[b]) - dl.double_value(&[b]) - lk).ln();
            for j in 0..3 {
                let d = ns.double_value(&[b, j]) - nl.double_value(&[b, j]) - lk;
                want -= (1.0 - sigmoid(d)).ln();
            }
        }
        want /= 4.0;
        let got = nce(&ds, &dl, &ns, &nl).unwrap().double_value(&[]);
        assert!((got - want).abs() < 1e-10, "{got} vs {want}");
    }

    #[test]
    fn scores_equal_to_the_log_k_noise_give_k_plus_one_log_2() {
        // Δ = 0 everywhere: the classifier is at chance, each of the k + 1 terms is log 2.
        let k = 5i64;
        let dl = randn(&[3], 4) - 2.0;
        let nl = randn(&[3, k], 5) - 2.0;
        let lk = (k as f64).ln();
        let l = nce(&(&dl + lk), &dl, &(&nl + lk), &nl)
            .unwrap()
            .double_value(&[]);
        assert!((l - (k + 1) as f64 * 2f64.ln()).abs() < 1e-12);
    }

    #[test]
    fn gradients_match_finite_differences() {
        let x = randn(&[4, 4], 6); // column 0: data scores, columns 1..4: noise scores (k = 3)
        let (dl, nl) = (randn(&[4], 7) - 2.0, randn(&[4, 3], 8) - 2.0);
        let worst = grad_check(&x, |t| {
            nce(&t.select(1, 0), &dl, &t.narrow(1, 1, 3), &nl).unwrap()
        });
        assert!(worst < 1e-7, "{worst}");
    }

    #[test]
    fn unigram_noise_is_a_distribution() {
        let lp = unigram_log_noise(&[1, 3, 0, 16], 0.75);
        let p = lp.exp();
        assert!((p.sum(Kind::Double).double_value(&[]) - 1.0).abs() < 1e-12);
        assert_eq!(p.double_value(&[2]), 0.0);
        assert!((p.double_value(&[3]) / p.double_value(&[0]) - 8.0).abs() < 1e-9);
        // 16^0.75
    }

    #[test]
    fn bad_shapes_are_named() {
        let e = nce(
            &randn(&[3], 0),
            &randn(&[3], 0),
            &randn(&[2, 4], 0),
            &randn(&[2, 4], 0),
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("noise_scores") && e.contains("[2, 4]") && e.contains("[3, k]"),
            "{e}"
        );
        let e = nce(
            &randn(&[3], 0),
            &randn(&[2], 0),
            &randn(&[3, 4], 0),
            &randn(&[3, 4], 0),
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("data_log_pn"), "{e}");
        let empty = Tensor::zeros([0], (Kind::Double, tch::Device::Cpu));
        assert!(nce(&empty, &empty, &randn(&[0, 2], 0), &randn(&[0, 2], 0)).is_err());
    }
}
