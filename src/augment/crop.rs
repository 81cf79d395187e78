//! Random resized crop with horizontal flip (torchvision `RandomResizedCrop` followed by
//! `RandomHorizontalFlip`), resampled straight from the u8 source: no full-size intermediate.
//!
//! Crop box, for an `H × W` image (torchvision `RandomResizedCrop.get_params`):
//! ```text
//! repeat up to 10 times:
//!     a ~ U(scale.0, scale.1) · H·W              target area
//!     r = exp(U(ln ratio.0, ln ratio.1))         aspect ratio w/h
//!     w = round(√(a·r)),  h = round(√(a/r))
//!     if 0 < w ≤ W and 0 < h ≤ H:  top ~ U{0..H−h},  left ~ U{0..W−w};  done
//! otherwise: the centre crop of the whole image clipped to the ratio range (see `center_crop`)
//! ```
//! Resampling is bilinear in torchvision's antialiased form (the PIL / `antialias=True` filter):
//! output pixel `o` of an axis of crop length `L` resized to `N` has its centre at
//! `c = (o + ½)·L/N` in crop coordinates and takes
//! ```text
//! out[o] = Σ_j tri((j + ½ − c)/s) · in[j] / Σ_j tri((j + ½ − c)/s),   s = max(L/N, 1),
//! tri(t) = max(0, 1 − |t|),   j over the pixels of the crop only
//! ```
//! When upsampling (`s = 1`) this is exactly `align_corners=False` bilinear interpolation with
//! edge clamping; when shrinking the triangle widens to cover `L/N` source pixels, so the
//! view does not alias. The two axes are separable: each output row first blends the few source
//! rows it needs into one row of the crop's width, then blends along x. The flip is folded in
//! by mirroring the x taps: `out[o] = resized[N − 1 − o]`.

use crate::rng::Rng;

/// A crop of an image: rows `top..top + height`, columns `left..left + width`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CropBox {
    pub top: usize,
    pub left: usize,
    pub height: usize,
    pub width: usize,
}

impl CropBox {
    /// The whole `h × w` image.
    pub fn full(h: usize, w: usize) -> Self {
        CropBox {
            top: 0,
            left: 0,
            height: h,
            width: w,
        }
    }
}

/// Draws a crop box of an `h × w` image as torchvision's `RandomResizedCrop.get_params`:
/// area fraction `~ U(scale)`, log aspect ratio `~ U(ln ratio)`, 10 tries, then
/// [`center_crop`]. `scale` and `ratio` are `(lo, hi)` with `0 < lo ≤ hi`.
pub fn sample_crop(
    h: usize,
    w: usize,
    scale: (f32, f32),
    ratio: (f32, f32),
    rng: &mut Rng,
) -> CropBox {
    let area = (h * w) as f64;
    let (log_lo, log_hi) = ((ratio.0 as f64).ln(), (ratio.1 as f64).ln());
    for _ in 0..10 {
        let target = area * rng.range(scale.0, scale.1) as f64;
        let aspect = (log_lo + (log_hi - log_lo) * rng.uniform() as f64).exp();
        let cw = (target * aspect).sqrt().round() as usize;
        let ch = (target / aspect).sqrt().round() as usize;
        if 0 < cw && cw <= w && 0 < ch && ch <= h {
            let top = rng.below(h - ch + 1);
            let left = rng.below(w - cw + 1);
            return CropBox {
                top,
                left,
                height: ch,
                width: cw,
            };
        }
    }
    center_crop(h, w, ratio)
}

/// torchvision's fallback crop: the whole image if its aspect ratio `W/H` lies in `ratio`,
/// else the largest centred box whose aspect ratio is the nearest bound:
/// ```text
/// W/H < ratio.0:  w = W, h = round(W / ratio.0)
/// W/H > ratio.1:  h = H, w = round(H · ratio.1)
/// top = ⌊(H − h)/2⌋,  left = ⌊(W − w)/2⌋
/// ```
pub fn center_crop(h: usize, w: usize, ratio: (f32, f32)) -> CropBox {
    let in_ratio = w as f64 / h as f64;
    let (ch, cw) = if in_ratio < ratio.0 as f64 {
        (
            ((w as f64 / ratio.0 as f64).round() as usize).clamp(1, h),
            w,
        )
    } else if in_ratio > ratio.1 as f64 {
        (
            h,
            ((h as f64 * ratio.1 as f64).round() as usize).clamp(1, w),
        )
    } else {
        (h, w)
    };
    CropBox {
        top: (h - ch) / 2,
        left: (w - cw) / 2,
        height: ch,
        width: cw,
    }
}

