//! Solarization (torchvision `RandomSolarize(threshold = 0.5)` on [0, 1] images; BYOL,
//! Grill et al. 2020, table 6):
//! ```text
//! x' = 1 − x   if x ≥ 0.5
//! x' = x       otherwise
//! ```

/// The threshold of BYOL's solarization for images in [0, 1].
pub const SOLARIZE_THRESHOLD: f32 = 0.5;

/// `x ≥ 0.5 → 1 − x`, else `x`.
#[inline]
pub fn solarize(x: f32) -> f32 {
    if x >= SOLARIZE_THRESHOLD {
        1.0 - x
    } else {
        x
    }
}

/// [`solarize`] on every value of an image.
pub fn solarize_image(img: &mut [f32]) {
    for x in img {
        *x = solarize(*x);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inverts_only_from_the_threshold_up() {
        let mut img = vec![0.0, 0.25, 0.4999, 0.5, 0.75, 1.0];
        solarize_image(&mut img);
        assert_eq!(img, vec![0.0, 0.25, 0.4999, 0.5, 0.25, 0.0]);
    }
}
