//! Gaussian blur (torchvision `GaussianBlur`; SimCLR appendix A: "we blur the image 50% of the
//! time using a Gaussian kernel. We randomly sample σ ∈ [0.1, 2.0], and the kernel size is set
//! to be 10% of the image height/width").
//!
//! With radius `r = k/2` for an odd kernel size `k` and offsets `u = −r..=r`:
//! ```text
//! g(u) = exp(−u² / (2σ²)) / Σ_v exp(−v² / (2σ²))
//! out[y, x] = Σ_u Σ_v g(u)·g(v)·in[refl(y + u), refl(x + v)]
//! ```
//! computed separably (rows, then columns). Borders reflect without repeating the edge pixel
//! (`refl(−1) = 1`), as torchvision's reflect padding.

/// SimCLR's kernel size for an image side `size`: 10% of it, made odd the way the paper's code
/// does, `2·⌊⌊size/10⌋/2⌋ + 1` (3 for 32 px, 9 for 96 px, 23 for 224 px).
pub fn kernel_size(size: usize) -> usize {
    2 * (size / 10 / 2) + 1
}

/// Fills `kernel` with the normalised 1-D Gaussian `g(u)`, `u = −r..=r`, of size `ksize` (odd).
pub fn gaussian_kernel(ksize: usize, sigma: f32, kernel: &mut Vec<f32>) {
    assert!(
        ksize % 2 == 1,
        "Gaussian kernel size must be odd, got {ksize}"
    );
    assert!(sigma > 0.0, "Gaussian sigma must be > 0, got {sigma}");
    let r = (ksize / 2) as f32;
    kernel.clear();
    kernel.extend((0..ksize).map(|i| {
        let u = i as f32 - r;
        (-0.5 * (u / sigma) * (u / sigma)).exp()
    }));
    let total: f32 = kernel.iter().sum();
    kernel.iter_mut().for_each(|g| *g /= total);
}

/// Reflects index `i` into `0..n` without repeating the edge (…, 2, 1, 0, 1, 2, …), folding as
/// often as needed so any kernel fits any image.
fn reflect(i: isize, n: usize) -> usize {
    if n == 1 {
        return 0;
    }
    let period = 2 * (n as isize - 1);
    let i = i.rem_euclid(period);
    (if i < n as isize { i } else { period - i }) as usize
}

/// Reusable buffers for [`gaussian_blur`]; contents are overwritten on every call.
#[derive(Debug, Default)]
pub struct BlurScratch {
    kernel: Vec<f32>,
    padded: Vec<f32>,
    tmp: Vec<f32>,
}

