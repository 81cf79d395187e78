//! Colour jitter (torchvision `ColorJitter`, applied by SimCLR with `RandomApply(p = 0.8)`).
//!
//! With strengths `(b, c, s, h)` the factors are drawn once per image,
//! ```text
//! β ~ U(max(0, 1 − b), 1 + b),  γ ~ U(max(0, 1 − c), 1 + c),
//! σ ~ U(max(0, 1 − s), 1 + s),  δ ~ U(−h, h)
//! ```
//! and the four ops run in a uniformly random order (a strength of 0 drops its op). Each is a
//! blend `blend(x, y, f) = clamp(f·x + (1 − f)·y, 0, 1)` or a hue rotation:
//! ```text
//! brightness:  x' = blend(x, 0, β)
//! contrast:    x' = blend(x, m, γ),   m = mean over the image of the luma L (grayscale.rs)
//! saturation:  x' = blend(x, L(pixel), σ)
//! hue:         HSV of the pixel, H' = (H + δ) mod 1, back to RGB   (H in turns, [0, 1))
//! ```
//! The hue op is the HSV rotation torchvision performs (not a YIQ approximation). With
//! `v = max`, `n = min`, chroma `C = v − n`, the round trip is written without `S = C/v`:
//! the sector `i = ⌊6H'⌋`, fraction `f = 6H' − i`, rising `t = n + C·f`, falling `q = v − C·f`,
//! and `(R, G, B)` is `(v,t,n) (q,v,n) (n,v,t) (n,q,v) (t,n,v) (v,n,q)` for `i = 0..5`
//! (computed per channel without branching, see `channel`). Grey pixels (`C = 0`) are
//! unchanged.

use super::grayscale::luma;
use crate::rng::Rng;

/// One op of the jitter with its drawn factor.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum JitterOp {
    /// Brightness factor β.
    Brightness(f32),
    /// Contrast factor γ.
    Contrast(f32),
    /// Saturation factor σ.
    Saturation(f32),
    /// Hue shift δ in turns.
    Hue(f32),
}

impl JitterOp {
    /// Applies this op to one pixel. `gray_mean` is the image's mean luma, used by contrast only.
    #[inline]
    pub fn pixel(self, px: [f32; 3], gray_mean: f32) -> [f32; 3] {
        match self {
            JitterOp::Brightness(f) => brightness(px, f),
            JitterOp::Contrast(f) => contrast(px, f, gray_mean),
            JitterOp::Saturation(f) => saturation(px, f),
            JitterOp::Hue(d) => hue(px, d),
        }
    }

    /// Applies this op to every pixel of an HWC image, choosing the op once.
    pub fn apply_image(self, img: &mut [f32], gray_mean: f32) {
        fn each_pixel(img: &mut [f32], f: impl Fn([f32; 3]) -> [f32; 3]) {
            for px in img.chunks_exact_mut(3) {
                px.copy_from_slice(&f([px[0], px[1], px[2]]));
            }
        }
        match self {
            // Brightness and contrast act on each value alone: flat loops.
            JitterOp::Brightness(f) => img.iter_mut().for_each(|x| *x = blend(*x, 0.0, f)),
            JitterOp::Contrast(f) => img.iter_mut().for_each(|x| *x = blend(*x, gray_mean, f)),
            JitterOp::Saturation(f) => each_pixel(img, |p| saturation(p, f)),
            JitterOp::Hue(d) => each_pixel(img, |p| hue(p, d)),
        }
    }
}

/// A drawn colour jitter: up to four ops in the order they apply.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Jitter {
    ops: [JitterOp; 4],
    len: usize,
}

impl Jitter {
    /// No op at all.
    pub fn none() -> Self {
        Jitter {
            ops: [JitterOp::Brightness(1.0); 4],
            len: 0,
        }
    }

    /// These ops, in this order (at most 4).
    pub fn new(ops: &[JitterOp]) -> Self {
        assert!(
            ops.len() <= 4,
            "a colour jitter has at most 4 ops, got {}",
            ops.len()
        );
        let mut j = Jitter::none();
        j.ops[..ops.len()].copy_from_slice(ops);
        j.len = ops.len();
        j
    }

