//! Jigsaw views (Noroozi & Favaro 2016, arXiv:1603.09246, §3): the augmented view cut into a
//! 3×3 grid, one random tile inside each cell ([`Grid`] with gap 0: the paper's 64-px tiles in
//! 75-px cells), the tiles shuffled by one permutation drawn uniformly from a fixed set; the
//! label is the permutation's index in the set.
//!
//! Slot `i` of the output holds the tile of cell `perm[i]`; placing slot `i` back in cell
//! `perm[i]` (the inverse permutation) reassembles the grid. Each tile is normalised on its
//! own, every channel to mean 0 and std 1 (§3.1: "we normalize the mean and the standard
//! deviation of each patch independently"), so a tile's brightness and contrast do not tell
//! where it came from.
//!
//! The permutation set ([`PermutationSet::greedy`]) is the paper's Algorithm 1 in its
//! max-min form: start from a seeded random permutation of the 9! and repeatedly add the
//! permutation farthest, in Hamming distance, from the nearest one already chosen.

use super::grid::{Grid, CELLS};
use super::recipe::ViewRecipe;
use super::views::{copy_square, ViewShape, Views};
use crate::error::SettingError;
use crate::rng::Rng;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// 9!, the number of orders of 9 tiles.
pub const ORDERS: usize = 362_880;

/// One order of the 9 tiles: slot i holds the tile of cell `p[i]`.
pub type Permutation = [u8; CELLS];

/// A fixed set of permutations, with the smallest Hamming distance between two of them.
#[derive(Clone, Debug, PartialEq)]
pub struct PermutationSet {
    pub perms: Vec<Permutation>,
    /// The smallest number of slots in which two permutations of the set differ; the greedy
    /// algorithm guarantees it is the distance of its last pick (9 for a set of one).
    pub min_distance: usize,
}

/// Number of slots in which `a` and `b` differ.
pub fn hamming(a: &Permutation, b: &Permutation) -> usize {
    a.iter().zip(b).filter(|(x, y)| x != y).count()
}

/// All 9! permutations, in lexicographic order.
fn all_orders() -> Vec<Permutation> {
    let mut p: Permutation = [0, 1, 2, 3, 4, 5, 6, 7, 8];
    let mut all = Vec::with_capacity(ORDERS);
    loop {
        all.push(p);
        // next permutation: the last ascent i, swap with the last element above p[i], reverse
        let Some(i) = (0..CELLS - 1).rev().find(|&i| p[i] < p[i + 1]) else {
            return all;
        };
        let j = (i + 1..CELLS)
            .rev()
            .find(|&j| p[j] > p[i])
            .expect("an ascent");
        p.swap(i, j);
        p[i + 1..].reverse();
    }
}

impl PermutationSet {
    /// `n` (1 ≤ n ≤ 9!) permutations chosen greedily for distance, from a start drawn by
    /// `seed`:
    /// ```text
    /// P ← {P̄_j},  j ~ U{0 … 9!−1}
    /// repeat n − 1 times:  j ← argmax_k min_{p∈P} hamming(p, P̄_k)  (first k on ties);  P ← P ∪ {P̄_j}
    /// ```
    /// The paper (Algorithm 1) scores a candidate by its summed distance to P; the minimum is
    /// scored here, which is what makes the set's smallest distance known: the score of the last
    /// pick, since the scores of successive picks never increase.
    pub fn greedy(n: usize, seed: u64) -> Result<Self, SettingError> {
        if !(1..=ORDERS).contains(&n) {
            return Err(format!(
                "a jigsaw permutation set holds 1 to 9! = {ORDERS} permutations, not {n}"
            )
            .into());
        }
        let all = all_orders();
        let first = Rng::new(seed).below(ORDERS);
        let mut nearest: Vec<u8> = all.iter().map(|p| hamming(p, &all[first]) as u8).collect();
        let mut picks = vec![first];
        let mut min_distance = CELLS;
        while picks.len() < n {
            let (j, &d) = nearest
                .iter()
                .enumerate()
                .max_by(|(i, a), (k, b)| a.cmp(b).then(k.cmp(i)))
                .expect("9! candidates");
            min_distance = d as usize;
            picks.push(j);
            for (near, p) in nearest.iter_mut().zip(&all) {
                *near = (*near).min(hamming(p, &all[j]) as u8);
            }
        }
        Ok(PermutationSet {
            perms: picks.into_iter().map(|j| all[j]).collect(),
            min_distance,
        })
    }

