//! Rectangular block masks over a ViT's g×g patch grid, drawn from `(seed, step, index)` so
//! that a resumed run draws the same ones: I-JEPA's multi-block sampler (a large context block
//! with the target blocks cut out of it, and several small target blocks).

use crate::rng::Rng;
use tch::Tensor;

/// The stream of [`Rng::for_sample`] the block masks draw from.
const BLOCK_STREAM: u64 = 0x626c_6f63;

/// Rows × columns of a block covering about `scale` of a g×g grid at aspect ratio
/// `aspect` (h / w): `h = round(√(g²·s·a))`, `w = round(√(g²·s / a))`, each clamped to
/// [1, g] (I-JEPA's `_sample_block_size`, whose bound `< g` would never let a block span the
/// grid: here a block may, so a context of scale 1 is the whole image).
pub fn block_shape(grid: i64, scale: f64, aspect: f64) -> (i64, i64) {
    let area = (grid * grid) as f64 * scale;
    let side = |v: f64| (v.sqrt().round() as i64).clamp(1, grid);
    (side(area * aspect), side(area / aspect))
}

/// A block of `h`×`w` patches at a uniformly drawn place, as a g²-long row-major flag list.
/// Every place is possible, the last row and column too (I-JEPA's `randint(0, g − h)` never
/// reaches them).
fn place(r: &mut Rng, grid: i64, (h, w): (i64, i64)) -> Vec<bool> {
    let top = r.below((grid - h + 1) as usize) as i64;
    let left = r.below((grid - w + 1) as usize) as i64;
    let mut m = vec![false; (grid * grid) as usize];
    for y in top..top + h {
        for x in left..left + w {
            m[(y * grid + x) as usize] = true;
        }
    }
    m
}

/// I-JEPA's multi-block masks (Assran et al. 2023, §3 and appendix C).
#[derive(Clone, Debug, PartialEq)]
pub struct MultiBlock {
    /// Target blocks per image (the paper's 4).
    pub targets: usize,
    /// Range of a target block's area as a fraction of the image (0.15–0.2).
    pub target_scale: (f64, f64),
    /// Range of a target block's aspect ratio h / w (0.75–1.5).
    pub target_aspect: (f64, f64),
    /// Range of the context block's area (0.85–1.0); its aspect ratio is 1.
    pub context_scale: (f64, f64),
    /// Fewest context patches left after the targets are cut out (the paper's 10 on 14×14).
    pub min_context: usize,
}

/// One batch's masks: patch indices, ascending within each row.
pub struct MultiBlockMasks {
    /// The context patches of each image [K, n_c] (i64): the context block minus every target
    /// block, cut to the batch's smallest count (as I-JEPA's collator does).
    pub context: Tensor,
    /// The patches of each target block of each image [M, K, n_t] (i64): every block of a
    /// batch has the same shape, so the same count.
    pub targets: Tensor,
}

