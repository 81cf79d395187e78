//! Rotation views (RotNet, Gidaris et al. 2018, arXiv:1803.07728): the augmented view rotated
//! by k·90°, k ∈ {0, 1, 2, 3}, the label k.
//!
//! Rotation by 90° counter-clockwise (`torch.rot90(x, k, dims=(H, W))`) of an `S × S` image:
//! ```text
//! k = 1: out[y][x] = in[x][S−1−y]      k = 2: out[y][x] = in[S−1−y][S−1−x]
//! k = 3: out[y][x] = in[S−1−x][y]      k = 0: the image
//! ```
//! The paper's recipe feeds all four rotations of every image in the same batch (4K inputs,
//! §3 "we found it beneficial"); VISSL also offers one random rotation per image.

use super::recipe::ViewRecipe;
use super::views::{ViewShape, Views};
use crate::error::SettingError;
use crate::rng::Rng;

/// Writes `src` (f32 [S, S, 3]) rotated by `k · 90°` counter-clockwise to `out` [S, S, 3].
pub fn rotate90(src: &[f32], side: usize, k: usize, out: &mut [f32]) {
    let s = side;
    assert_eq!(src.len(), s * s * 3, "rotate90: the image is not {s}×{s}×3");
    assert_eq!(
        out.len(),
        src.len(),
        "rotate90: the output is not {s}×{s}×3"
    );
    for y in 0..s {
        for x in 0..s {
            let (sy, sx) = match k % 4 {
                0 => (y, x),
                1 => (x, s - 1 - y),
                2 => (s - 1 - y, s - 1 - x),
                _ => (s - 1 - x, y),
            };
            let (o, i) = ((y * s + x) * 3, (sy * s + sx) * 3);
            out[o..o + 3].copy_from_slice(&src[i..i + 3]);
        }
    }
}

/// The view of `recipe`, then all four rotations of it (`all_four`: 4 crops, labels 0..3 in
/// order) or one rotation drawn uniformly (1 crop, its k as the label).
#[derive(Clone, Debug, PartialEq)]
pub struct RotationViews {
    pub recipe: ViewRecipe,
    pub all_four: bool,
}

impl Views for RotationViews {
    fn shape(&self) -> ViewShape {
        let n = if self.all_four { 4 } else { 1 };
        ViewShape {
            crops: n,
            side: self.recipe.out_size,
            labels: n,
        }
    }

    fn render(
        &self,
        src: &[u8],
        h: usize,
        w: usize,
        rng: &mut Rng,
        out: &mut [f32],
        labels: &mut [i64],
    ) {
        let s = self.recipe.out_size;
        let one = s * s * 3;
        let mut view = vec![0f32; one];
        self.recipe.apply(src, h, w, rng, &mut view);
        if self.all_four {
            for (k, (dst, label)) in out.chunks_mut(one).zip(labels.iter_mut()).enumerate() {
                rotate90(&view, s, k, dst);
                *label = k as i64;
            }
        } else {
            let k = rng.below(4);
            rotate90(&view, s, k, &mut out[..one]);
            labels[0] = k as i64;
        }
    }

    fn validate(&self) -> Result<(), SettingError> {
        self.recipe
            .validate()
            .map_err(|e| SettingError::Other(e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn image(s: usize, seed: u64) -> Vec<f32> {
        let mut r = Rng::new(seed);
        (0..s * s * 3).map(|_| r.uniform()).collect()
    }

    fn rotated(src: &[f32], s: usize, k: usize) -> Vec<f32> {
        let mut out = vec![0.0; src.len()];
        rotate90(src, s, k, &mut out);
        out
    }

    #[test]
    fn rotating_by_k_and_back_is_the_image_and_four_quarter_turns_are_one_turn() {
        for s in [1, 2, 5, 8] {
            let x = image(s, s as u64);
            for k in 0..4 {
                assert_eq!(
                    rotated(&rotated(&x, s, k), s, (4 - k) % 4),
                    x,
                    "side {s}, k {k}"
                );
            }
            let mut y = x.clone();
            for _ in 0..4 {
                y = rotated(&y, s, 1);
            }
            assert_eq!(y, x);
            assert_eq!(rotated(&rotated(&x, s, 1), s, 1), rotated(&x, s, 2));
        }
    }

    #[test]
    fn a_quarter_turn_is_counter_clockwise_as_torch_rot90() {
        // [[a, b], [c, d]] → torch.rot90 → [[b, d], [a, c]]
        let px = |v: f32| [v; 3];
        let x: Vec<f32> = [1.0, 2.0, 3.0, 4.0].into_iter().flat_map(px).collect();
        let want: Vec<f32> = [2.0, 4.0, 1.0, 3.0].into_iter().flat_map(px).collect();
        assert_eq!(rotated(&x, 2, 1), want);
    }

    #[test]
    fn all_four_rotations_of_one_view_with_their_labels() {
        let (h, w, s) = (12, 10, 6);
        let mut r = Rng::new(3);
        let src: Vec<u8> = (0..h * w * 3).map(|_| r.below(256) as u8).collect();
        let views = RotationViews {
            recipe: ViewRecipe::simclr(s),
            all_four: true,
        };
        let shape = views.shape();
        assert_eq!((shape.crops, shape.labels), (4, 4));
        let mut out = vec![0.0; shape.floats()];
        let mut labels = vec![-1; 4];
        views.render(&src, h, w, &mut Rng::new(9), &mut out, &mut labels);
        assert_eq!(labels, vec![0, 1, 2, 3]);
        let one = s * s * 3;
        let mut plain = vec![0.0; one];
        ViewRecipe::simclr(s).apply(&src, h, w, &mut Rng::new(9), &mut plain);
        for (k, crop) in out.chunks(one).enumerate() {
            // rotated back, each crop is the unrotated view: the label says how it was turned
            assert_eq!(rotated(crop, s, (4 - k) % 4), plain, "k {k}");
        }
        // one random rotation: its label turns the crop back into the view
        let one_views = RotationViews {
            all_four: false,
            ..views
        };
        let mut seen = [false; 4];
        for seed in 0..40 {
            let mut out = vec![0.0; one];
            let mut label = vec![-1];
            one_views.render(&src, h, w, &mut Rng::new(seed), &mut out, &mut label);
            let mut plain = vec![0.0; one];
            ViewRecipe::simclr(s).apply(&src, h, w, &mut Rng::new(seed), &mut plain);
            let k = label[0] as usize;
            assert_eq!(rotated(&out, s, (4 - k) % 4), plain, "seed {seed}");
            seen[k] = true;
        }
        assert!(seen.iter().all(|&s| s), "every angle is drawn: {seen:?}");
    }
}
