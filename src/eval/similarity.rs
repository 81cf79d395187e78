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

/// How many near-duplicate pairs [`duplicate_pairs`] keeps: a collapsed encoder puts every
/// pair above any threshold (20 000 images: 2 × 10⁸ pairs), so what is kept is bounded.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct PairLimits {
    /// Pairs kept per image: its `per_image` most similar partners after it (`j > i`).
    pub per_image: usize,
    /// Pairs kept in all: the `total` most similar of those.
    pub total: usize,
}

impl Default for PairLimits {
    fn default() -> Self {
        PairLimits {
            per_image: 10,
            total: 10_000,
        }
    }
}

/// Near-duplicate pairs: the kept ones and how many there were.
#[derive(Clone, Debug, PartialEq)]
pub struct DuplicatePairs {
    /// `(i, j, sim)`, `i < j`, most similar first; at most [`PairLimits::total`].
    pub pairs: Vec<(usize, usize, f32)>,
    /// Every pair at or above the threshold, kept or not.
    pub found: u64,
}

impl DuplicatePairs {
    /// Some pairs were left out by the limits.
    pub fn capped(&self) -> bool {
        self.found > self.pairs.len() as u64
    }
}

/// A pair ordered by similarity (then by indices, so that ties are kept the same way each run).
#[derive(PartialEq)]
struct Ranked(f32, usize, usize);
impl Eq for Ranked {}
impl PartialOrd for Ranked {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Ranked {
    /// Greater = more similar; on a tie, the pair with the smaller indices.
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.0
            .total_cmp(&other.0)
            .then((other.1, other.2).cmp(&(self.1, self.2)))
    }
}

/// The pairs `(i, j)`, `i < j`, whose cosine similarity is at least `threshold`, most similar
/// first: the near-duplicates of a collection. Each image keeps its `limits.per_image` most
/// similar partners and the `limits.total` most similar of those are returned; `found` counts
/// every pair above the threshold. Memory: one block of similarities ([512, N]) and the kept
/// pairs, whatever the number found.
/// # Shapes
/// `x`: [N, D] → pairs `(i, j, sim)`
pub fn duplicate_pairs(x: &Tensor, threshold: f32, limits: PairLimits) -> DuplicatePairs {
    let u = unit_rows(x);
    let n = u.size()[0];
    let k = (limits.per_image as i64).min(n).max(0);
    let mut kept = std::collections::BinaryHeap::new(); // min-heap of the best `total`
    let mut found = 0u64;
    for start in (0..n).step_by(BLOCK as usize) {
        let rows = BLOCK.min(n - start);
        let sim = u.narrow(0, start, rows).matmul(&u.tr()); // [rows, N]
                                                            // only j > i: the diagonal and the lower triangle below any cosine
        let cols = Tensor::arange(n, (Kind::Int64, sim.device())).unsqueeze(0); // [1, N]
        let own = Tensor::arange_start(start, start + rows, (Kind::Int64, sim.device()));
        let sim = sim.masked_fill(&cols.le_tensor(&own.unsqueeze(1)), -2.0); // [rows, N]
        let hits = sim.ge(threshold as f64);
        found += hits.sum(Kind::Int64).int64_value(&[]) as u64;
        if k == 0 || limits.total == 0 {
            continue;
        }
        let (values, indices) = sim.topk(k, 1, true, true); // [rows, k] each
        let values = Vec::<f32>::try_from(values.flatten(0, -1)).expect("float32");
        let indices = Vec::<i64>::try_from(indices.flatten(0, -1)).expect("int64");
        for (p, (&s, &j)) in values.iter().zip(&indices).enumerate() {
            if s < threshold {
                continue;
            }
            let pair = Ranked(s, (start + p as i64 / k) as usize, j as usize);
            if kept.len() < limits.total {
                kept.push(std::cmp::Reverse(pair));
            } else if kept.peek().is_some_and(|w| pair > w.0) {
                kept.pop();
                kept.push(std::cmp::Reverse(pair));
            }
        }
    }
    let mut pairs: Vec<_> = kept.into_iter().map(|r| (r.0 .0, r.0 .1, r.0 .2)).collect();
    pairs.sort_by(|a, b| b.0.total_cmp(&a.0).then((a.1, a.2).cmp(&(b.1, b.2))));
    DuplicatePairs {
        pairs: pairs.into_iter().map(|(s, i, j)| (i, j, s)).collect(),
        found,
    }
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
        let found = duplicate_pairs(&x, 0.99, PairLimits::default());
        let pairs = &found.pairs;
        assert_eq!(pairs.len(), 1, "{pairs:?}");
        assert_eq!((pairs[0].0, pairs[0].1), (3, n as usize - 1));
        assert!((pairs[0].2 - 1.0).abs() < 1e-5);
        assert!(!found.capped());
        // random 64-d directions are far apart: none at 0.99 without the copy
        let y = Tensor::randn([200, 64], (Kind::Float, Device::Cpu));
        assert!(duplicate_pairs(&y, 0.99, PairLimits::default())
            .pairs
            .is_empty());
        let all = PairLimits {
            per_image: 200,
            total: usize::MAX,
        };
        assert_eq!(duplicate_pairs(&y, -1.0, all).pairs.len(), 200 * 199 / 2);
    }

    #[test]
    fn a_collapsed_encoder_finds_every_pair_but_keeps_only_the_limits() {
        // every row the same direction: all N(N-1)/2 pairs are duplicates
        let n = BLOCK + 88;
        let x = Tensor::ones([n, 8], (Kind::Float, Device::Cpu));
        let limits = PairLimits {
            per_image: 3,
            total: 50,
        };
        let d = duplicate_pairs(&x, 0.9, limits);
        assert_eq!(d.found, (n * (n - 1) / 2) as u64);
        assert_eq!(d.pairs.len(), 50);
        assert!(d.capped());
        assert!(d.pairs.iter().all(|&(i, j, _)| i < j));
        // per image: at most 3 partners
        let mut per = std::collections::HashMap::new();
        for &(i, _, _) in &d.pairs {
            *per.entry(i).or_insert(0) += 1;
        }
        assert!(per.values().all(|&c| c <= 3), "{per:?}");
        // ties are broken by index: the same pairs every call
        assert_eq!(d, duplicate_pairs(&x, 0.9, limits));
    }

    #[test]
    fn the_total_limit_keeps_the_most_similar_pairs() {
        // rows at growing angles from row 0: pair (0, 1) is the most similar, then (0, 2) ...
        let v: Vec<[f32; 2]> = (0..6).map(|a| [1.0, 0.01 * a as f32 * a as f32]).collect();
        let x = rows(&v);
        let d = duplicate_pairs(
            &x,
            0.0,
            PairLimits {
                per_image: 5,
                total: 3,
            },
        );
        assert_eq!(d.found, 15);
        let sims: Vec<f32> = d.pairs.iter().map(|p| p.2).collect();
        let mut sorted = sims.clone();
        sorted.sort_by(|a, b| b.total_cmp(a));
        assert_eq!(sims, sorted);
        let all = duplicate_pairs(
            &x,
            0.0,
            PairLimits {
                per_image: 5,
                total: 100,
            },
        );
        assert_eq!(&all.pairs[..3], &d.pairs[..]);
    }
}
