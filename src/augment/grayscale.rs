//! Grayscale (torchvision `RandomGrayscale`, `num_output_channels = 3`), ITU-R 601-2 luma:
//! ```text
//! L = 0.299·R + 0.587·G + 0.114·B,   (R, G, B) → (L, L, L)
//! ```
//! These are PIL's `convert("L")` weights; torchvision's tensor path uses 0.2989 for R, which
//! differs by at most 1.1e-4 in L.

/// The luma weights of R, G and B (they sum to 1, so grey pixels stay the same).
pub const LUMA: [f32; 3] = [0.299, 0.587, 0.114];

/// `L = 0.299·R + 0.587·G + 0.114·B`.
#[inline]
pub fn luma([r, g, b]: [f32; 3]) -> f32 {
    LUMA[0] * r + LUMA[1] * g + LUMA[2] * b
}

/// `(R, G, B) → (L, L, L)`.
#[inline]
pub fn grayscale(px: [f32; 3]) -> [f32; 3] {
    [luma(px); 3]
}

/// [`grayscale`] on every pixel of an HWC image.
pub fn grayscale_image(img: &mut [f32]) {
    for px in img.chunks_exact_mut(3) {
        let l = luma([px[0], px[1], px[2]]);
        px.fill(l);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_pixels() {
        assert!((luma([1.0, 0.0, 0.0]) - 0.299).abs() < 1e-7);
        assert!((luma([0.0, 1.0, 0.0]) - 0.587).abs() < 1e-7);
        assert!((luma([0.0, 0.0, 1.0]) - 0.114).abs() < 1e-7);
        // 0.299·0.2 + 0.587·0.4 + 0.114·0.6 = 0.0598 + 0.2348 + 0.0684 = 0.363
        assert!((luma([0.2, 0.4, 0.6]) - 0.363).abs() < 1e-6);
        assert!((luma([0.5, 0.5, 0.5]) - 0.5).abs() < 1e-6);
    }

    #[test]
    fn image_channels_are_replicated() {
        let mut img = vec![0.2, 0.4, 0.6, 1.0, 1.0, 1.0];
        grayscale_image(&mut img);
        for (&v, &e) in img.iter().zip(&[0.363, 0.363, 0.363, 1.0, 1.0, 1.0]) {
            assert!((v - e).abs() < 1e-6, "{img:?}");
        }
        assert_eq!(grayscale([0.2, 0.4, 0.6]), [img[0]; 3]);
    }
}
