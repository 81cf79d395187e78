//! What the self-prediction methods (mae, denoising_ae, context_encoder) share: the views they
//! reconstruct (a crop and a flip, no colour changes: the target is the image), their masks,
//! drawn from `(seed, step, index)` so that a resumed run hides the same pixels, and the
//! pictures of what they reconstruct.

use super::BuildContext;
use crate::augment::{ViewRecipe, Views};
use crate::backbone::Backbone;
use crate::error::SettingError;
use crate::head::Decoder;
use crate::rng::Rng;
use std::sync::Arc;
use tch::nn::{self, ModuleT};
use tch::{Kind, Tensor};

/// An encoder `backbone.*` and a [`Decoder`] `decoder.*` back to an image of the input's size.
pub struct EncoderDecoder {
    pub backbone: Backbone,
    pub decoder: Decoder,
}

impl EncoderDecoder {
    pub fn new(vs: &nn::VarStore, ctx: &BuildContext) -> anyhow::Result<Self> {
        let p = vs.root();
        let backbone = ctx.backbone(&p)?;
        let side = ctx.input_side as i64;
        // the map's shape, from one zero image
        let probe = Tensor::zeros([1, 3, side, side], (Kind::Float, p.device()));
        let map = tch::no_grad(|| backbone.feature_map(&probe, false)).size();
        let decoder = Decoder::for_backbone(&(&p / "decoder"), &backbone, (map[1], map[2]), side)
            .map_err(anyhow::Error::msg)?;
        Ok(EncoderDecoder { backbone, decoder })
    }

    /// `x̃` [K, 3, S, S] → `(reconstruction [K, 3, S, S], h [K, D])`, h the feature map's mean
    /// (a ResNet's pooled features; a ViT's mean patch token).
    pub fn forward(&self, x: &Tensor, train: bool) -> (Tensor, Tensor) {
        let map = self.backbone.feature_map(x, train); // [K, C, s, s]
        let h = map.mean_dim([2, 3].as_slice(), false, None);
        (self.decoder.forward_t(&map, train), h)
    }
}

/// The pictures of a masked-patch method: of images `x` [K, 3, S, S], patch predictions `pred`
/// [K, L, p²·3] and `mask` [K, L] (1 = hidden), the image with its hidden patches at the mean
/// colour (0 in the normalised space) and the visible patches with the hidden ones predicted.
pub fn patch_pictures(x: &Tensor, pred: &Tensor, mask: &Tensor, p: i64) -> (Tensor, Tensor) {
    let m = mask.unsqueeze(-1); // [K, L, 1]
    let visible = crate::backbone::vit::patchify(x, p) * (1.0 - &m);
    let shown = crate::backbone::vit::unpatchify(&visible, p);
    (
        shown,
        crate::backbone::vit::unpatchify(&(visible + pred * &m), p),
    )
}

/// The stream of [`Rng::for_sample`] the masks draw from (views use others).
const MASK_STREAM: u64 = 0x6d61_736b;

/// The step number the pictures' masks are drawn at (never a training step).
pub const PICTURE_STEP: u64 = u64::MAX;

/// The first recipe with crops of at least `crop_min_scale` of the image, flips, and no
/// colour jitter, grayscale, blur or solarization.
pub fn pixel_views(
    recipes: Vec<ViewRecipe>,
    crop_min_scale: f32,
) -> Result<Vec<Arc<dyn Views>>, SettingError> {
    let mut r = recipes.into_iter().next().ok_or("no view recipe")?;
    r.crop_scale.0 = crop_min_scale;
    (r.jitter_p, r.grayscale_p, r.blur_p, r.solarize_p) = (0.0, 0.0, 0.0, 0.0);
    Ok(vec![Arc::new(r)])
}

/// Checks `[method.<section>].crop_min_scale` ∈ (0, 1].
pub fn check_crop_min_scale(section: &str, v: f32) -> Result<(), SettingError> {
    match v > 0.0 && v <= 1.0 {
        true => Ok(()),
        false => Err(SettingError::out_of_range(
            format!("method.{section}.crop_min_scale"),
            v,
            "it must be in (0, 1]",
        )),
    }
}

/// MAE's per-sample random masking (`random_masking` of the paper's code): for each of `k`
/// images, noise over its `l` patches, argsorted; the first `keep = round(l·(1 − ratio))`
/// are visible. Returns `(ids_keep [k, keep], mask [k, l] (1 = hidden), ids_restore [k, l])`
/// (i64, f32, i64); image i's noise is drawn from `(seed, step, i)`.
pub fn random_masking(
    k: i64,
    l: i64,
    ratio: f64,
    seed: u64,
    step: u64,
) -> (Tensor, Tensor, Tensor) {
    let keep = visible_patches(l, ratio);
    let mut noise = Vec::with_capacity((k * l) as usize);
    let first = crate::dist::first_row(k);
    for i in 0..k {
        let mut r = Rng::for_sample(seed, step, (first + i) as u64, MASK_STREAM);
        noise.extend((0..l).map(|_| r.uniform()));
    }
    let noise = Tensor::from_slice(&noise).view([k, l]);
    let ids_shuffle = noise.argsort(1, false); // [k, l]: ascending, the smallest kept
    let ids_restore = ids_shuffle.argsort(1, false);
    let ids_keep = ids_shuffle.narrow(1, 0, keep);
    let mask = Tensor::ones([k, l], (Kind::Float, tch::Device::Cpu));
    let _ = mask.narrow(1, 0, keep).fill_(0.0);
    let mask = mask.gather(1, &ids_restore, false); // unshuffled: 1 where hidden
    (ids_keep, mask, ids_restore)
}

