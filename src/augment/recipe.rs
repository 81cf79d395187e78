//! The view recipe: the parameters of every op of one view, presets for SimCLR, and the fused
//! implementation that turns a u8 image into one normalised f32 view.
//!
//! A view is drawn in two steps: [`ViewRecipe::sample_params`] draws everything random into a
//! [`ViewParams`], then [`ViewRecipe::render`] applies it, in place in the `S × S × 3` output:
//! ```text
//! 1. crop + flip + u8→[0,1] in one resampling pass           (crop.rs)
//! 2. colour jitter, one tight loop per drawn op              (color_jitter.rs)
//! 3. grayscale, and, when there is no blur, solarize + normalize, fused per pixel
//! 4. blur, then solarize + normalize fused                   only if blur is drawn
//! ```
//! The per-pixel ops that always run (grayscale, solarize, normalize) share one pass; the
//! jitter ops do not, because a 32×32 view stays in L1 cache and one loop per op was measured
//! faster than choosing among the ops at every pixel.

use std::cell::RefCell;

use super::blur::{gaussian_blur, kernel_size, BlurScratch};
use super::color_jitter::Jitter;
use super::crop::{center_crop, resized_crop, sample_crop, CropBox, CropScratch};
use super::grayscale::grayscale;
use super::normalize::{Normalize, CIFAR10_MEAN, CIFAR10_STD, IMAGENET_MEAN, IMAGENET_STD};
use super::solarize::solarize;
use super::AugmentError;
use crate::rng::Rng;

/// Everything that defines how one view of an image is drawn.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ViewRecipe {
    /// Side of the square output view, in pixels.
    pub out_size: usize,
    /// Range of the crop's area as a fraction of the image's, `(lo, hi)`, `0 < lo ≤ hi ≤ 1`.
    pub crop_scale: (f32, f32),
    /// Range of the crop's aspect ratio `w/h` (drawn log-uniformly), `0 < lo ≤ hi`.
    pub crop_ratio: (f32, f32),
    /// Probability of a horizontal flip.
    pub flip_p: f32,
    /// Probability that the colour jitter is applied at all.
    pub jitter_p: f32,
    /// Brightness strength `b`: factor `~ U(max(0, 1 − b), 1 + b)`; 0 disables.
    pub brightness: f32,
    /// Contrast strength, as brightness.
    pub contrast: f32,
    /// Saturation strength, as brightness.
    pub saturation: f32,
    /// Hue strength `h ≤ 0.5`: shift `~ U(−h, h)` turns; 0 disables.
    pub hue: f32,
    /// Probability of converting the view to grayscale.
    pub grayscale_p: f32,
    /// Probability of a Gaussian blur (kernel 10% of `out_size`, see blur.rs).
    pub blur_p: f32,
    /// Range of the blur's σ in pixels, `0 < lo ≤ hi`.
    pub blur_sigma: (f32, f32),
    /// Probability of solarizing (x ≥ 0.5 → 1 − x).
    pub solarize_p: f32,
    /// Per-channel mean subtracted at the end (RGB, pixel scale [0, 1]).
    pub mean: [f32; 3],
    /// Per-channel std divided by at the end, > 0.
    pub std: [f32; 3],
}

impl ViewRecipe {
    /// SimCLR's CIFAR-10 augmentation (Chen et al. 2020, appendix B.9: "colour distortion
    /// strength 0.5", no blur): random resized crop scale (0.08, 1), ratio (3/4, 4/3), flip 0.5,
    /// colour jitter (0.4, 0.4, 0.4, 0.1) with p = 0.8, grayscale p = 0.2, CIFAR-10 statistics.
    pub fn simclr(out_size: usize) -> Self {
        ViewRecipe {
            out_size,
            crop_scale: (0.08, 1.0),
            crop_ratio: (3.0 / 4.0, 4.0 / 3.0),
            flip_p: 0.5,
            jitter_p: 0.8,
            brightness: 0.4,
            contrast: 0.4,
            saturation: 0.4,
            hue: 0.1,
            grayscale_p: 0.2,
            blur_p: 0.0,
            blur_sigma: (0.1, 2.0),
            solarize_p: 0.0,
            mean: CIFAR10_MEAN,
            std: CIFAR10_STD,
        }
    }