impl MultiBlock {
    /// The masks of `k` images on a `grid`×`grid` patch grid at `step`: the blocks' shapes are
    /// drawn once per batch (from `(seed, step)`), their places per image (from
    /// `(seed, step, index)`). A context left with fewer than `min_context` patches is redrawn
    /// (up to 20 times, then every patch outside the targets is the context; on a grid so small
    /// that the targets cover it, the whole grid).
    pub fn sample(&self, k: i64, grid: i64, seed: u64, step: u64) -> MultiBlockMasks {
        let mut shapes = Rng::for_sample(seed, step, u64::MAX, BLOCK_STREAM);
        let mut draw = |(lo, hi): (f64, f64)| lo + (hi - lo) * shapes.uniform() as f64;
        let target_shape = block_shape(grid, draw(self.target_scale), draw(self.target_aspect));
        let context_shape = block_shape(grid, draw(self.context_scale), 1.0);
        let first = crate::dist::first_row(k);
        let mut contexts = Vec::with_capacity(k as usize);
        let mut targets: Vec<Vec<i64>> = vec![Vec::new(); self.targets];
        for i in 0..k {
            let mut r = Rng::for_sample(seed, step, (first + i) as u64, BLOCK_STREAM);
            let mut covered = vec![false; (grid * grid) as usize];
            for t in targets.iter_mut() {
                let block = place(&mut r, grid, target_shape);
                for (j, _) in block.iter().enumerate().filter(|(_, b)| **b) {
                    covered[j] = true;
                    t.push(j as i64);
                }
            }
            let outside = |block: &[bool]| -> Vec<i64> {
                (0..block.len())
                    .filter(|&j| block[j] && !covered[j])
                    .map(|j| j as i64)
                    .collect()
            };
            let mut context = Vec::new();
            for _ in 0..20 {
                context = outside(&place(&mut r, grid, context_shape));
                if context.len() >= self.min_context {
                    break;
                }
            }
            if context.len() < self.min_context {
                context = outside(&vec![true; covered.len()]);
            }
            if context.is_empty() {
                // the targets cover the whole grid (a grid too small for them): the whole image
                context = (0..grid * grid).collect();
            }
            contexts.push(context);
        }
        let n_c = contexts.iter().map(Vec::len).min().unwrap_or(0).max(1);
        let flat: Vec<i64> = contexts.iter().flat_map(|c| c[..n_c].to_vec()).collect();
        let n_t = target_shape.0 * target_shape.1;
        MultiBlockMasks {
            context: Tensor::from_slice(&flat).view([k, n_c as i64]),
            targets: Tensor::from_slice(&targets.concat()).view([self.targets as i64, k, n_t]),
        }
    }
}

