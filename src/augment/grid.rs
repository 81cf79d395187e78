//! The 3×3 grid of the patch tasks (relative position, Doersch et al. 2015; jigsaw, Noroozi &
//! Favaro 2016), laid on a square view of side `S`:
//! ```text
//! cell side  c = ⌊S / 3⌋, the grid centred: origin o = ⌊(S − 3c) / 2⌋
//! cell i = (row r, column q) = (i / 3, i % 3) spans [o + r·c, o + (r+1)·c) × [o + q·c, o + (q+1)·c)
//! a box of side p in cell i sits at offset ⌊g/2⌋ + j, j ~ U{0 … c − p − g}, in each axis
//! ```
//! so a box never leaves its cell, and boxes of neighbouring cells are at least `g` apart
//! (`⌊g/2⌋` on one side of the border, `⌈g/2⌉` on the other): neither touching edges nor
//! continuing lines give the answer away. The random offset is the paper's jitter.

use crate::error::SettingError;
use crate::rng::Rng;

/// Cells per side of the grid.
pub const GRID: usize = 3;
/// Cells of the grid.
pub const CELLS: usize = GRID * GRID;
/// The centre cell.
pub const CENTRE: usize = 4;
/// The 8 neighbours of the centre, by label: top-left, top, top-right, left, right,
/// bottom-left, bottom, bottom-right (the paper's Figure 2 order).
pub const NEIGHBOURS: [usize; 8] = [0, 1, 2, 3, 5, 6, 7, 8];

/// A square box of the grid: rows `top..top + side`, columns `left..left + side`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GridBox {
    pub top: usize,
    pub left: usize,
    pub side: usize,
}

/// A 3×3 grid on an `S × S` view with boxes of side `box_side`, at least `gap` apart.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Grid {
    /// `S`: the side of the view the grid is laid on.
    pub view_side: usize,
    pub box_side: usize,
    pub gap: usize,
}

impl Grid {
    /// The cell side `c = ⌊S / 3⌋`.
    pub fn cell(&self) -> usize {
        self.view_side / GRID
    }

    /// The largest random offset of a box in its cell, `c − p − g`; None when it does not fit.
    pub fn jitter(&self) -> Option<usize> {
        self.cell().checked_sub(self.box_side + self.gap)
    }

    /// Refuses a grid whose boxes do not fit their cells; `names` are the settings of
    /// (view side, box side, gap), for the message.
    pub fn check(&self, names: [&str; 3]) -> Result<(), SettingError> {
        let [side, size, gap] = names;
        if self.box_side == 0 {
            return Err(format!("{size} is 0: it must be at least 1 px").into());
        }
        if self.jitter().is_none() {
            return Err(format!(
                "{size} + {gap} is {} + {} = {} px, larger than a cell of the 3×3 grid on the {} px view \
                 ({side} / 3 = {} px): lower {size} or {gap}, or raise {side}",
                self.box_side,
                self.gap,
                self.box_side + self.gap,
                self.view_side,
                self.cell()
            ).into());
        }
        Ok(())
    }

    /// Refuses a `recipe` that cannot be the view this grid is laid on.
    pub fn check_recipe(&self, recipe: &super::ViewRecipe) -> Result<(), SettingError> {
        recipe.validate().map_err(|e| e.to_string())?;
        match recipe.out_size == self.view_side {
            true => Ok(()),
            false => Err("the recipe's view side and the grid's differ".into()),
        }
    }

    /// Draws the box of cell `cell` (0..9, row-major). The grid must pass [`check`](Self::check).
    pub fn sample(&self, cell: usize, rng: &mut Rng) -> GridBox {
        let c = self.cell();
        let origin = (self.view_side - GRID * c) / 2;
        let jitter = self.jitter().expect("checked grid");
        let mut at = |index: usize| origin + index * c + self.gap / 2 + rng.below(jitter + 1);
        let top = at(cell / GRID);
        let left = at(cell % GRID);
        GridBox {
            top,
            left,
            side: self.box_side,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn overlap_or_gap(a: GridBox, b: GridBox) -> usize {
        // the distance between two boxes along the axis where they are farthest apart
        let apart = |a0: usize, b0: usize, s: usize| match a0 < b0 {
            true => b0.saturating_sub(a0 + s),
            false => a0.saturating_sub(b0 + s),
        };
        apart(a.top, b.top, a.side).max(apart(a.left, b.left, a.side))
    }

    #[test]
    fn boxes_stay_in_their_cells_and_the_view_and_keep_the_gap() {
        for (view_side, box_side, gap) in [
            (64, 14, 4),
            (96, 20, 8),
            (32, 10, 0),
            (65, 21, 0),
            (40, 9, 3),
        ] {
            let g = Grid {
                view_side,
                box_side,
                gap,
            };
            g.check(["s", "p", "g"]).unwrap();
            let c = g.cell();
            let origin = (view_side - 3 * c) / 2;
            for seed in 0..50 {
                let mut rng = Rng::new(seed);
                let boxes: Vec<GridBox> = (0..CELLS).map(|i| g.sample(i, &mut rng)).collect();
                for (i, b) in boxes.iter().enumerate() {
                    let (r0, c0) = (origin + (i / 3) * c, origin + (i % 3) * c);
                    assert!(
                        b.top >= r0 && b.top + b.side <= r0 + c,
                        "{g:?} cell {i} {b:?}"
                    );
                    assert!(
                        b.left >= c0 && b.left + b.side <= c0 + c,
                        "{g:?} cell {i} {b:?}"
                    );
                    assert!(b.top + b.side <= view_side && b.left + b.side <= view_side);
                    for (j, other) in boxes.iter().enumerate().skip(i + 1) {
                        let overlaps =
                            |a0: usize, b0: usize| a0 < b0 + box_side && b0 < a0 + box_side;
                        assert!(
                            !(overlaps(b.top, other.top) && overlaps(b.left, other.left)),
                            "cells {i}, {j} overlap"
                        );
                        let d = overlap_or_gap(*b, *other);
                        assert!(d >= gap, "cells {i}, {j}: {d} px apart");
                    }
                }
            }
        }
    }

    #[test]
    fn the_jitter_reaches_both_ends_of_the_cell() {
        let g = Grid {
            view_side: 30,
            box_side: 6,
            gap: 2,
        };
        let tops: std::collections::BTreeSet<usize> = (0..200)
            .map(|s| g.sample(0, &mut Rng::new(s)).top)
            .collect();
        // cell 10 px, margin 1, jitter 0..=2
        assert_eq!(tops.into_iter().collect::<Vec<_>>(), vec![1, 2, 3]);
    }

    #[test]
    fn a_box_larger_than_its_cell_is_refused_by_name() {
        let g = Grid {
            view_side: 32,
            box_side: 9,
            gap: 4,
        };
        let e = g
            .check(["method.x.view_side", "method.x.patch_size", "method.x.gap"])
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("method.x.patch_size") && e.contains("10 px"),
            "{e}"
        );
        let zero = Grid { box_side: 0, ..g };
        assert!(zero
            .check(["a", "b", "c"])
            .unwrap_err()
            .to_string()
            .contains("b is 0"));
    }
}