/// Reusable buffers for [`resized_crop`]; their contents are overwritten on every call.
#[derive(Debug, Default)]
pub struct CropScratch {
    x: Taps,
    y: Taps,
    row: Vec<f32>,
}

/// The filter taps of one axis: output `o` reads `stride` consecutive inputs starting at
/// `start[o]` with weights `weights[o * stride..][..stride]` (trailing weights may be 0).
#[derive(Debug, Default)]
struct Taps {
    start: Vec<usize>,
    weights: Vec<f32>,
    stride: usize,
}

impl Taps {
    /// Taps resizing an axis of `len` pixels to `out_len`, mirrored if `mirror`, every weight
    /// multiplied by `gain` (used to fold the u8 → [0, 1] scaling into the filter).
    fn build(&mut self, len: usize, out_len: usize, mirror: bool, gain: f32) {
        let scale = len as f64 / out_len as f64;
        let support = scale.max(1.0);
        // The open interval |j + ½ − c| < s holds at most ⌈2s⌉ integers.
        let stride = ((2.0 * support).ceil() as usize).clamp(1, len);
        self.stride = stride;
        self.start.clear();
        self.weights.clear();
        for o in 0..out_len {
            let i = if mirror { out_len - 1 - o } else { o };
            let center = (i as f64 + 0.5) * scale;
            // First j with j + ½ > c − s, kept inside the crop with the window in range.
            let first = ((center - support - 0.5).floor() + 1.0).max(0.0) as usize;
            let start = first.min(len - stride);
            let at = self.weights.len();
            let mut total = 0.0;
            for j in start..start + stride {
                let t = ((j as f64 + 0.5 - center) / support).abs();
                let wt = (1.0 - t).max(0.0);
                total += wt;
                self.weights.push(wt as f32);
            }
            let norm = gain as f64 / total;
            for wt in &mut self.weights[at..] {
                *wt = (*wt as f64 * norm) as f32;
            }
            self.start.push(start);
        }
    }
}