    /// Draws the factors and a random order as torchvision's `ColorJitter.get_params`; a
    /// strength of 0 leaves its op out. Strengths must be ≥ 0, `hue` ≤ 0.5.
    pub fn sample(
        rng: &mut Rng,
        brightness: f32,
        contrast: f32,
        saturation: f32,
        hue: f32,
    ) -> Self {
        // Fisher–Yates on the four op slots.
        let mut order = [0usize, 1, 2, 3];
        for i in (1..4).rev() {
            order.swap(i, rng.below(i + 1));
        }
        let factor =
            |rng: &mut Rng, s: f32| (s > 0.0).then(|| rng.range((1.0 - s).max(0.0), 1.0 + s));
        let drawn = [
            factor(rng, brightness).map(JitterOp::Brightness),
            factor(rng, contrast).map(JitterOp::Contrast),
            factor(rng, saturation).map(JitterOp::Saturation),
            (hue > 0.0).then(|| JitterOp::Hue(rng.range(-hue, hue))),
        ];
        let mut j = Jitter::none();
        for op in order.iter().filter_map(|&k| drawn[k]) {
            j.ops[j.len] = op;
            j.len += 1;
        }
        j
    }

    /// The ops in the order they apply.
    pub fn ops(&self) -> &[JitterOp] {
        &self.ops[..self.len]
    }

    /// Applies the jitter to an HWC image in [0, 1], one pass per op. (Fusing the ops per pixel
    /// was measured slower on 32×32 views: the image stays in L1 cache, and a loop per op
    /// avoids choosing the op at every pixel and lets brightness and contrast vectorise.)
    pub fn apply(&self, img: &mut [f32]) {
        for &op in self.ops() {
            let m = match op {
                JitterOp::Contrast(_) => gray_mean(img),
                _ => 0.0,
            };
            op.apply_image(img, m);
        }
    }
}

/// The mean luma of an HWC image (what contrast blends towards).
pub fn gray_mean(img: &[f32]) -> f32 {
    let n = img.len() / 3;
    let total: f64 = img
        .chunks_exact(3)
        .map(|p| luma([p[0], p[1], p[2]]) as f64)
        .sum();
    (total / n.max(1) as f64) as f32
}

/// `clamp(f·x + (1 − f)·y, 0, 1)`, torchvision's `_blend`.
#[inline]
fn blend(x: f32, y: f32, f: f32) -> f32 {
    (f * x + (1.0 - f) * y).clamp(0.0, 1.0)
}

/// `x' = clamp(β·x, 0, 1)`.
#[inline]
pub fn brightness(px: [f32; 3], beta: f32) -> [f32; 3] {
    px.map(|x| blend(x, 0.0, beta))
}

/// `x' = clamp(γ·x + (1 − γ)·m, 0, 1)` with `m` the image's mean luma.
#[inline]
pub fn contrast(px: [f32; 3], gamma: f32, gray_mean: f32) -> [f32; 3] {
    px.map(|x| blend(x, gray_mean, gamma))
}

/// `x' = clamp(σ·x + (1 − σ)·L, 0, 1)` with `L` this pixel's luma.
#[inline]
pub fn saturation(px: [f32; 3], sigma: f32) -> [f32; 3] {
    let l = luma(px);
    px.map(|x| blend(x, l, sigma))
}

/// Rotates the hue by `delta` turns in HSV: `H' = (H + δ) mod 1`, S and V kept.
#[inline]
pub fn hue(px: [f32; 3], delta: f32) -> [f32; 3] {
    let [r, g, b] = px;
    let v = r.max(g).max(b);
    let n = r.min(g).min(b);
    let c = v - n;
    // Grey (C = 0): any hue works, since every channel comes back as v − 0·(…) = v.
    let inv_c = if c > 0.0 { 1.0 / c } else { 0.0 };
    // Hue in sixths of a turn, in (−1, 5]; torchvision breaks ties max = R first, then G.
    // All three candidates are computed and one selected, which avoids a branch per pixel.
    let from_r = (g - b) * inv_c;
    let from_g = 2.0 + (b - r) * inv_c;
    let from_b = 4.0 + (r - g) * inv_c;
    let h6 = if v == r {
        from_r
    } else if v == g {
        from_g
    } else {
        from_b
    };
    // Shifted hue in sixths, reduced to [0, 6) with integer floor (no libm call).
    let x = h6 + 6.0 * delta;
    let mut k = x as i32;
    if (k as f32) > x {
        k -= 1;
    }
    let sector = k.rem_euclid(6) as f32;
    let x = sector + (x - k as f32);
    [
        channel(x, 5.0, v, c),
        channel(x, 3.0, v, c),
        channel(x, 1.0, v, c),
    ]
}