/// BEiT's block-wise masking (Bao et al. 2021, arXiv:2106.08254, Alg. 1), which iBOT and
/// DINOv2 use: for each of `k` images, with probability `probability`, a ratio r drawn from
/// `ratio` and rectangles of at least `min_patches` patches at aspect ratios in [0.3, 1/0.3]
/// added at random places until `round(r·g²)` patches are hidden (or a further rectangle adds
/// nothing); other images are not masked. Drawn from `(seed, step, index)`: [k, g²] (f32,
/// 1 = hidden, row-major).
pub fn blockwise(
    k: i64,
    grid: i64,
    (ratio, probability): ((f64, f64), f64),
    min_patches: i64,
    seed: u64,
    step: u64,
) -> Tensor {
    let l = (grid * grid) as usize;
    let first = crate::dist::first_row(k);
    let mut out = vec![0f32; k as usize * l];
    for (i, m) in out.chunks_mut(l).enumerate() {
        let mut r = Rng::for_sample(seed, step, (first + i as i64) as u64, BLOCK_STREAM ^ 1);
        if r.uniform() as f64 >= probability {
            continue;
        }
        let want = ((ratio.0 + (ratio.1 - ratio.0) * r.uniform() as f64) * l as f64).round();
        let mut hidden = 0usize;
        while (hidden as f64) < want {
            let room = want as i64 - hidden as i64;
            let mut added = 0;
            for _ in 0..10 {
                let hi = room.max(min_patches) as f32;
                let area = r.range(min_patches as f32, hi.max(min_patches as f32 + 1.0));
                let aspect = r.range(0.3f32.ln(), (1.0f32 / 0.3).ln()).exp();
                let h = ((area * aspect).sqrt().round() as i64).max(1);
                let w = ((area / aspect).sqrt().round() as i64).max(1);
                if h >= grid || w >= grid {
                    continue;
                }
                let top = r.below((grid - h + 1) as usize) as i64;
                let left = r.below((grid - w + 1) as usize) as i64;
                let cells =
                    (top..top + h).flat_map(|y| (left..left + w).map(move |x| y * grid + x));
                let fresh: Vec<usize> =
                    cells.map(|j| j as usize).filter(|&j| m[j] == 0.0).collect();
                if fresh.is_empty() || fresh.len() as i64 > room {
                    continue;
                }
                fresh.iter().for_each(|&j| m[j] = 1.0);
                added = fresh.len();
                break;
            }
            if added == 0 {
                break;
            }
            hidden += added;
        }
    }
    Tensor::from_slice(&out).view([k, grid * grid])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blockwise_masks_hide_about_the_ratio_in_rectangles_and_spare_some_images() {
        let m = blockwise(200, 8, ((0.1, 0.5), 0.5), 4, 1, 2);
        let per: Vec<f64> = Vec::try_from(m.sum_dim_intlist(1, false, tch::Kind::Double)).unwrap();
        let masked: Vec<f64> = per.iter().copied().filter(|&c| c > 0.0).collect();
        // about half the images are masked, each at most half of its 64 patches
        assert!((70..130).contains(&masked.len()), "{}", masked.len());
        assert!(
            masked.iter().all(|&c| (4.0..=32.0).contains(&c)),
            "{masked:?}"
        );
        let mean = masked.iter().sum::<f64>() / masked.len() as f64;
        assert!(
            (12.0..=22.0).contains(&mean),
            "mean hidden {mean} (≈ 0.3 · 64 = 19)"
        );
        assert!(m.equal(&blockwise(200, 8, ((0.1, 0.5), 0.5), 4, 1, 2)));
        assert!(!m.equal(&blockwise(200, 8, ((0.1, 0.5), 0.5), 4, 1, 3)));
        let all = blockwise(20, 8, ((0.3, 0.3), 1.0), 4, 0, 0);
        let per: Vec<f64> =
            Vec::try_from(all.sum_dim_intlist(1, false, tch::Kind::Double)).unwrap();
        assert!(per.iter().all(|&c| c > 0.0), "probability 1: every image");
    }

    fn paper() -> MultiBlock {
        MultiBlock {
            targets: 4,
            target_scale: (0.15, 0.2),
            target_aspect: (0.75, 1.5),
            context_scale: (0.85, 1.0),
            min_context: 4,
        }
    }

    #[test]
    fn block_shapes_follow_scale_and_aspect() {
        // 14×14 (ViT-B/16 at 224 px), scale 0.2, aspect 1: √39.2 → 6×6
        assert_eq!(block_shape(14, 0.2, 1.0), (6, 6));
        // taller than wide at aspect 1.5
        let (h, w) = block_shape(14, 0.2, 1.5);
        assert!(h > w, "{h}×{w}");
        // a context of scale 1 is the whole grid
        assert_eq!(block_shape(8, 1.0, 1.0), (8, 8));
        assert_eq!(block_shape(8, 0.001, 1.0), (1, 1));
    }

    #[test]
    fn contexts_exclude_every_target_and_masks_repeat_by_seed_step_and_index() {
        let mb = paper();
        let m = mb.sample(6, 8, 3, 11);
        let (n_c, n_t) = (m.context.size()[1], m.targets.size()[2]);
        assert_eq!(m.targets.size()[..2], [4, 6]);
        assert!(n_c >= 4 && n_t >= 4, "context {n_c}, target {n_t}");
        for i in 0..6 {
            let ctx: Vec<i64> = Vec::try_from(m.context.get(i)).unwrap();
            assert!(ctx.windows(2).all(|w| w[0] < w[1]), "ascending, distinct");
            for b in 0..4 {
                let t: Vec<i64> = Vec::try_from(m.targets.get(b).get(i)).unwrap();
                assert!(t.iter().all(|j| !ctx.contains(j)), "image {i} block {b}");
                // a rectangle: its rows span ⌈n_t / width⌉ consecutive rows
                let rows: std::collections::BTreeSet<i64> = t.iter().map(|j| j / 8).collect();
                assert_eq!(
                    *rows.last().unwrap() - *rows.first().unwrap() + 1,
                    rows.len() as i64
                );
            }
        }
        // a 2×2 grid that 4 targets can cover: every context keeps at least one patch
        for step in 0..20 {
            assert!(mb.sample(4, 2, 0, step).context.size()[1] >= 1);
        }
        let again = mb.sample(6, 8, 3, 11);
        assert!(m.context.equal(&again.context) && m.targets.equal(&again.targets));
        let other = mb.sample(6, 8, 3, 12);
        assert!(!m.targets.equal(&other.targets));
        // image 0's targets do not depend on the batch size
        let one = mb.sample(1, 8, 3, 11);
        assert!(one.targets.select(1, 0).equal(&m.targets.select(1, 0)));
        assert!(!m.targets.select(1, 0).equal(&m.targets.select(1, 1)));
    }
}
