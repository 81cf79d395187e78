//! Relative patch position views (Doersch et al. 2015, arXiv:1505.05192, §3): on a 3×3 grid
//! over the augmented view ([`Grid`]: gap between cells, random jitter in each), the centre
//! patch and one of its 8 neighbours drawn uniformly; the label is the neighbour's index in
//! [`NEIGHBOURS`] (0 = top-left … 7 = bottom-right).
//!
//! Chromatic aberration (a lens shifts colours towards the image edges, so a network can tell
//! where a patch came from by its colour fringes, §4.2) is countered as mmselfsup's recipe
//! does, by `grayscale_p` ≈ 0.66 on the recipe; see the method's config for the reason.

use super::grid::{Grid, CENTRE, NEIGHBOURS};
use super::recipe::ViewRecipe;
use super::views::{copy_square, ViewShape, Views};
use crate::error::SettingError;
use crate::rng::Rng;

/// The view of `recipe` (side `grid.view_side`), then the centre patch (crop 0) and one
/// neighbour (crop 1), each `grid.box_side` square; one label, the neighbour's position.
#[derive(Clone, Debug, PartialEq)]
pub struct PatchPairViews {
    pub recipe: ViewRecipe,
    pub grid: Grid,
}

impl Views for PatchPairViews {
    fn shape(&self) -> ViewShape {
        ViewShape {
            crops: 2,
            side: self.grid.box_side,
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
        let s = self.recipe.out_size;
        let mut view = vec![0f32; s * s * 3]; // [S, S, 3]
        self.recipe.apply(src, h, w, rng, &mut view);
        let label = rng.below(NEIGHBOURS.len());
        let p = self.grid.box_side;
        let patch = p * p * 3;
        for (slot, cell) in [CENTRE, NEIGHBOURS[label]].into_iter().enumerate() {
            let b = self.grid.sample(cell, rng);
            copy_square(
                &view,
                s,
                b.top,
                b.left,
                p,
                &mut out[slot * patch..(slot + 1) * patch],
            );
        }
        labels[0] = label as i64;
    }

    fn validate(&self) -> Result<(), SettingError> {
        self.grid.check_recipe(&self.recipe)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_neighbour_comes_from_the_cell_its_label_names() {
        // A view whose pixel (y, x) holds y in channel 0 and x in channel 1 (no colour ops, no
        // normalisation, the crop the whole image): the patches' pixels say where they came from.
        let s = 48;
        let src: Vec<u8> = (0..s)
            .flat_map(|y| (0..s).flat_map(move |x| [y as u8, x as u8, 0]))
            .collect();
        let recipe = ViewRecipe {
            mean: [0.0; 3],
            std: [1.0 / 255.0; 3],
            ..ViewRecipe::eval(s)
        };
        let grid = Grid {
            view_side: s,
            box_side: 10,
            gap: 4,
        };
        let views = PatchPairViews { recipe, grid };
        views.validate().unwrap();
        let mut seen = [0; 8];
        for seed in 0..200 {
            let mut out = vec![0.0; views.shape().floats()];
            let mut label = [-1];
            views.render(&src, s, s, &mut Rng::new(seed), &mut out, &mut label);
            let cell_of = |patch: &[f32]| {
                let (y, x) = (patch[0].round() as usize, patch[1].round() as usize);
                // every pixel of the patch is the source pixel at its offset
                for (i, px) in patch.chunks(3).enumerate() {
                    assert_eq!(
                        (px[0].round() as usize, px[1].round() as usize),
                        (y + i / 10, x + i % 10)
                    );
                }
                (y / 16) * 3 + x / 16
            };
            let (centre, neighbour) = out.split_at(300);
            assert_eq!(cell_of(centre), CENTRE, "seed {seed}");
            let l = label[0] as usize;
            assert_eq!(cell_of(neighbour), NEIGHBOURS[l], "seed {seed}: label {l}");
            seen[l] += 1;
        }
        assert!(
            seen.iter().all(|&n| n > 10),
            "labels are drawn uniformly: {seen:?}"
        );
    }
}
