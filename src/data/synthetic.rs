//! A built-in labeled image set that needs no download: ten classes of shapes and textures.
//!
//! The class is a property that survives SimCLR's augmentations (random resized crop down to
//! 20% of the area, flips, colour jitter, grayscale): the *shape* of one object (disk, ring,
//! square, triangle, cross) or the *texture* filling the image (horizontal, vertical or diagonal
//! stripes, checkerboard, dots). Everything else varies within a class — object position, size
//! and rotation, stripe period and phase, foreground and background colours, a brightness
//! gradient and pixel noise — so raw pixels are a poor match for the class: nearest neighbours
//! on pixels are far from perfect, and a representation has to learn shape and texture.
//!
//! Foreground and background always differ in luminance, so the class stays visible after
//! conversion to grayscale. Image `i` of a split has class `i % 10` and is drawn from its own
//! [`Rng::for_sample`] stream, so the set is a pure function of the seed.

use std::f32::consts::{FRAC_PI_2, FRAC_PI_4, PI};

use rayon::prelude::*;

use super::{Dataset, ImageStore, Splits};
use crate::rng::Rng;

/// The classes, in label order.
pub const CLASS_NAMES: [&str; 10] = [
    "disk",
    "ring",
    "square",
    "triangle",
    "cross",
    "horizontal stripes",
    "vertical stripes",
    "diagonal stripes",
    "checkerboard",
    "dots",
];

/// The smallest image side generated: smaller requests are raised to it.
pub const MIN_SIZE: usize = 8;

/// Generates `n_train_per_class` training and `n_test_per_class` test images of each of the
/// ten classes, `size`x`size` pixels (at least [`MIN_SIZE`]), deterministic in `seed`.
/// Classes are interleaved: image `i` has label `i % 10`.
pub fn generate(
    n_train_per_class: usize,
    n_test_per_class: usize,
    size: usize,
    seed: u64,
) -> Splits {
    let size = size.max(MIN_SIZE);
    Splits {
        train: split(
            "train",
            0,
            n_train_per_class * CLASS_NAMES.len(),
            size,
            seed,
        ),
        test: (n_test_per_class > 0)
            .then(|| split("test", 1, n_test_per_class * CLASS_NAMES.len(), size, seed)),
    }
}

fn split(name: &str, stream: u64, n: usize, size: usize, seed: u64) -> Dataset {
    let k = CLASS_NAMES.len();
    let images: Vec<Vec<u8>> = (0..n)
        .into_par_iter()
        .map(|i| {
            draw(
                (i % k) as u32,
                size,
                &mut Rng::for_sample(seed, stream, i as u64, 0),
            )
        })
        .collect();
    Dataset {
        images: ImageStore::uniform(size, size, images.concat()),
        labels: Some((0..n).map(|i| (i % k) as u32).collect()),
        class_names: CLASS_NAMES.iter().map(|s| s.to_string()).collect(),
        names: (0..n).map(|i| format!("{name}[{i}]")).collect(),
        skipped: Vec::new(),
        captions: Some((0..n).map(|i| caption((i % k) as u32, i / k)).collect()),
        left_out: Default::default(),
    }
}

/// The caption of the `j`-th image of `class`: its name in one of three phrasings ("a disk",
/// "a picture of horizontal stripes", "dots on a background"), so that `--method clip` trains on
/// the built-in set too (its captions name the class and nothing else).
pub fn caption(class: u32, j: usize) -> String {
    let name = CLASS_NAMES[class as usize];
    let thing = match name.ends_with('s') {
        true => name.to_string(),
        false => format!("a {name}"),
    };
    match j % 3 {
        0 => thing,
        1 => format!("a picture of {thing}"),
        _ => format!("{thing} on a background"),
    }
}

/// ITU-R BT.601 luma, as grayscale conversion uses.
fn luma(c: [f32; 3]) -> f32 {
    0.299 * c[0] + 0.587 * c[1] + 0.114 * c[2]
}