    /// [`greedy`](Self::greedy), computed once per `(n, seed)` in a process and shared; the
    /// first time, a line on stderr reports the set's minimum distance.
    pub fn shared(n: usize, seed: u64) -> Result<Arc<Self>, SettingError> {
        type Sets = HashMap<(usize, u64), Arc<PermutationSet>>;
        static SETS: Mutex<Option<Sets>> = Mutex::new(None);
        let mut sets = SETS.lock().unwrap_or_else(|e| e.into_inner());
        let sets = sets.get_or_insert_with(HashMap::new);
        if let Some(s) = sets.get(&(n, seed)) {
            return Ok(s.clone());
        }
        let start = std::time::Instant::now();
        let s = Arc::new(Self::greedy(n, seed)?);
        eprintln!(
            "jigsaw: {n} permutations chosen greedily from seed {seed}, minimum Hamming distance {} ({:.1} s)",
            s.min_distance,
            start.elapsed().as_secs_f64()
        );
        sets.insert((n, seed), s.clone());
        Ok(s)
    }
}

/// Normalises each channel of an `[side², 3]` tile to mean 0 and std 1 (a flat channel to 0).
pub fn normalize_tile(tile: &mut [f32]) {
    let n = (tile.len() / 3) as f32;
    for c in 0..3 {
        let mean = tile.iter().skip(c).step_by(3).sum::<f32>() / n;
        let var = tile
            .iter()
            .skip(c)
            .step_by(3)
            .map(|v| (v - mean) * (v - mean))
            .sum::<f32>()
            / n;
        let inv = 1.0 / (var.sqrt() + 1e-5);
        for v in tile.iter_mut().skip(c).step_by(3) {
            *v = (*v - mean) * inv;
        }
    }
}

/// The view of `recipe` (side `grid.view_side`), then its 9 tiles (each `grid.box_side`
/// square, drawn inside its cell) in the order of a permutation drawn from `set`; one label,
/// the permutation's index.
#[derive(Clone, Debug)]
pub struct JigsawViews {
    pub recipe: ViewRecipe,
    pub grid: Grid,
    pub set: Arc<PermutationSet>,
    /// Per-tile normalisation (the paper's; off only to test the geometry).
    pub normalize_tiles: bool,
}