    /// SimCLR's ImageNet augmentation (appendix A): as [`simclr`](Self::simclr) but with the
    /// paper's ImageNet colour distortion strength 1 (jitter 0.8, 0.8, 0.8, 0.2), Gaussian blur
    /// with p = 0.5 and σ ∈ [0.1, 2.0], and ImageNet statistics.
    pub fn simclr_imagenet(out_size: usize) -> Self {
        ViewRecipe {
            blur_p: 0.5,
            mean: IMAGENET_MEAN,
            std: IMAGENET_STD,
            ..Self::simclr(out_size)
        }
        .color_strength(1.0)
    }

    /// Evaluation view, nothing random: the whole image (or its centred square, if it is not
    /// square) resized to `out_size`, normalised with CIFAR-10 statistics (set `mean`/`std` for
    /// other data). [`apply_eval`](Self::apply_eval) renders it without drawing anything.
    pub fn eval(out_size: usize) -> Self {
        ViewRecipe {
            out_size,
            crop_scale: (1.0, 1.0),
            crop_ratio: (1.0, 1.0),
            flip_p: 0.0,
            jitter_p: 0.0,
            brightness: 0.0,
            contrast: 0.0,
            saturation: 0.0,
            hue: 0.0,
            grayscale_p: 0.0,
            blur_p: 0.0,
            blur_sigma: (0.1, 2.0),
            solarize_p: 0.0,
            mean: CIFAR10_MEAN,
            std: CIFAR10_STD,
        }
    }

    /// SimCLR's colour distortion of strength `s` (appendix A, `color_distort(s)`): jitter
    /// strengths `(0.8s, 0.8s, 0.8s, 0.2s)`. CIFAR uses s = 0.5, ImageNet s = 1.
    pub fn color_strength(mut self, s: f32) -> Self {
        self.brightness = 0.8 * s;
        self.contrast = 0.8 * s;
        self.saturation = 0.8 * s;
        self.hue = 0.2 * s;
        self
    }

    /// Checks every field's range; the error names the first bad field and its value.
    pub fn validate(&self) -> Result<(), AugmentError> {
        fn bad(
            field: &'static str,
            value: impl std::fmt::Debug,
            expected: &'static str,
        ) -> AugmentError {
            AugmentError::InvalidRecipe {
                field,
                value: format!("{value:?}"),
                expected,
            }
        }
        if self.out_size == 0 {
            return Err(bad(
                "out_size",
                self.out_size,
                "a positive number of pixels",
            ));
        }
        let (lo, hi) = self.crop_scale;
        if !(lo > 0.0 && lo <= hi && hi <= 1.0) {
            return Err(bad(
                "crop_scale",
                self.crop_scale,
                "(lo, hi) with 0 < lo ≤ hi ≤ 1",
            ));
        }
        let (lo, hi) = self.crop_ratio;
        if !(lo > 0.0 && lo <= hi && hi.is_finite()) {
            return Err(bad(
                "crop_ratio",
                self.crop_ratio,
                "(lo, hi) with 0 < lo ≤ hi, finite",
            ));
        }
        for (field, p) in [
            ("flip_p", self.flip_p),
            ("jitter_p", self.jitter_p),
            ("grayscale_p", self.grayscale_p),
            ("blur_p", self.blur_p),
            ("solarize_p", self.solarize_p),
        ] {
            if !(0.0..=1.0).contains(&p) {
                return Err(bad(field, p, "a probability in [0, 1]"));
            }
        }
        for (field, s) in [
            ("brightness", self.brightness),
            ("contrast", self.contrast),
            ("saturation", self.saturation),
        ] {
            if !(s >= 0.0 && s.is_finite()) {
                return Err(bad(field, s, "a finite strength ≥ 0 (0 disables it)"));
            }
        }
        if !(0.0..=0.5).contains(&self.hue) {
            return Err(bad("hue", self.hue, "in [0, 0.5] turns (0 disables it)"));
        }
        let (lo, hi) = self.blur_sigma;
        if !(lo > 0.0 && lo <= hi && hi.is_finite()) {
            return Err(bad(
                "blur_sigma",
                self.blur_sigma,
                "(lo, hi) with 0 < lo ≤ hi, finite",
            ));
        }
        if !self.mean.iter().all(|m| m.is_finite()) {
            return Err(bad("mean", self.mean, "finite in every channel"));
        }
        if !self.std.iter().all(|&s| s > 0.0 && s.is_finite()) {
            return Err(bad("std", self.std, "finite and > 0 in every channel"));
        }
        Ok(())
    }