/// Blurs an HWC `h × w × 3` image in place with a `ksize × ksize` Gaussian of std `sigma`.
pub fn gaussian_blur(
    img: &mut [f32],
    h: usize,
    w: usize,
    sigma: f32,
    ksize: usize,
    scratch: &mut BlurScratch,
) {
    assert_eq!(
        img.len(),
        h * w * 3,
        "image is {} floats, not {h}×{w}×3",
        img.len()
    );
    let BlurScratch {
        kernel,
        padded,
        tmp,
    } = scratch;
    gaussian_kernel(ksize, sigma, kernel);
    let r = ksize / 2;
    let row_len = w * 3;
    tmp.clear();
    tmp.resize(h * row_len, 0.0);
    padded.clear();
    padded.resize((w + 2 * r) * 3, 0.0);

    // Rows: tmp[y, x] = Σ_v g(v)·img[y, refl(x + v)], on a reflect-padded copy of the row.
    for (row, out) in img.chunks_exact(row_len).zip(tmp.chunks_exact_mut(row_len)) {
        for (p, dst) in padded.chunks_exact_mut(3).enumerate() {
            let sx = reflect(p as isize - r as isize, w);
            dst.copy_from_slice(&row[sx * 3..sx * 3 + 3]);
        }
        for (t, &g) in kernel.iter().enumerate() {
            for (o, &s) in out.iter_mut().zip(&padded[t * 3..t * 3 + row_len]) {
                *o += g * s;
            }
        }
    }
    // Columns: img[y, x] = Σ_u g(u)·tmp[refl(y + u), x], whole rows at a time.
    for (y, out) in img.chunks_exact_mut(row_len).enumerate() {
        out.fill(0.0);
        for (t, &g) in kernel.iter().enumerate() {
            let sy = reflect(y as isize + t as isize - r as isize, h);
            for (o, &s) in out.iter_mut().zip(&tmp[sy * row_len..][..row_len]) {
                *o += g * s;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::Rng;

    fn blurred(img: &[f32], h: usize, w: usize, sigma: f32, k: usize) -> Vec<f32> {
        let mut out = img.to_vec();
        gaussian_blur(&mut out, h, w, sigma, k, &mut BlurScratch::default());
        out
    }

    #[test]
    fn kernel_sizes_follow_simclr() {
        assert_eq!(kernel_size(32), 3);
        assert_eq!(kernel_size(96), 9);
        assert_eq!(kernel_size(224), 23);
        assert_eq!(kernel_size(5), 1);
    }

    #[test]
    fn kernel_by_hand() {
        // σ = 1, k = 3: (e^−½, 1, e^−½) / (1 + 2e^−½) = (0.274069, 0.451862, 0.274069)
        let mut g = Vec::new();
        gaussian_kernel(3, 1.0, &mut g);
        for (&a, &b) in g.iter().zip(&[0.274_069, 0.451_862, 0.274_069]) {
            assert!((a - b).abs() < 1e-6, "{g:?}");
        }
    }

    #[test]
    fn reflect_does_not_repeat_the_edge() {
        let got: Vec<usize> = (-3..7).map(|i| reflect(i, 4)).collect();
        assert_eq!(got, vec![3, 2, 1, 0, 1, 2, 3, 2, 1, 0]);
        assert_eq!(reflect(5, 1), 0);
    }

    #[test]
    fn constant_image_is_preserved() {
        let img = vec![0.37; 10 * 12 * 3];
        for (sigma, k) in [(0.1, 3), (2.0, 3), (2.0, 23)] {
            let out = blurred(&img, 10, 12, sigma, k);
            assert!(
                out.iter().all(|&v| (v - 0.37).abs() < 1e-6),
                "σ {sigma} k {k}"
            );
        }
    }

    #[test]
    fn sum_is_preserved_in_the_interior() {
        // A bright dot far from the borders spreads out but keeps its mass, channel by channel,
        // and spreads symmetrically.
        let (h, w) = (21, 21);
        let mut img = vec![0.0; h * w * 3];
        img[(10 * w + 10) * 3..][..3].copy_from_slice(&[1.0, 0.5, 0.25]);
        let out = blurred(&img, h, w, 1.5, 9);
        for (c, mass) in [1.0, 0.5, 0.25].into_iter().enumerate() {
            let s: f32 = out.iter().skip(c).step_by(3).sum();
            assert!((s - mass).abs() < 1e-5, "channel {c}: {s}");
        }
        assert!(out[(10 * w + 10) * 3] < 1.0 && out[(10 * w + 11) * 3] > 0.0);
        assert!((out[(10 * w + 11) * 3] - out[(9 * w + 10) * 3]).abs() < 1e-7);
        // Separable = outer product of the 1-D kernel: the corner of the 9×9 support is g(4)².
        let mut g = Vec::new();
        gaussian_kernel(9, 1.5, &mut g);
        assert!((out[(6 * w + 6) * 3] - g[0] * g[0]).abs() < 1e-7);
    }

    #[test]
    fn tiny_sigma_is_nearly_identity() {
        let mut rng = Rng::new(2);
        let img: Vec<f32> = (0..8 * 8 * 3).map(|_| rng.uniform()).collect();
        let out = blurred(&img, 8, 8, 0.1, 3);
        // Off-centre weight e^−50 ≈ 2e−22.
        assert!(out.iter().zip(&img).all(|(a, b)| (a - b).abs() < 1e-6));
        // A broad blur does change it.
        let wide = blurred(&img, 8, 8, 2.0, 3);
        assert!(wide.iter().zip(&img).any(|(a, b)| (a - b).abs() > 0.05));
    }

    #[test]
    fn border_reflects() {
        // A 1×3 image [a, b, c] blurred along x with k = 3: out[0] = g1·a + 2·g0·b (refl(−1) = 1).
        let img: Vec<f32> = [0.0, 1.0, 0.5].iter().flat_map(|&v| [v; 3]).collect();
        let out = blurred(&img, 1, 3, 1.0, 3);
        let (g0, g1) = (0.274_069, 0.451_862);
        assert!(
            (out[0] - (g1 * 0.0 + 2.0 * g0 * 1.0)).abs() < 1e-6,
            "{out:?}"
        );
        assert!(
            (out[3] - (g0 * 0.0 + g1 * 1.0 + g0 * 0.5)).abs() < 1e-6,
            "{out:?}"
        );
    }
}
