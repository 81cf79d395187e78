//! What one image becomes for a method: a number of square crops and, for pretext tasks, the
//! labels drawn with them (which rotation, which neighbour, which permutation).
//!
//! A [`ViewRecipe`] is the plain case, one crop and no label. The pretext views
//! ([`RotationViews`](super::rotation::RotationViews),
//! [`PatchPairViews`](super::relative_patch::PatchPairViews),
//! [`JigsawViews`](super::jigsaw::JigsawViews)) render a recipe's view first and cut it up.
//! The loader renders every view of a batch through this trait, so a method that needs other
//! views adds a `Views` type, not a case in the loader.

use super::recipe::ViewRecipe;
use crate::error::SettingError;
use crate::rng::Rng;

/// The output of one image: `crops` views of `side × side`, with `labels` integer labels.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ViewShape {
    pub crops: usize,
    pub side: usize,
    pub labels: usize,
}

impl ViewShape {
    /// Floats of one image's crops, `crops · side² · 3`.
    pub fn floats(&self) -> usize {
        self.crops * self.side * self.side * 3
    }
}

/// A way of turning one u8 image into views (and labels); deterministic in the `rng` given.
pub trait Views: Send + Sync + std::fmt::Debug {
    fn shape(&self) -> ViewShape;
    /// Writes the crops of `src` (u8 [h, w, 3]) to `out`, f32 [crops, side, side, 3] (NHWC),
    /// and their labels to `labels` \[labels\].
    fn render(
        &self,
        src: &[u8],
        h: usize,
        w: usize,
        rng: &mut Rng,
        out: &mut [f32],
        labels: &mut [i64],
    );
    /// Refuses settings that cannot be rendered; the message names the setting.
    fn validate(&self) -> Result<(), SettingError>;
}

impl Views for ViewRecipe {
    fn shape(&self) -> ViewShape {
        ViewShape {
            crops: 1,
            side: self.out_size,
            labels: 0,
        }
    }

    fn render(
        &self,
        src: &[u8],
        h: usize,
        w: usize,
        rng: &mut Rng,
        out: &mut [f32],
        _: &mut [i64],
    ) {
        self.apply(src, h, w, rng, out);
    }

    fn validate(&self) -> Result<(), SettingError> {
        ViewRecipe::validate(self).map_err(|e| SettingError::Other(e.to_string()))
    }
}

/// Copies the `side × side` square at (`top`, `left`) of an NHWC f32 image of width `width`
/// into `out` [side, side, 3].
pub fn copy_square(
    src: &[f32],
    width: usize,
    top: usize,
    left: usize,
    side: usize,
    out: &mut [f32],
) {
    for y in 0..side {
        let from = ((top + y) * width + left) * 3;
        out[y * side * 3..(y + 1) * side * 3].copy_from_slice(&src[from..from + side * 3]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_recipe_is_one_crop_without_labels_and_copy_square_takes_the_square() {
        let r = ViewRecipe::simclr(8);
        assert_eq!(
            Views::shape(&r),
            ViewShape {
                crops: 1,
                side: 8,
                labels: 0
            }
        );
        assert_eq!(Views::shape(&r).floats(), 8 * 8 * 3);
        // a 4×4 image whose value is 10·y + x in every channel
        let img: Vec<f32> = (0..4)
            .flat_map(|y| (0..4).flat_map(move |x| [(10 * y + x) as f32; 3]))
            .collect();
        let mut out = vec![0.0; 2 * 2 * 3];
        copy_square(&img, 4, 1, 2, 2, &mut out);
        assert_eq!(
            out.chunks(3).map(|p| p[0]).collect::<Vec<_>>(),
            vec![12.0, 13.0, 22.0, 23.0]
        );
    }
}