    /// Draws the random parameters of one view of an `h × w` image, in a fixed order: crop,
    /// flip, jitter, grayscale, blur, solarize.
    pub fn sample_params(&self, h: usize, w: usize, rng: &mut Rng) -> ViewParams {
        let crop = sample_crop(h, w, self.crop_scale, self.crop_ratio, rng);
        let flip = rng.bernoulli(self.flip_p);
        let jitter = if rng.bernoulli(self.jitter_p) {
            Jitter::sample(
                rng,
                self.brightness,
                self.contrast,
                self.saturation,
                self.hue,
            )
        } else {
            Jitter::none()
        };
        let grayscale = rng.bernoulli(self.grayscale_p);
        let blur_sigma = rng
            .bernoulli(self.blur_p)
            .then(|| rng.range(self.blur_sigma.0, self.blur_sigma.1));
        let solarize = rng.bernoulli(self.solarize_p);
        ViewParams {
            crop,
            flip,
            jitter,
            grayscale,
            blur_sigma,
            solarize,
        }
    }

    /// Writes one random view of `src` (u8 [h, w, 3]) to `out` (f32 [out_size, out_size, 3],
    /// normalised). The same `rng` state gives the same view.
    pub fn apply(&self, src: &[u8], h: usize, w: usize, rng: &mut Rng, out: &mut [f32]) {
        let params = self.sample_params(h, w, rng);
        self.render(&params, src, h, w, out);
    }

    /// Writes the deterministic evaluation view: torchvision's centre crop for `crop_ratio`
    /// (the whole image when its aspect ratio is in range), resized to `out_size`, normalised.
    /// Every probability of the recipe is ignored.
    pub fn apply_eval(&self, src: &[u8], h: usize, w: usize, out: &mut [f32]) {
        self.render(
            &ViewParams::plain(center_crop(h, w, self.crop_ratio)),
            src,
            h,
            w,
            out,
        );
    }

    /// Renders a view with drawn `params` (see the module docs for the passes). Uses
    /// thread-local scratch buffers, so it allocates only the first time a thread sees a size.
    pub fn render(&self, params: &ViewParams, src: &[u8], h: usize, w: usize, out: &mut [f32]) {
        thread_local! {
            static SCRATCH: RefCell<Scratch> = RefCell::new(Scratch::default());
        }
        SCRATCH.with(|s| self.render_with(params, src, h, w, out, &mut s.borrow_mut()));
    }

    fn render_with(
        &self,
        p: &ViewParams,
        src: &[u8],
        h: usize,
        w: usize,
        out: &mut [f32],
        s: &mut Scratch,
    ) {
        let n = self.out_size;
        // 1. [n, n, 3] in [0, 1]
        resized_crop(src, h, w, p.crop, p.flip, (n, n), out, &mut s.crop);

        // 2. Colour jitter, one tight loop per op.
        p.jitter.apply(out);

        // 3. Grayscale, and the tail if nothing spatial comes after.
        let norm = Normalize::new(self.mean, self.std);
        let finish_here = p.blur_sigma.is_none();
        for px in out.chunks_exact_mut(3) {
            let mut v = load(px);
            if p.grayscale {
                v = grayscale(v);
            }
            if finish_here {
                v = tail(v, p.solarize, &norm);
            }
            store(px, v);
        }

        // 4. Blur, then the tail.
        if let Some(sigma) = p.blur_sigma {
            gaussian_blur(out, n, n, sigma, kernel_size(n), &mut s.blur);
            for px in out.chunks_exact_mut(3) {
                store(px, tail(load(px), p.solarize, &norm));
            }
        }
    }
}

/// The random draws of one view; [`ViewRecipe::render`] turns them into pixels.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ViewParams {
    pub crop: CropBox,
    pub flip: bool,
    pub jitter: Jitter,
    pub grayscale: bool,
    /// σ of the blur, if blurred.
    pub blur_sigma: Option<f32>,
    pub solarize: bool,
}

impl ViewParams {
    /// This crop resized, and nothing else.
    pub fn plain(crop: CropBox) -> Self {
        ViewParams {
            crop,
            flip: false,
            jitter: Jitter::none(),
            grayscale: false,
            blur_sigma: None,
            solarize: false,
        }
    }
}

#[derive(Debug, Default)]
struct Scratch {
    crop: CropScratch,
    blur: BlurScratch,
}

#[inline]
fn load(px: &[f32]) -> [f32; 3] {
    [px[0], px[1], px[2]]
}

#[inline]
fn store(px: &mut [f32], v: [f32; 3]) {
    px.copy_from_slice(&v);
}

