//! Per-channel normalisation (torchvision `Normalize`):
//! ```text
//! x'_c = (x_c − mean_c) / std_c
//! ```
//! computed as `(x_c − mean_c) · (1/std_c)`, within an ulp or two of the division.

/// CIFAR-10 training-set channel means (RGB, pixels in [0, 1]).
pub const CIFAR10_MEAN: [f32; 3] = [0.4914, 0.4822, 0.4465];
/// CIFAR-10 training-set channel standard deviations.
pub const CIFAR10_STD: [f32; 3] = [0.2470, 0.2435, 0.2616];
/// ImageNet channel means, as used by torchvision's pretrained models.
pub const IMAGENET_MEAN: [f32; 3] = [0.485, 0.456, 0.406];
/// ImageNet channel standard deviations, as used by torchvision's pretrained models.
pub const IMAGENET_STD: [f32; 3] = [0.229, 0.224, 0.225];

/// `(x − mean) / std` per channel, with `1/std` computed once.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Normalize {
    mean: [f32; 3],
    inv_std: [f32; 3],
}

impl Normalize {
    /// `std` must be > 0 in every channel.
    pub fn new(mean: [f32; 3], std: [f32; 3]) -> Self {
        Normalize {
            mean,
            inv_std: std.map(|s| 1.0 / s),
        }
    }

    /// `x'_c = (x_c − mean_c) / std_c` for one RGB pixel.
    #[inline]
    pub fn pixel(&self, px: [f32; 3]) -> [f32; 3] {
        [
            (px[0] - self.mean[0]) * self.inv_std[0],
            (px[1] - self.mean[1]) * self.inv_std[1],
            (px[2] - self.mean[2]) * self.inv_std[2],
        ]
    }
}

/// Normalises every pixel of an HWC image in place.
pub fn normalize_image(img: &mut [f32], mean: [f32; 3], std: [f32; 3]) {
    let n = Normalize::new(mean, std);
    for px in img.chunks_exact_mut(3) {
        px.copy_from_slice(&n.pixel([px[0], px[1], px[2]]));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_values() {
        let mut img = vec![0.5, 0.25, 1.0, 0.1, 0.2, 0.3];
        normalize_image(&mut img, [0.5, 0.5, 0.5], [0.5, 0.25, 2.0]);
        let want = [0.0, -1.0, 0.25, -0.8, -1.2, -0.1];
        for (&v, &e) in img.iter().zip(&want) {
            assert!((v - e).abs() < 1e-6, "{img:?}");
        }
    }

    #[test]
    fn cifar_constants_map_the_mean_to_zero() {
        let n = Normalize::new(CIFAR10_MEAN, CIFAR10_STD);
        assert_eq!(n.pixel(CIFAR10_MEAN), [0.0; 3]);
        // One std above the mean is 1.
        let up = [0, 1, 2].map(|c| CIFAR10_MEAN[c] + CIFAR10_STD[c]);
        assert!(n.pixel(up).iter().all(|&v| (v - 1.0).abs() < 1e-5));
        // (1 − 0.485)/0.229 = 2.2489…
        assert!(
            (Normalize::new(IMAGENET_MEAN, IMAGENET_STD).pixel([1.0; 3])[0] - 2.248_908).abs()
                < 1e-5
        );
    }
}
