//! Which images an encoder thinks are alike: nearest neighbours by cosine similarity of the
//! frozen features, and near-duplicate pairs (`selfsup neighbors`, the report's grids).
//!
//! ```text
//! sim(q, g) = q·g / (‖q‖ ‖g‖)      in [−1, 1]; 1 for features that point the same way
//! ```
//! The work is done in blocks of query rows, so 50 000 × 50 000 similarities never sit in
//! memory at once.

use tch::{Kind, Tensor};

/// Query rows per block of the similarity matrix ([block, N] float32 at a time).
const BLOCK: i64 = 512;

/// One neighbour: its row in the gallery and its cosine similarity to the query.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Neighbour {
    pub index: usize,
    pub similarity: f32,
}

/// Rows scaled to unit length (a zero row stays zero).
/// # Shapes
/// `x`: [N, D] → [N, D] float32
pub fn unit_rows(x: &Tensor) -> Tensor {
    let x = x.to_kind(Kind::Float);
    &x / x.norm_scalaropt_dim(2, [1], true).clamp_min(1e-12)
}

/// The `k` most similar gallery rows of each query row, most similar first. With
/// `same_set` (queries and gallery are the same rows), a row is not its own neighbour.
/// # Shapes
/// `queries`: [Q, D], `gallery`: [N, D] → Q lists of min(k, N) (N − 1 with `same_set`)
pub fn nearest(
    queries: &Tensor,
    gallery: &Tensor,
    k: usize,
    same_set: bool,
) -> Vec<Vec<Neighbour>> {
    let (q, g) = (unit_rows(queries), unit_rows(gallery));
    let (nq, ng) = (q.size()[0], g.size()[0]);
    let k = (k as i64).min(ng - same_set as i64).max(0);
    let mut out = Vec::with_capacity(nq as usize);
    if k == 0 {
        return vec![Vec::new(); nq as usize];
    }
    for start in (0..nq).step_by(BLOCK as usize) {
        let rows = BLOCK.min(nq - start);
        let mut sim = q.narrow(0, start, rows).matmul(&g.tr()); // [rows, N]
        if same_set {
            let own = Tensor::arange_start(start, start + rows, (Kind::Int64, sim.device()));
            // a row's similarity to itself: below any cosine, so never among the k
            let _ = sim.index_put_(
                &[
                    Some(Tensor::arange(rows, (Kind::Int64, sim.device()))),
                    Some(own),
                ],
                &Tensor::from(-2f32),
                false,
            );
        }
        let (values, indices) = sim.topk(k, 1, true, true); // [rows, k] each
        let values = Vec::<f32>::try_from(values.flatten(0, -1)).expect("float32");
        let indices = Vec::<i64>::try_from(indices.flatten(0, -1)).expect("int64");
        for r in 0..rows as usize {
            let k = k as usize;
            out.push(
                (0..k)
                    .map(|j| Neighbour {
                        index: indices[r * k + j] as usize,
                        similarity: values[r * k + j],
                    })
                    .collect(),
            );
        }
    }
    out
}

/// Every pair `(i, j)`, `i < j`, whose cosine similarity is at least `threshold`, most
/// similar first: the near-duplicates of a collection.
/// # Shapes
/// `x`: [N, D] → pairs `(i, j, sim)`
pub fn duplicate_pairs(x: &Tensor, threshold: f32) -> Vec<(usize, usize, f32)> {
    let u = unit_rows(x);
    let n = u.size()[0];
    let mut pairs = Vec::new();
    for start in (0..n).step_by(BLOCK as usize) {
        let rows = BLOCK.min(n - start);
        let sim = u.narrow(0, start, rows).matmul(&u.tr()); // [rows, N]
        let hits = sim.ge(threshold as f64).nonzero(); // [H, 2]: (row in block, column)
        let h = hits.size()[0];
        if h == 0 {
            continue;
        }
        let values =
            Vec::<f32>::try_from(sim.index(&[Some(hits.select(1, 0)), Some(hits.select(1, 1))]))
                .expect("float32");
        let at = Vec::<i64>::try_from(hits.flatten(0, -1)).expect("int64");
        for (p, &s) in values.iter().enumerate() {
            let (i, j) = ((start + at[2 * p]) as usize, at[2 * p + 1] as usize);
            if i < j {
                pairs.push((i, j, s));
            }
        }
    }
    pairs.sort_by(|a, b| b.2.total_cmp(&a.2).then((a.0, a.1).cmp(&(b.0, b.1))));
    pairs
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::Device;

    fn rows(v: &[[f32; 2]]) -> Tensor {
        Tensor::from_slice(&v.concat()).view([v.len() as i64, 2])
    }

    #[test]
    fn nearest_orders_by_cosine_and_skips_itself_in_the_same_set() {
        let g = rows(&[[1.0, 0.0], [0.0, 1.0], [1.0, 1.0], [-1.0, 0.0]]);
        let q = rows(&[[2.0, 0.1]]);
        let n = nearest(&q, &g, 3, false);
        let idx: Vec<usize> = n[0].iter().map(|x| x.index).collect();
        assert_eq!(idx, vec![0, 2, 1]);
        assert!((n[0][0].similarity - 2.0 / (4.01f32).sqrt()).abs() < 1e-6);
        // in the same set, row 0's nearest is row 2 (45°), never itself
        let own = nearest(&g, &g, 2, true);
        assert_eq!(own[0][0].index, 2);
        assert!(own
            .iter()
            .enumerate()
            .all(|(i, l)| l.iter().all(|x| x.index != i)));
        // k larger than the gallery: every other row
        assert_eq!(nearest(&g, &g, 10, true)[3].len(), 3);
    }

    #[test]
    fn duplicates_are_the_pairs_above_the_threshold_across_blocks() {
        tch::manual_seed(0);
        let n = BLOCK + 100; // the copies fall in different blocks
        let x = Tensor::randn([n, 64], (Kind::Float, Device::Cpu));
        let copy = x.get(3) * 2.0; // same direction: similarity 1
        x.get(n - 1).copy_(&copy);
        let pairs = duplicate_pairs(&x, 0.99);
        assert_eq!(pairs.len(), 1, "{pairs:?}");
        assert_eq!((pairs[0].0, pairs[0].1), (3, n as usize - 1));
        assert!((pairs[0].2 - 1.0).abs() < 1e-5);
        // random 64-d directions are far apart: none at 0.99 without the copy
        let y = Tensor::randn([200, 64], (Kind::Float, Device::Cpu));
        assert!(duplicate_pairs(&y, 0.99).is_empty());
        assert_eq!(duplicate_pairs(&y, -1.0).len(), 200 * 199 / 2);
    }
}