/// Solarize if drawn, then normalise.
#[inline]
fn tail(v: [f32; 3], solar: bool, norm: &Normalize) -> [f32; 3] {
    norm.pixel(if solar { v.map(solarize) } else { v })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::augment::blur::gaussian_blur;
    use crate::augment::color_jitter::JitterOp;
    use crate::augment::grayscale::grayscale_image;
    use crate::augment::normalize::normalize_image;
    use crate::augment::solarize::solarize_image;

    fn noise(len: usize, seed: u64) -> Vec<u8> {
        let mut r = Rng::new(seed);
        (0..len).map(|_| r.below(256) as u8).collect()
    }

    /// Every op applied on its own, one pass each, from the op files.
    fn reference(recipe: &ViewRecipe, p: &ViewParams, src: &[u8], h: usize, w: usize) -> Vec<f32> {
        let n = recipe.out_size;
        let mut img = vec![0.0; n * n * 3];
        resized_crop(
            src,
            h,
            w,
            p.crop,
            p.flip,
            (n, n),
            &mut img,
            &mut CropScratch::default(),
        );
        p.jitter.apply(&mut img);
        if p.grayscale {
            grayscale_image(&mut img);
        }
        if let Some(sigma) = p.blur_sigma {
            gaussian_blur(
                &mut img,
                n,
                n,
                sigma,
                kernel_size(n),
                &mut BlurScratch::default(),
            );
        }
        if p.solarize {
            solarize_image(&mut img);
        }
        normalize_image(&mut img, recipe.mean, recipe.std);
        img
    }

    #[test]
    fn presets_validate() {
        for r in [
            ViewRecipe::simclr(32),
            ViewRecipe::simclr_imagenet(224),
            ViewRecipe::eval(32),
        ] {
            r.validate().unwrap();
        }
        let im = ViewRecipe::simclr_imagenet(224);
        assert_eq!((im.brightness, im.hue, im.blur_p), (0.8, 0.2, 0.5));
    }

    #[test]
    fn eval_recipe_equals_plain_normalisation() {
        let (h, w) = (8, 8);
        let src = noise(h * w * 3, 1);
        let r = ViewRecipe::eval(8);
        let mut a = vec![0.0; 8 * 8 * 3];
        let mut b = vec![0.0; 8 * 8 * 3];
        r.apply(&src, h, w, &mut Rng::new(3), &mut a);
        r.apply_eval(&src, h, w, &mut b);
        for ((&x, &y), (k, &s)) in a.iter().zip(&b).zip(src.iter().enumerate()) {
            let c = k % 3;
            let want = (s as f32 / 255.0 - r.mean[c]) / r.std[c];
            assert!(
                (x - want).abs() < 1e-5 && (y - want).abs() < 1e-5,
                "{x} {y} {want}"
            );
        }
    }

    #[test]
    fn eval_of_a_wide_image_takes_the_centre_square() {
        // 4×8 image whose middle 4 columns are 255, rest 0: eval(4) sees only the middle.
        let (h, w) = (4, 8);
        let mut src = vec![0u8; h * w * 3];
        for y in 0..h {
            src[(y * w + 2) * 3..(y * w + 6) * 3].fill(255);
        }
        let r = ViewRecipe {
            mean: [0.0; 3],
            std: [1.0; 3],
            ..ViewRecipe::eval(4)
        };
        let mut out = vec![0.0; 4 * 4 * 3];
        r.apply_eval(&src, h, w, &mut out);
        assert!(out.iter().all(|&v| (v - 1.0).abs() < 1e-6), "{out:?}");
    }

    #[test]
    fn fused_render_matches_the_ops_one_by_one() {
        let (h, w) = (20, 28);
        let src = noise(h * w * 3, 2);
        let recipe = ViewRecipe {
            blur_p: 0.5,
            solarize_p: 0.3,
            ..ViewRecipe::simclr(16)
        };
        let mut rng = Rng::new(10);
        let mut seen = [false; 4]; // blurred, solarized, contrast drawn, grayscale
        for _ in 0..300 {
            let p = recipe.sample_params(h, w, &mut rng);
            seen[0] |= p.blur_sigma.is_some();
            seen[1] |= p.solarize;
            seen[2] |= p
                .jitter
                .ops()
                .iter()
                .any(|op| matches!(op, JitterOp::Contrast(_)));
            seen[3] |= p.grayscale;
            let mut fused = vec![0.0; 16 * 16 * 3];
            recipe.render(&p, &src, h, w, &mut fused);
            let want = reference(&recipe, &p, &src, h, w);
            let err = fused
                .iter()
                .zip(&want)
                .map(|(a, b)| (a - b).abs())
                .fold(0.0, f32::max);
            assert!(err < 1e-4, "{p:?}: max error {err}");
        }
        assert_eq!(seen, [true; 4]);
    }

    #[test]
    fn apply_is_deterministic_per_rng_and_differs_across_rngs() {
        let src = noise(32 * 32 * 3, 4);
        let r = ViewRecipe::simclr_imagenet(32);
        let view = |seed| {
            let mut out = vec![0.0; 32 * 32 * 3];
            r.apply(&src, 32, 32, &mut Rng::new(seed), &mut out);
            out
        };
        let (a, b, c) = (view(1), view(1), view(2));
        assert_eq!(
            a.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
            b.iter().map(|v| v.to_bits()).collect::<Vec<_>>()
        );
        assert!(a.iter().zip(&c).any(|(x, y)| (x - y).abs() > 0.1));
        assert!(a.iter().all(|v| v.is_finite()));
    }

    #[test]
    fn validate_rejects_each_bad_field() {
        let ok = ViewRecipe::simclr(32);
        let cases: Vec<(&str, ViewRecipe)> = vec![
            (
                "out_size",
                ViewRecipe {
                    out_size: 0,
                    ..ok.clone()
                },
            ),
            (
                "crop_scale",
                ViewRecipe {
                    crop_scale: (0.0, 1.0),
                    ..ok.clone()
                },
            ),
            (
                "crop_scale",
                ViewRecipe {
                    crop_scale: (0.5, 0.2),
                    ..ok.clone()
                },
            ),
            (
                "crop_scale",
                ViewRecipe {
                    crop_scale: (0.5, 1.5),
                    ..ok.clone()
                },
            ),
            (
                "crop_ratio",
                ViewRecipe {
                    crop_ratio: (0.0, 1.0),
                    ..ok.clone()
                },
            ),
            (
                "crop_ratio",
                ViewRecipe {
                    crop_ratio: (2.0, 1.0),
                    ..ok.clone()
                },
            ),
            (
                "flip_p",
                ViewRecipe {
                    flip_p: 1.5,
                    ..ok.clone()
                },
            ),
            (
                "jitter_p",
                ViewRecipe {
                    jitter_p: -0.1,
                    ..ok.clone()
                },
            ),
            (
                "grayscale_p",
                ViewRecipe {
                    grayscale_p: f32::NAN,
                    ..ok.clone()
                },
            ),
            (
                "blur_p",
                ViewRecipe {
                    blur_p: 2.0,
                    ..ok.clone()
                },
            ),
            (
                "solarize_p",
                ViewRecipe {
                    solarize_p: -1.0,
                    ..ok.clone()
                },
            ),
            (
                "brightness",
                ViewRecipe {
                    brightness: -0.4,
                    ..ok.clone()
                },
            ),
            (
                "contrast",
                ViewRecipe {
                    contrast: f32::INFINITY,
                    ..ok.clone()
                },
            ),
            (
                "saturation",
                ViewRecipe {
                    saturation: f32::NAN,
                    ..ok.clone()
                },
            ),
            (
                "hue",
                ViewRecipe {
                    hue: 0.6,
                    ..ok.clone()
                },
            ),
            (
                "blur_sigma",
                ViewRecipe {
                    blur_sigma: (0.0, 2.0),
                    ..ok.clone()
                },
            ),
            (
                "blur_sigma",
                ViewRecipe {
                    blur_sigma: (2.0, 0.1),
                    ..ok.clone()
                },
            ),
            (
                "mean",
                ViewRecipe {
                    mean: [0.5, f32::NAN, 0.5],
                    ..ok.clone()
                },
            ),
            (
                "std",
                ViewRecipe {
                    std: [0.2, 0.0, 0.2],
                    ..ok.clone()
                },
            ),
        ];
        for (field, r) in cases {
            match r.validate() {
                Err(AugmentError::InvalidRecipe { field: f, .. }) => assert_eq!(f, field),
                other => panic!("{field}: expected an error, got {other:?}"),
            }
        }
        let msg = ViewRecipe {
            crop_scale: (0.5, 0.2),
            ..ok
        }
        .validate()
        .unwrap_err()
        .to_string();
        assert!(
            msg.contains("crop_scale") && msg.contains("(0.5, 0.2)"),
            "{msg}"
        );
    }

    #[test]
    fn recipe_round_trips_through_serde() {
        let r = ViewRecipe::simclr_imagenet(96);
        let back: ViewRecipe = serde_json::from_str(&serde_json::to_string(&r).unwrap()).unwrap();
        assert_eq!(back, r);
    }
}