/// Patches left visible at mask ratio `ratio`: `round(l·(1 − ratio))`, at least 1.
pub fn visible_patches(l: i64, ratio: f64) -> i64 {
    ((l as f64 * (1.0 - ratio)).round() as i64).clamp(1, l)
}

/// A mask of single pixels [k, 1, s, s] (1 = hidden), each pixel hidden with probability `p`
/// (Vincent et al.'s "masking noise": the pixel is set to 0, here the data mean), image i's
/// drawn from `(seed, step, i)`; and Gaussian noise [k, 3, s, s] of std `std` from the same
/// generators.
pub fn pixel_noise(k: i64, s: i64, p: f32, std: f32, seed: u64, step: u64) -> (Tensor, Tensor) {
    let (mut mask, mut noise) = (Vec::new(), Vec::new());
    let first = crate::dist::first_row(k);
    for i in 0..k {
        let mut r = Rng::for_sample(seed, step, (first + i) as u64, MASK_STREAM);
        mask.extend((0..s * s).map(|_| r.bernoulli(p) as u8 as f32));
        noise.extend((0..3 * s * s).map(|_| match std > 0.0 {
            true => r.normal() * std,
            false => 0.0,
        }));
    }
    (
        Tensor::from_slice(&mask).view([k, 1, s, s]),
        Tensor::from_slice(&noise).view([k, 3, s, s]),
    )
}

/// A square hole [k, 1, s, s] (1 = hidden) of side `round(fraction·s)`: in the centre, or for
/// `random`, anywhere, image i's place drawn from `(seed, step, i)` (Pathak et al.'s
/// "central region" and "random block").
pub fn square_hole(k: i64, s: i64, fraction: f64, random: bool, seed: u64, step: u64) -> Tensor {
    let side = ((s as f64 * fraction).round() as i64).clamp(1, s);
    let mut m = vec![0f32; (k * s * s) as usize];
    let first = crate::dist::first_row(k);
    for i in 0..k {
        let (top, left) = match random {
            false => ((s - side) / 2, (s - side) / 2),
            true => {
                let mut r = Rng::for_sample(seed, step, (first + i) as u64, MASK_STREAM);
                let span = (s - side + 1) as usize;
                (r.below(span) as i64, r.below(span) as i64)
            }
        };
        for y in top..top + side {
            for x in left..left + side {
                m[(i * s * s + y * s + x) as usize] = 1.0;
            }
        }
    }
    Tensor::from_slice(&m).view([k, 1, s, s])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masking_hides_exactly_the_fraction_and_repeats_by_seed_step_and_index() {
        let (keep, mask, restore) = random_masking(5, 64, 0.75, 3, 10);
        assert_eq!(keep.size(), vec![5, 16]);
        assert_eq!(restore.size(), vec![5, 64]);
        let hidden: Vec<f64> = Vec::try_from(mask.sum_dim_intlist(1, false, Kind::Double)).unwrap();
        assert!(hidden.iter().all(|&h| h == 48.0), "{hidden:?}");
        // the kept ids are exactly the unmasked patches
        let at_kept = mask.gather(1, &keep, false);
        assert_eq!(at_kept.sum(Kind::Float).double_value(&[]), 0.0);
        let (keep2, mask2, _) = random_masking(5, 64, 0.75, 3, 10);
        assert!(keep.equal(&keep2) && mask.equal(&mask2));
        let (_, other_step, _) = random_masking(5, 64, 0.75, 3, 11);
        assert!(!mask.equal(&other_step));
        // images differ from each other, and image 0 does not depend on the batch size
        assert!(!mask.get(0).equal(&mask.get(1)));
        let (_, small, _) = random_masking(1, 64, 0.75, 3, 10);
        assert!(small.get(0).equal(&mask.get(0)));
        assert_eq!(visible_patches(64, 0.9), 6);
    }

    #[test]
    fn pixel_noise_and_holes_have_the_asked_size() {
        let (m, n) = pixel_noise(4, 32, 0.25, 0.1, 0, 0);
        let frac = m.mean(Kind::Float).double_value(&[]);
        assert!((frac - 0.25).abs() < 0.03, "{frac}");
        let std = n.std(true).double_value(&[]);
        assert!((std - 0.1).abs() < 0.01, "{std}");
        let h = square_hole(3, 32, 0.5, false, 0, 0);
        assert_eq!(h.sum(Kind::Float).double_value(&[]), 3.0 * 256.0);
        assert_eq!(h.double_value(&[0, 0, 8, 8]), 1.0);
        assert_eq!(h.double_value(&[0, 0, 7, 8]), 0.0);
        let r = square_hole(3, 32, 0.5, true, 0, 0);
        assert_eq!(r.sum(Kind::Float).double_value(&[]), 3.0 * 256.0);
        assert!(r.equal(&square_hole(3, 32, 0.5, true, 0, 0)));
    }
}