/// A random background colour and a foreground colour at least 0.3 away from it in luma.
pub(crate) fn colours(rng: &mut Rng) -> ([f32; 3], [f32; 3]) {
    let mut random = || [rng.uniform(), rng.uniform(), rng.uniform()];
    let bg = random();
    for _ in 0..32 {
        let fg = random();
        if (luma(fg) - luma(bg)).abs() >= 0.3 {
            return (bg, fg);
        }
    }
    (bg, if luma(bg) > 0.5 { [0.0; 3] } else { [1.0; 3] })
}

/// Signed distance from `p` to a centred box of half-extents `(hx, hy)`: negative inside.
fn sd_box(p: (f32, f32), hx: f32, hy: f32) -> f32 {
    let (dx, dy) = (p.0.abs() - hx, p.1.abs() - hy);
    let outside = (dx.max(0.0).powi(2) + dy.max(0.0).powi(2)).sqrt();
    outside + dx.max(dy).min(0.0)
}

/// Signed distance (exact inside and along the edges) to an upward equilateral triangle of
/// circumradius `r`: the largest distance past its three edges.
fn sd_triangle(p: (f32, f32), r: f32) -> f32 {
    (0..3)
        .map(|k| {
            let a = -FRAC_PI_2 + k as f32 * 2.0 * PI / 3.0 + PI;
            p.0 * a.cos() + p.1 * a.sin() - 0.5 * r
        })
        .fold(f32::MIN, f32::max)
}

/// A periodic band pattern along `t`: signed distance-like value, negative on the bands.
fn sd_stripes(t: f32, period: f32, phase: f32) -> f32 {
    -(2.0 * PI * t / period + phase).sin() * period / (2.0 * PI)
}

/// How one image covers a pixel: the signed distance (in image widths) from the pixel centre
/// `(u, v)` ∈ [0, 1]² to the foreground; negative inside.
pub(crate) struct Pattern {
    pub class: u32,
    pub centre: (f32, f32),
    pub radius: f32,
    pub angle: f32,
    period: f32,
    phase: (f32, f32),
}

impl Pattern {
    pub(crate) fn new(class: u32, rng: &mut Rng) -> Self {
        let radius = rng.range(0.2, 0.36);
        let margin = radius + 0.04;
        let centre = (
            rng.range(margin, 1.0 - margin),
            rng.range(margin, 1.0 - margin),
        );
        let jitter = rng.range(-0.2, 0.2);
        let angle = match class {
            5 | 6 => jitter,
            7 => {
                jitter
                    + if rng.bernoulli(0.5) {
                        FRAC_PI_4
                    } else {
                        -FRAC_PI_4
                    }
            }
            _ => rng.range(0.0, 2.0 * PI),
        };
        let period = rng.range(0.16, 0.3);
        let phase = (rng.range(0.0, 2.0 * PI), rng.range(0.0, 2.0 * PI));
        Pattern {
            class,
            centre,
            radius,
            angle,
            period,
            phase,
        }
    }

    fn sd(&self, u: f32, v: f32) -> f32 {
        let (s, c) = self.angle.sin_cos();
        // Object frame: centred, rotated by -angle.
        let (x, y) = (u - self.centre.0, v - self.centre.1);
        let p = (c * x + s * y, -s * x + c * y);
        // Texture frame: the whole image, rotated by -angle.
        let q = (c * u + s * v, -s * u + c * v);
        let r = self.radius;
        let (t, ph) = (self.period, self.phase);
        match self.class {
            0 => (p.0.hypot(p.1)) - r,
            1 => (p.0.hypot(p.1) - 0.72 * r).abs() - 0.2 * r,
            2 => sd_box(p, 0.8 * r, 0.8 * r),
            3 => sd_triangle(p, 1.15 * r),
            4 => sd_box(p, r, 0.3 * r).min(sd_box(p, 0.3 * r, r)),
            5 => sd_stripes(q.1, t, ph.0),
            6 | 7 => sd_stripes(q.0, t, ph.0),
            8 => sd_stripes(q.0, t, ph.0) * sd_stripes(q.1, t, ph.1).signum(),
            _ => {
                let cell =
                    |z: f32, phase: f32| ((z / t + phase / (2.0 * PI)).rem_euclid(1.0) - 0.5) * t;
                cell(q.0, ph.0).hypot(cell(q.1, ph.1)) - 0.28 * t
            }
        }
    }
}

