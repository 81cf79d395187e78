//! Temporal-order views (Misra, Zitnick & Hebert 2016, "Shuffle and Learn", §3): three frames of
//! a sequence; is the middle one between the other two in time? The sequence is one image, a
//! *filmstrip*: `frames` square frames side by side (`w = frames · h`), as
//! `selfsup make-data moving-shapes` writes them.
//!
//! Three distinct frames a < b < c are drawn. Positive (label 1, half the time): (a, b, c) or
//! (c, b, a): the middle frame lies between. Negative (label 0): the middle slot holds a or c,
//! one of the four orders (b, a, c), (c, a, b), (a, c, b), (b, c, a). The three frames share
//! one crop box, flip and colour jitter (one [`ViewParams`](super::recipe::ViewParams) drawn on
//! the frame size), so only their content tells the order.

use super::recipe::ViewRecipe;
use super::views::{ViewShape, Views};
use crate::error::SettingError;
use crate::rng::Rng;

#[derive(Clone, Debug)]
pub struct TemporalOrderViews {
    /// Applied to every frame with the same parameters.
    pub recipe: ViewRecipe,
    /// Frames per filmstrip (≥ 3).
    pub frames: usize,
}

/// The frame order of one example and its label: `(slots, in_order)`.
pub fn draw_order(frames: usize, rng: &mut Rng) -> ([usize; 3], bool) {
    let mut pick = rng.permutation(frames);
    pick.truncate(3);
    pick.sort_unstable();
    let (a, b, c) = (pick[0], pick[1], pick[2]);
    if rng.bernoulli(0.5) {
        let order = if rng.bernoulli(0.5) {
            [a, b, c]
        } else {
            [c, b, a]
        };
        (order, true)
    } else {
        let wrong = [[b, a, c], [c, a, b], [a, c, b], [b, c, a]];
        (wrong[rng.below(4)], false)
    }
}

impl Views for TemporalOrderViews {
    fn shape(&self) -> ViewShape {
        ViewShape {
            crops: 3,
            side: self.recipe.out_size,
            labels: 1,
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
        // an image narrower than `frames` pixels has no frames to speak of: one-pixel frames
        let fw = (w / self.frames).max(1);
        let frames = (w / fw).max(1).min(self.frames);
        let (order, in_order) = match frames >= 3 {
            true => draw_order(frames, rng),
            false => ([0, 0, 0], true),
        };
        let params = self.recipe.sample_params(h, fw, rng);
        let crop = self.recipe.out_size * self.recipe.out_size * 3;
        let mut frame = vec![0u8; h * fw * 3];
        for (slot, &f) in order.iter().enumerate() {
            for y in 0..h {
                let row = &src[(y * w + f * fw) * 3..(y * w + (f + 1) * fw) * 3];
                frame[y * fw * 3..(y + 1) * fw * 3].copy_from_slice(row);
            }
            self.recipe.render(
                &params,
                &frame,
                h,
                fw,
                &mut out[slot * crop..(slot + 1) * crop],
            );
        }
        labels[0] = in_order as i64;
    }

    fn validate(&self) -> Result<(), SettingError> {
        if self.frames < 3 {
            return Err(format!(
                "method.temporal_order.frames is {}: three frames are compared, so at least 3",
                self.frames
            )
            .into());
        }
        ViewRecipe::validate(&self.recipe).map_err(|e| SettingError::Other(e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn orders_are_balanced_and_labelled_by_the_middle_frame() {
        let mut rng = Rng::new(3);
        let mut positives = 0;
        for _ in 0..2000 {
            let (o, in_order) = draw_order(5, &mut rng);
            let between = (o[0] < o[1] && o[1] < o[2]) || (o[0] > o[1] && o[1] > o[2]);
            assert_eq!(between, in_order, "{o:?}");
            assert!(o[0] != o[1] && o[1] != o[2] && o[0] != o[2] && o.iter().all(|&f| f < 5));
            positives += in_order as usize;
        }
        assert!((900..1100).contains(&positives), "{positives}");
    }

    #[test]
    fn each_crop_is_its_frame_with_shared_parameters() {
        // a filmstrip of 4 frames of 2×2, frame f filled with value 50·f
        let (h, frames) = (2, 4);
        let w = h * frames;
        let src: Vec<u8> = (0..h * w)
            .flat_map(|i| [(50 * ((i % w) / h)) as u8; 3])
            .collect();
        let mut recipe = ViewRecipe::eval(2);
        recipe.mean = [0.0; 3];
        recipe.std = [1.0; 3];
        let views = TemporalOrderViews { recipe, frames };
        views.validate().unwrap();
        assert_eq!(
            views.shape(),
            ViewShape {
                crops: 3,
                side: 2,
                labels: 1
            }
        );
        let mut rng = Rng::new(1);
        let (mut out, mut label) = (vec![0f32; 3 * 2 * 2 * 3], [0i64]);
        views.render(&src, h, w, &mut rng, &mut out, &mut label);
        let mut again = Rng::new(1);
        let (order, in_order) = draw_order(frames, &mut again);
        assert_eq!(label[0], in_order as i64);
        for (slot, &f) in order.iter().enumerate() {
            let want = 50.0 * f as f32 / 255.0;
            assert!(
                out[slot * 12..(slot + 1) * 12]
                    .iter()
                    .all(|&v| (v - want).abs() < 1e-6),
                "slot {slot}"
            );
        }
        let two = TemporalOrderViews {
            recipe: ViewRecipe::eval(2),
            frames: 2,
        };
        assert!(two
            .validate()
            .unwrap_err()
            .to_string()
            .contains("frames is 2"));
    }
}
