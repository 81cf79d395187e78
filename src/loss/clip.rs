//! CLIP's loss (Radford et al. 2021, "Learning Transferable Visual Models From Natural Language
//! Supervision", Figure 3): symmetric InfoNCE between the images and the texts of a batch, with
//! a learned temperature.

use super::{check_pair, LossError};
use tch::{Kind, Tensor};

/// The largest logit scale: CLIP clips `exp(t)` at 100 "to prevent scaling the logits by more
/// than 100, which we found necessary to prevent training instability" (§2.5).
pub const MAX_LOGIT_SCALE: f64 = 100.0;

/// With `u = image/‖image‖`, `v = text/‖text‖` (rows), `s = exp(t)` (`log_scale` = t, a
/// learned scalar, s = 1/τ) and the logits `S = s · u vᵀ` [B, B] (image i against text j):
/// ```text
/// L = ½ ( −1/B Σ_i log softmax_j(S)_ii  +  −1/B Σ_j log softmax_i(S)_jj )
/// ```
/// image→text cross-entropy over the rows, text→image over the columns, the pair (i, i)
/// the positive. Swapping images and texts leaves L unchanged.
/// # Shapes
/// `image`, `text`: [B, D]; `log_scale`: scalar → scalar
pub fn clip_loss(image: &Tensor, text: &Tensor, log_scale: &Tensor) -> Result<Tensor, LossError> {
    check_pair("image", image, "text", text, 1)?;
    let logits = clip_logits(image, text, log_scale); // [B, B]
    let b = image.size()[0];
    let targets = Tensor::arange(b, (Kind::Int64, image.device()));
    let rows = logits.log_softmax(1, logits.kind()).nll_loss(&targets);
    let cols = logits.log_softmax(0, logits.kind()).tr().nll_loss(&targets);
    Ok((rows + cols) / 2.0)
}

/// `exp(log_scale) · (image/‖image‖)(text/‖text‖)ᵀ`: [B, D], [M, D] → [B, M].
pub fn clip_logits(image: &Tensor, text: &Tensor, log_scale: &Tensor) -> Tensor {
    let unit = |x: &Tensor| {
        x / x
            .norm_scalaropt_dim(2, [1i64].as_slice(), true)
            .clamp_min(1e-12)
    };
    unit(image).matmul(&unit(text).tr()) * log_scale.exp()
}

/// Clips the learned log-scale in place to `[0, ln max_scale]` (open_clip clamps the
/// parameter after each optimiser step the same way).
pub fn clamp_log_scale(log_scale: &mut Tensor, max_scale: f64) {
    tch::no_grad(|| {
        let _ = log_scale.clamp_(0.0, max_scale.ln());
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::loss::testing::{grad_check, randn, rows, to_rows, unit};

    fn scalar(v: f64) -> Tensor {
        Tensor::from(v).to_kind(Kind::Double)
    }

    #[test]
    fn two_pairs_by_hand() {
        // unit rows: image 0 = text 0, image 1 ⟂ text 0
        let img = rows(&[&[1.0, 0.0], &[0.0, 2.0]]);
        let txt = rows(&[&[3.0, 0.0], &[1.0, 1.0]]);
        let s: f64 = 5.0;
        let (u, v) = (to_rows(&img), to_rows(&txt));
        let (u, v): (Vec<_>, Vec<_>) = (
            u.iter().map(|r| unit(r)).collect(),
            v.iter().map(|r| unit(r)).collect(),
        );
        let sim = |i: usize, j: usize| s * u[i].iter().zip(&v[j]).map(|(a, b)| a * b).sum::<f64>();
        let lse = |xs: [f64; 2]| xs.iter().map(|x| x.exp()).sum::<f64>().ln();
        let i2t: f64 = (0..2)
            .map(|i| lse([sim(i, 0), sim(i, 1)]) - sim(i, i))
            .sum::<f64>()
            / 2.0;
        let t2i: f64 = (0..2)
            .map(|j| lse([sim(0, j), sim(1, j)]) - sim(j, j))
            .sum::<f64>()
            / 2.0;
        let l = clip_loss(&img, &txt, &scalar(s.ln()))
            .unwrap()
            .double_value(&[]);
        assert!((l - (i2t + t2i) / 2.0).abs() < 1e-12, "{l}");
    }

    #[test]
    fn symmetric_in_images_and_texts() {
        let (a, b) = (randn(&[6, 4], 1), randn(&[6, 4], 2));
        let t = scalar(2.3);
        let ab = clip_loss(&a, &b, &t).unwrap().double_value(&[]);
        let ba = clip_loss(&b, &a, &t).unwrap().double_value(&[]);
        assert!((ab - ba).abs() < 1e-12, "{ab} vs {ba}");
        // one-sided InfoNCE is not: the two directions differ on random rows
        let one = |x: &Tensor, y: &Tensor| {
            let l = clip_logits(x, y, &t);
            l.log_softmax(1, Kind::Double)
                .nll_loss(&Tensor::arange(6, (Kind::Int64, tch::Device::Cpu)))
                .double_value(&[])
        };
        assert!((one(&a, &b) - one(&b, &a)).abs() > 1e-6);
    }

    #[test]
    fn matched_pairs_beat_shuffled_ones_and_equal_scores_give_log_b() {
        let a = randn(&[8, 16], 3);
        let t = scalar(MAX_LOGIT_SCALE.ln());
        let matched = clip_loss(&a, &a, &t).unwrap().double_value(&[]);
        let shuffled = clip_loss(&a, &a.roll([1], [0]), &t)
            .unwrap()
            .double_value(&[]);
        assert!(matched < 0.1 && shuffled > 1.0, "{matched} {shuffled}");
        let same = Tensor::ones([8, 16], (Kind::Double, tch::Device::Cpu));
        let l = clip_loss(&same, &same, &t).unwrap().double_value(&[]);
        assert!((l - 8f64.ln()).abs() < 1e-9, "{l}");
    }

    #[test]
    fn gradients_match_finite_differences() {
        let (a, b) = (randn(&[5, 3], 4), randn(&[5, 3], 5));
        let t = scalar(1.5);
        assert!(grad_check(&a, |x| clip_loss(x, &b, &t).unwrap()) < 1e-6);
        assert!(
            grad_check(&t.reshape([1]), |x| clip_loss(&a, &b, &x.reshape([]))
                .unwrap())
                < 1e-6
        );
    }

    #[test]
    fn the_clamp_holds_and_shapes_are_named() {
        let mut t = Tensor::from_slice(&[10.0f64]).set_requires_grad(true);
        clamp_log_scale(&mut t, MAX_LOGIT_SCALE);
        assert!((t.double_value(&[0]) - 100f64.ln()).abs() < 1e-12);
        let mut low = Tensor::from_slice(&[-3.0f64]);
        clamp_log_scale(&mut low, MAX_LOGIT_SCALE);
        assert_eq!(low.double_value(&[0]), 0.0);
        let mut mid = Tensor::from_slice(&[(1.0f64 / 0.07).ln()]);
        clamp_log_scale(&mut mid, MAX_LOGIT_SCALE);
        assert!(
            (mid.double_value(&[0]) - (1.0f64 / 0.07).ln()).abs() < 1e-12,
            "moved inside the range"
        );
        let e = clip_loss(&randn(&[4, 3], 0), &randn(&[5, 3], 0), &scalar(1.0)).unwrap_err();
        assert!(
            e.to_string().contains("image") && e.to_string().contains("text"),
            "{e}"
        );
    }
}