/// One `size`x`size` RGB image of `class`.
fn draw(class: u32, size: usize, rng: &mut Rng) -> Vec<u8> {
    let pattern = Pattern::new(class, rng);
    let look = Look::new(rng);
    paint(&pattern, &look, size, rng)
}

/// How an image is coloured: background and foreground, a brightness gradient, pixel noise.
pub(crate) struct Look {
    bg: [f32; 3],
    fg: [f32; 3],
    gradient: (f32, f32),
    noise: f32,
}

impl Look {
    /// Given colours, with a random gradient and noise as [`Look::new`] draws them.
    pub(crate) fn with_colours(bg: [f32; 3], fg: [f32; 3], rng: &mut Rng) -> Self {
        let gradient = (rng.range(-0.25, 0.25), rng.range(-0.25, 0.25));
        let noise = rng.range(0.02, 0.1);
        Look {
            bg,
            fg,
            gradient,
            noise,
        }
    }

    pub(crate) fn new(rng: &mut Rng) -> Self {
        let (bg, fg) = colours(rng);
        Self::with_colours(bg, fg, rng)
    }
}

/// `pattern` painted with `look` on a `size`x`size` RGB image (noise drawn from `rng`).
pub(crate) fn paint(pattern: &Pattern, look: &Look, size: usize, rng: &mut Rng) -> Vec<u8> {
    let (bg, fg, gradient, noise) = (look.bg, look.fg, look.gradient, look.noise);
    let px = 1.0 / size as f32;
    let mut out = Vec::with_capacity(size * size * 3);
    for y in 0..size {
        for x in 0..size {
            let (u, v) = ((x as f32 + 0.5) * px, (y as f32 + 0.5) * px);
            // Anti-aliased coverage: a one-pixel ramp across the edge.
            let alpha = (0.5 - pattern.sd(u, v) / px).clamp(0.0, 1.0);
            let shade = gradient.0 * (u - 0.5) + gradient.1 * (v - 0.5);
            for ch in 0..3 {
                let value = (bg[ch] + shade) * (1.0 - alpha)
                    + fg[ch] * alpha
                    + noise * rng.range(-1.0, 1.0);
                out.push((value.clamp(0.0, 1.0) * 255.0).round() as u8);
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Per-class mean of each pixel, on grayscale, [K][H*W].
    fn class_means(d: &Dataset) -> Vec<Vec<f32>> {
        let (h, w) = d.images.uniform_size().unwrap();
        let hw = h * w;
        let mut sums = vec![vec![0f32; hw]; d.num_classes()];
        let mut counts = vec![0f32; d.num_classes()];
        for (i, &l) in d.labels.as_ref().unwrap().iter().enumerate() {
            let img = d.images.image(i).pixels;
            for p in 0..hw {
                sums[l as usize][p] +=
                    img[3 * p..3 * p + 3].iter().map(|&v| v as f32).sum::<f32>() / 3.0;
            }
            counts[l as usize] += 1.0;
        }
        sums.iter()
            .zip(&counts)
            .map(|(s, &c)| s.iter().map(|v| v / c).collect())
            .collect()
    }

    #[test]
    fn captions_name_the_class() {
        let s = generate(2, 1, 8, 0);
        let c = s.train.captions.as_ref().unwrap();
        assert_eq!(c.len(), 20);
        assert_eq!(c[0], "a disk");
        assert_eq!(c[15], "a picture of horizontal stripes");
        assert!(c
            .iter()
            .zip(s.train.labels.as_ref().unwrap())
            .all(|(t, &l)| t.contains(CLASS_NAMES[l as usize])));
    }

    #[test]
    fn shapes_labels_names_and_balance() {
        let s = generate(3, 2, 16, 1);
        assert_eq!(
            (s.train.len(), s.train.images.uniform_size().unwrap()),
            (30, (16, 16))
        );
        assert_eq!(s.train.images.concat_pixels().len(), 30 * 16 * 16 * 3);
        let labels = s.train.labels.as_ref().unwrap();
        for k in 0..10 {
            assert_eq!(labels.iter().filter(|&&l| l == k).count(), 3);
        }
        assert_eq!(s.train.class_names.len(), 10);
        assert_eq!(s.train.names[12], "train[12]");
        let test = s.test.unwrap();
        assert_eq!(test.len(), 20);
        assert_eq!(test.names[0], "test[0]");
        assert!(generate(1, 0, 16, 1).test.is_none());
        assert_eq!(
            generate(1, 1, 0, 1).train.images.uniform_size().unwrap().0,
            MIN_SIZE
        );
    }

    #[test]
    fn deterministic_in_seed() {
        let a = generate(2, 1, 12, 7);
        let b = generate(2, 1, 12, 7);
        let c = generate(2, 1, 12, 8);
        assert_eq!(a.train.images, b.train.images);
        assert_eq!(a.test.unwrap().images, b.test.unwrap().images);
        assert_ne!(a.train.images, c.train.images);
    }

    #[test]
    fn train_and_test_differ() {
        let s = generate(2, 2, 16, 3);
        assert_ne!(
            s.train.images.concat_pixels(),
            s.test.unwrap().images.concat_pixels()
        );
    }

    #[test]
    fn images_within_a_class_vary() {
        let s = generate(4, 0, 16, 5);
        let d = &s.train;
        for k in 0..10 {
            let (a, b) = (d.images.image(k).pixels, d.images.image(k + 10).pixels);
            let diff = a.iter().zip(b).filter(|(x, y)| x != y).count();
            assert!(diff > a.len() / 4, "class {k}: only {diff} bytes differ");
        }
    }

    #[test]
    fn foreground_contrasts_with_background() {
        // Each image has both dark-ish and light-ish pixels in grayscale.
        let d = generate(3, 0, 32, 11).train;
        for i in 0..d.len() {
            let gray: Vec<f32> = d
                .images
                .image(i)
                .pixels
                .chunks(3)
                .map(|c| (c[0] as f32 + c[1] as f32 + c[2] as f32) / 3.0)
                .collect();
            let (lo, hi) = gray
                .iter()
                .fold((f32::MAX, f32::MIN), |(l, h), &g| (l.min(g), h.max(g)));
            assert!(hi - lo > 40.0, "image {i} spans only {lo}..{hi}");
        }
    }

    #[test]
    fn class_means_differ() {
        // The stripe orientations show in the per-class mean only weakly (random phase), so
        // compare shapes against textures: objects are centred, textures are uniform.
        let d = generate(40, 0, 16, 2).train;
        let means = class_means(&d);
        let dist = |a: &[f32], b: &[f32]| {
            a.iter()
                .zip(b)
                .map(|(x, y)| (x - y).powi(2))
                .sum::<f32>()
                .sqrt()
        };
        assert!(dist(&means[0], &means[0]) == 0.0);
        let mut distinct = 0;
        for a in 0..10 {
            for b in a + 1..10 {
                if dist(&means[a], &means[b]) > 1.0 {
                    distinct += 1;
                }
            }
        }
        assert!(
            distinct >= 40,
            "only {distinct} of 45 class pairs have different mean images"
        );
    }

    /// Leave-one-out 1-nearest-neighbour accuracy on raw pixels.
    fn pixel_1nn_accuracy(d: &Dataset) -> f32 {
        let labels = d.labels.as_ref().unwrap();
        let mut correct = 0;
        for i in 0..d.len() {
            let a = d.images.image(i).pixels;
            let nearest = (0..d.len())
                .filter(|&j| j != i)
                .min_by_key(|&j| {
                    let b = d.images.image(j).pixels;
                    a.iter()
                        .zip(b)
                        .map(|(&x, &y)| (x as i32 - y as i32).pow(2) as u64)
                        .sum::<u64>()
                })
                .unwrap();
            correct += (labels[nearest] == labels[i]) as usize;
        }
        correct as f32 / d.len() as f32
    }

    #[test]
    fn raw_pixels_do_not_solve_it() {
        let d = generate(20, 0, 16, 4).train;
        let acc = pixel_1nn_accuracy(&d);
        assert!(acc < 0.5, "1-NN on pixels already reaches {acc}");
    }
}