impl Views for JigsawViews {
    fn shape(&self) -> ViewShape {
        ViewShape {
            crops: CELLS,
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
        let label = rng.below(self.set.perms.len());
        let t = self.grid.box_side;
        let tile = t * t * 3;
        // boxes drawn cell by cell, so the crops do not depend on the permutation
        let boxes: Vec<_> = (0..CELLS).map(|cell| self.grid.sample(cell, rng)).collect();
        for (slot, &cell) in self.set.perms[label].iter().enumerate() {
            let b = boxes[cell as usize];
            let dst = &mut out[slot * tile..(slot + 1) * tile];
            copy_square(&view, s, b.top, b.left, t, dst);
            if self.normalize_tiles {
                normalize_tile(dst);
            }
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
    fn all_orders_are_the_9_factorial_distinct_permutations() {
        let all = all_orders();
        assert_eq!(all.len(), ORDERS);
        assert_eq!(all[0], [0, 1, 2, 3, 4, 5, 6, 7, 8]);
        assert_eq!(all[ORDERS - 1], [8, 7, 6, 5, 4, 3, 2, 1, 0]);
        assert!(
            all.windows(2).all(|w| w[0] < w[1]),
            "strictly increasing, so distinct"
        );
    }

    #[test]
    fn the_greedy_set_is_distinct_seeded_and_its_minimum_distance_is_the_guarantee() {
        let set = PermutationSet::greedy(12, 3).unwrap();
        assert_eq!(set.perms.len(), 12);
        let mut pairwise = usize::MAX;
        for (i, a) in set.perms.iter().enumerate() {
            let mut sorted = *a;
            sorted.sort();
            assert_eq!(
                sorted,
                [0, 1, 2, 3, 4, 5, 6, 7, 8],
                "a permutation of the cells"
            );
            for b in &set.perms[i + 1..] {
                pairwise = pairwise.min(hamming(a, b));
            }
        }
        assert!(pairwise > 0, "distinct");
        assert_eq!(
            pairwise, set.min_distance,
            "the brute-force minimum is the reported one"
        );
        // 12 permutations can be 9 apart (e.g. the cyclic shifts); greedy max-min finds ≥ 8
        assert!(set.min_distance >= 8, "{}", set.min_distance);
        assert_eq!(PermutationSet::greedy(12, 3).unwrap(), set, "seeded");
        assert_ne!(PermutationSet::greedy(12, 4).unwrap().perms, set.perms);
        assert_eq!(PermutationSet::greedy(1, 0).unwrap().min_distance, 9);
        for bad in [0, ORDERS + 1] {
            let e = PermutationSet::greedy(bad, 0).unwrap_err().to_string();
            assert!(e.contains("362880"), "{e}");
        }
    }

    #[test]
    fn the_inverse_permutation_reassembles_the_grid() {
        // Tiles the size of their cells, no normalisation: the shuffled tiles put back in the
        // cells their permutation names are exactly the view.
        let s = 30;
        let mut r = Rng::new(5);
        let src: Vec<u8> = (0..s * s * 3).map(|_| r.below(256) as u8).collect();
        let recipe = ViewRecipe {
            grayscale_p: 0.66,
            ..ViewRecipe::simclr(s)
        };
        let views = JigsawViews {
            recipe: recipe.clone(),
            grid: Grid {
                view_side: s,
                box_side: 10,
                gap: 0,
            },
            set: Arc::new(PermutationSet::greedy(5, 1).unwrap()),
            normalize_tiles: false,
        };
        views.validate().unwrap();
        for seed in 0..10 {
            let mut out = vec![0.0; views.shape().floats()];
            let mut label = [-1];
            views.render(&src, s, s, &mut Rng::new(seed), &mut out, &mut label);
            let mut view = vec![0.0; s * s * 3];
            recipe.apply(&src, s, s, &mut Rng::new(seed), &mut view);
            let perm = views.set.perms[label[0] as usize];
            let mut back = vec![f32::NAN; s * s * 3];
            for (slot, &cell) in perm.iter().enumerate() {
                let tile = &out[slot * 300..(slot + 1) * 300];
                let (top, left) = ((cell as usize / 3) * 10, (cell as usize % 3) * 10);
                for y in 0..10 {
                    let at = ((top + y) * s + left) * 3;
                    back[at..at + 30].copy_from_slice(&tile[y * 30..(y + 1) * 30]);
                }
            }
            assert_eq!(back, view, "seed {seed}");
        }
    }

    #[test]
    fn a_normalised_tile_has_mean_0_and_std_1_per_channel() {
        let mut r = Rng::new(2);
        let mut tile: Vec<f32> = (0..64 * 3)
            .map(|i| r.uniform() * (1 + i % 3) as f32 + 5.0)
            .collect();
        normalize_tile(&mut tile);
        for c in 0..3 {
            let v: Vec<f32> = tile.iter().skip(c).step_by(3).copied().collect();
            let mean = v.iter().sum::<f32>() / 64.0;
            let var = v.iter().map(|x| (x - mean).powi(2)).sum::<f32>() / 64.0;
            assert!(
                mean.abs() < 1e-5 && (var - 1.0).abs() < 1e-3,
                "channel {c}: {mean}, {var}"
            );
        }
    }
}