/// One channel of HSV → RGB without branching on the sector: with `a = (offset + x) mod 6`,
/// the channel is `v − C·clamp(min(a, 4 − a), 0, 1)` (R, G, B use offsets 5, 3, 1). This is
/// the sector table of the module docs written per channel.
#[inline]
fn channel(x: f32, offset: f32, v: f32, c: f32) -> f32 {
    let a = offset + x;
    let a = if a >= 6.0 { a - 6.0 } else { a };
    v - c * a.min(4.0 - a).clamp(0.0, 1.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    const PX: [f32; 3] = [0.2, 0.4, 0.6]; // luma 0.363

    fn close(a: [f32; 3], b: [f32; 3], tol: f32) -> bool {
        a.iter().zip(&b).all(|(x, y)| (x - y).abs() <= tol)
    }

    #[test]
    fn brightness_by_hand() {
        assert!(close(brightness(PX, 1.5), [0.3, 0.6, 0.9], 1e-6));
        assert!(close(brightness(PX, 3.0), [0.6, 1.0, 1.0], 1e-6)); // clamped
        assert!(close(brightness(PX, 0.0), [0.0; 3], 0.0));
    }

    #[test]
    fn contrast_by_hand() {
        // 0.5·x + 0.5·0.363
        assert!(close(
            contrast(PX, 0.5, 0.363),
            [0.2815, 0.3815, 0.4815],
            1e-6
        ));
        assert!(close(contrast(PX, 0.0, 0.363), [0.363; 3], 1e-6));
        // 3·x − 2·0.5 = (−0.4, 0.2, 0.8) → clamped below
        assert!(close(contrast(PX, 3.0, 0.5), [0.0, 0.2, 0.8], 1e-6));
    }

    #[test]
    fn contrast_blends_with_the_image_mean_luma() {
        // Two pixels, luma 0.363 and 1.0: m = 0.6815. γ = 0.5: x' = 0.5·x + 0.34075.
        let mut img = vec![0.2, 0.4, 0.6, 1.0, 1.0, 1.0];
        Jitter::new(&[JitterOp::Contrast(0.5)]).apply(&mut img);
        let want = [0.44075, 0.54075, 0.64075, 0.84075, 0.84075, 0.84075];
        assert!(
            img.iter().zip(&want).all(|(a, b)| (a - b).abs() < 1e-6),
            "{img:?}"
        );
    }

    #[test]
    fn saturation_by_hand() {
        assert!(close(saturation(PX, 0.0), [0.363; 3], 1e-6));
        // 2·x − 0.363
        assert!(close(saturation(PX, 2.0), [0.037, 0.437, 0.837], 1e-6));
    }

    #[test]
    fn hue_by_hand() {
        // PX: v = 0.6 (B), n = 0.2, C = 0.4, H = (4 + (0.2 − 0.4)/0.4)/6 = 3.5/6.
        // + ½ turn → H' = 0.5/6: sector 0, f = 0.5 → (v, n + C/2, n) = (0.6, 0.4, 0.2).
        assert!(close(hue(PX, 0.5), [0.6, 0.4, 0.2], 1e-6));
        // Pure red + ⅓ turn is green, + ⅔ is blue, − ⅓ is blue.
        assert!(close(
            hue([1.0, 0.0, 0.0], 1.0 / 3.0),
            [0.0, 1.0, 0.0],
            1e-6
        ));
        assert!(close(
            hue([1.0, 0.0, 0.0], 2.0 / 3.0),
            [0.0, 0.0, 1.0],
            1e-6
        ));
        assert!(close(
            hue([1.0, 0.0, 0.0], -1.0 / 3.0),
            [0.0, 0.0, 1.0],
            1e-6
        ));
        // Yellow (H = 1/6) − 1/12 is orange (1, 0.5, 0).
        assert!(close(
            hue([1.0, 1.0, 0.0], -1.0 / 12.0),
            [1.0, 0.5, 0.0],
            1e-6
        ));
        // Grey has no hue.
        assert_eq!(hue([0.3; 3], 0.25), [0.3; 3]);
    }

    #[test]
    fn hue_keeps_max_and_min_and_full_turn_is_identity() {
        let mut rng = Rng::new(4);
        for _ in 0..1000 {
            let px = [rng.uniform(), rng.uniform(), rng.uniform()];
            let d = rng.range(-0.5, 0.5);
            let out = hue(px, d);
            let (v, n) = (px[0].max(px[1]).max(px[2]), px[0].min(px[1]).min(px[2]));
            assert!(
                (out[0].max(out[1]).max(out[2]) - v).abs() < 1e-6,
                "{px:?} {d}"
            );
            assert!(
                (out[0].min(out[1]).min(out[2]) - n).abs() < 1e-6,
                "{px:?} {d}"
            );
            assert!(close(hue(out, -d), px, 1e-5), "{px:?} {d}");
            assert!(close(hue(px, 1.0), px, 1e-5));
        }
    }

    #[test]
    fn neutral_factors_are_identities() {
        let mut rng = Rng::new(8);
        for _ in 0..1000 {
            let px = [rng.uniform(), rng.uniform(), rng.uniform()];
            assert_eq!(brightness(px, 1.0), px);
            assert_eq!(contrast(px, 1.0, 0.7), px);
            assert_eq!(saturation(px, 1.0), px);
            assert!(close(hue(px, 0.0), px, 1e-6), "{px:?} → {:?}", hue(px, 0.0));
        }
    }

    #[test]
    fn sample_draws_factors_in_range_and_every_order() {
        let mut rng = Rng::new(3);
        let mut orders = std::collections::HashSet::new();
        for _ in 0..2000 {
            let j = Jitter::sample(&mut rng, 0.4, 0.4, 0.4, 0.1);
            assert_eq!(j.ops().len(), 4);
            let mut order = Vec::new();
            for &op in j.ops() {
                let (k, ok) = match op {
                    JitterOp::Brightness(f) => (0, (0.6..1.4).contains(&f)),
                    JitterOp::Contrast(f) => (1, (0.6..1.4).contains(&f)),
                    JitterOp::Saturation(f) => (2, (0.6..1.4).contains(&f)),
                    JitterOp::Hue(d) => (3, (-0.1..0.1).contains(&d)),
                };
                assert!(ok, "{op:?}");
                order.push(k);
            }
            let mut sorted = order.clone();
            sorted.sort();
            assert_eq!(sorted, vec![0, 1, 2, 3]);
            orders.insert(order);
        }
        assert_eq!(orders.len(), 24, "all 4! orders should occur");
        // Zero strength drops the op; brightness > 1 has its lower bound at 0.
        for _ in 0..200 {
            let j = Jitter::sample(&mut rng, 1.5, 0.0, 0.0, 0.0);
            match j.ops() {
                [JitterOp::Brightness(f)] => assert!((0.0..2.5).contains(f)),
                other => panic!("{other:?}"),
            }
        }
    }

    #[test]
    fn apply_runs_ops_in_the_given_order() {
        // Brightness 2 then saturation 0 vs saturation 0 then brightness 2 on (0.2, 0.4, 0.6):
        // (0.4, 0.8, 1.0) → L = 0.1196 + 0.4696 + 0.114 = 0.7032;  vs  2·0.363 = 0.726.
        let mut a = PX.to_vec();
        Jitter::new(&[JitterOp::Brightness(2.0), JitterOp::Saturation(0.0)]).apply(&mut a);
        let mut b = PX.to_vec();
        Jitter::new(&[JitterOp::Saturation(0.0), JitterOp::Brightness(2.0)]).apply(&mut b);
        assert!(a.iter().all(|&v| (v - 0.7032).abs() < 1e-6), "{a:?}");
        assert!(b.iter().all(|&v| (v - 0.726).abs() < 1e-6), "{b:?}");
    }
}