/// Resamples `crop` of the u8 image `src` ([h, w, 3]) to `out` ([out_h, out_w, 3] f32 in
/// [0, 1]), mirrored left–right if `flip`, with the bilinear filter of the module docs.
#[allow(clippy::too_many_arguments)]
pub fn resized_crop(
    src: &[u8],
    h: usize,
    w: usize,
    crop: CropBox,
    flip: bool,
    (out_h, out_w): (usize, usize),
    out: &mut [f32],
    scratch: &mut CropScratch,
) {
    assert_eq!(
        src.len(),
        h * w * 3,
        "source is {} bytes, not {h}×{w}×3",
        src.len()
    );
    assert!(
        crop.height > 0
            && crop.width > 0
            && crop.top + crop.height <= h
            && crop.left + crop.width <= w,
        "crop {crop:?} is not inside the {h}×{w} image"
    );
    assert_eq!(
        out.len(),
        out_h * out_w * 3,
        "output is {} floats, not {out_h}×{out_w}×3",
        out.len()
    );
    let CropScratch { x, y, row } = scratch;
    y.build(crop.height, out_h, false, 1.0 / 255.0);
    x.build(crop.width, out_w, flip, 1.0);
    let row_len = crop.width * 3;
    row.clear();
    row.resize(row_len, 0.0);
    for (oy, out_row) in out.chunks_exact_mut(out_w * 3).enumerate() {
        // Blend the source rows of this output row: row = Σ_t wy_t · src[y_t, crop columns].
        row.fill(0.0);
        let y0 = crop.top + y.start[oy];
        for (t, &wt) in y.weights[oy * y.stride..][..y.stride].iter().enumerate() {
            if wt == 0.0 {
                continue;
            }
            let src_row = &src[((y0 + t) * w + crop.left) * 3..][..row_len];
            for (r, &v) in row.iter_mut().zip(src_row) {
                *r += wt * v as f32;
            }
        }
        // Then along x: out[o] = Σ_t wx_t · row[x_t].
        if x.stride == 2 {
            for (ox, px) in out_row.chunks_exact_mut(3).enumerate() {
                let (w0, w1) = (x.weights[2 * ox], x.weights[2 * ox + 1]);
                let a = &row[x.start[ox] * 3..][..6];
                px[0] = w0 * a[0] + w1 * a[3];
                px[1] = w0 * a[1] + w1 * a[4];
                px[2] = w0 * a[2] + w1 * a[5];
            }
        } else {
            for (ox, px) in out_row.chunks_exact_mut(3).enumerate() {
                let mut acc = [0f32; 3];
                let taps = &x.weights[ox * x.stride..][..x.stride];
                let a = &row[x.start[ox] * 3..][..x.stride * 3];
                for (&wt, p) in taps.iter().zip(a.chunks_exact(3)) {
                    acc[0] += wt * p[0];
                    acc[1] += wt * p[1];
                    acc[2] += wt * p[2];
                }
                px.copy_from_slice(&acc);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn noise(h: usize, w: usize, seed: u64) -> Vec<u8> {
        let mut r = Rng::new(seed);
        (0..h * w * 3).map(|_| r.below(256) as u8).collect()
    }

    fn crop_to_vec(
        src: &[u8],
        h: usize,
        w: usize,
        c: CropBox,
        flip: bool,
        oh: usize,
        ow: usize,
    ) -> Vec<f32> {
        let mut out = vec![0.0; oh * ow * 3];
        resized_crop(
            src,
            h,
            w,
            c,
            flip,
            (oh, ow),
            &mut out,
            &mut CropScratch::default(),
        );
        out
    }

    #[test]
    fn full_scale_square_crop_without_flip_is_identity() {
        let (h, w) = (9, 9);
        let src = noise(h, w, 1);
        let mut rng = Rng::new(5);
        for _ in 0..20 {
            let c = sample_crop(h, w, (1.0, 1.0), (1.0, 1.0), &mut rng);
            assert_eq!(c, CropBox::full(h, w));
            let out = crop_to_vec(&src, h, w, c, false, h, w);
            for (&o, &s) in out.iter().zip(&src) {
                assert!((o - s as f32 / 255.0).abs() < 1e-6, "{o} vs {s}/255");
                assert_eq!((o * 255.0).round() as u8, s);
            }
        }
    }

    #[test]
    fn flip_mirrors_a_2x3_image_exactly() {
        // Rows: [p0 p1 p2], [p3 p4 p5]; pixel k has channels (10k, 10k + 1, 10k + 2).
        let src: Vec<u8> = (0..6u8)
            .flat_map(|k| [10 * k, 10 * k + 1, 10 * k + 2])
            .collect();
        let out = crop_to_vec(&src, 2, 3, CropBox::full(2, 3), true, 2, 3);
        let got: Vec<u8> = out.iter().map(|&v| (v * 255.0).round() as u8).collect();
        let want: Vec<u8> = [2u8, 1, 0, 5, 4, 3]
            .iter()
            .flat_map(|&k| [10 * k, 10 * k + 1, 10 * k + 2])
            .collect();
        assert_eq!(got, want);
        for (&o, &s) in out.iter().zip(&want) {
            assert!((o - s as f32 / 255.0).abs() < 1e-6);
        }
    }

    #[test]
    fn crop_of_a_constant_image_is_constant() {
        let (h, w) = (13, 17);
        let src = vec![77u8; h * w * 3];
        let mut rng = Rng::new(9);
        // Up- and downsampling both.
        for &(oh, ow) in &[(32, 32), (5, 7), (13, 17)] {
            for _ in 0..20 {
                let c = sample_crop(h, w, (0.08, 1.0), (0.75, 4.0 / 3.0), &mut rng);
                let flip = rng.bernoulli(0.5);
                let out = crop_to_vec(&src, h, w, c, flip, oh, ow);
                assert!(
                    out.iter().all(|&v| (v - 77.0 / 255.0).abs() < 1e-6),
                    "{c:?} {oh}x{ow}"
                );
            }
        }
    }

    #[test]
    fn sampled_crops_lie_inside_the_image_with_area_in_scale_range() {
        let mut rng = Rng::new(11);
        let (scale, ratio) = ((0.08f32, 1.0f32), (0.75f32, 4.0f32 / 3.0));
        for &(h, w) in &[(32, 32), (60, 100), (100, 60)] {
            let mut fracs = Vec::new();
            for _ in 0..5000 {
                let c = sample_crop(h, w, scale, ratio, &mut rng);
                assert!(c.height > 0 && c.width > 0, "{c:?}");
                assert!(
                    c.top + c.height <= h && c.left + c.width <= w,
                    "{c:?} outside {h}x{w}"
                );
                // Rounding w and h moves the area by at most (w + h)/2 + 1/4 pixels.
                let slack = (c.width + c.height) as f64 / 2.0 + 0.25;
                let area = (c.width * c.height) as f64;
                let hw = (h * w) as f64;
                assert!(
                    area >= scale.0 as f64 * hw - slack && area <= scale.1 as f64 * hw + slack,
                    "{c:?}"
                );
                fracs.push(area / hw);
            }
            // Both small and large crops occur (at most 60×80 fits a 60×100 image at ratio 4/3).
            assert!(
                fracs.iter().any(|&f| f < 0.2) && fracs.iter().any(|&f| f >= 0.75),
                "{h}x{w}"
            );
        }
    }

    #[test]
    fn sampled_crops_respect_the_ratio_range() {
        let mut rng = Rng::new(12);
        for _ in 0..2000 {
            let c = sample_crop(200, 200, (0.3, 1.0), (0.5, 2.0), &mut rng);
            let r = c.width as f64 / c.height as f64;
            // ±½ pixel rounding on each side of a box at least √(0.3·200²/2) ≈ 77 px long.
            assert!(r > 0.5 * 0.98 && r < 2.0 * 1.02, "{c:?}");
        }
    }

    #[test]
    fn center_crop_follows_torchvision_fallback() {
        assert_eq!(
            center_crop(32, 32, (0.75, 4.0 / 3.0)),
            CropBox::full(32, 32)
        );
        // W/H = 100/50 = 2 > 4/3: h = 50, w = round(50·4/3) = 67, left = ⌊33/2⌋ = 16.
        assert_eq!(
            center_crop(50, 100, (0.75, 4.0 / 3.0)),
            CropBox {
                top: 0,
                left: 16,
                height: 50,
                width: 67
            }
        );
        // W/H = 0.5 < 1: w = 50, h = 50, top = 25.
        assert_eq!(
            center_crop(100, 50, (1.0, 1.0)),
            CropBox {
                top: 25,
                left: 0,
                height: 50,
                width: 50
            }
        );
        // An impossible scale (target area > image) always falls back.
        let mut rng = Rng::new(1);
        assert_eq!(
            sample_crop(50, 100, (1.0, 1.0), (1.0, 1.0), &mut rng),
            CropBox {
                top: 0,
                left: 25,
                height: 50,
                width: 50
            }
        );
    }

    #[test]
    fn upsampling_is_align_corners_false_bilinear() {
        // One row of 2 pixels [0, 255] (all channels) → 4: centres at c = 0.25, 0.75, 1.25, 1.75,
        // source x = c − ½ = −0.25 → 0 (clamped), 0.25, 0.75, 1.25 → 1 (clamped).
        let src: Vec<u8> = [0u8, 255].iter().flat_map(|&v| [v; 3]).collect();
        let out = crop_to_vec(&src, 1, 2, CropBox::full(1, 2), false, 1, 4);
        let want = [0.0, 0.25, 0.75, 1.0];
        for (px, &e) in out.chunks(3).zip(&want) {
            assert!(px.iter().all(|&v| (v - e).abs() < 1e-6), "{px:?} vs {e}");
        }
    }

    #[test]
    fn downsampling_by_two_averages_pixel_pairs() {
        // 1×4 → 1×2: s = 2, centre c = 1 for output 0, weights tri((j+½−1)/2) = ¾, ¾ for j = 0, 1,
        // ¼ for j = 2, normalised: (3·a0 + 3·a1 + a2)/7.
        let vals = [0u8, 70, 140, 210];
        let src: Vec<u8> = vals.iter().flat_map(|&v| [v; 3]).collect();
        let out = crop_to_vec(&src, 1, 4, CropBox::full(1, 4), false, 1, 2);
        let e0 = (3.0 * 0.0 + 3.0 * 70.0 + 140.0) / 7.0 / 255.0;
        let e1 = (70.0 + 3.0 * 140.0 + 3.0 * 210.0) / 7.0 / 255.0;
        assert!(
            (out[0] - e0).abs() < 1e-6 && (out[3] - e1).abs() < 1e-6,
            "{out:?}"
        );
    }

    #[test]
    fn crop_reads_only_inside_the_box() {
        // Image is 0 everywhere except a 4×4 box of 200 at (3, 5): cropping exactly that box
        // must give 200 everywhere, at any output size.
        let (h, w) = (12, 14);
        let mut src = vec![0u8; h * w * 3];
        for y in 3..7 {
            for x in 5..9 {
                src[(y * w + x) * 3..][..3].fill(200);
            }
        }
        let c = CropBox {
            top: 3,
            left: 5,
            height: 4,
            width: 4,
        };
        for n in [1, 3, 4, 9] {
            let out = crop_to_vec(&src, h, w, c, true, n, n);
            assert!(
                out.iter().all(|&v| (v - 200.0 / 255.0).abs() < 1e-6),
                "n = {n}: {out:?}"
            );
        }
    }
}
