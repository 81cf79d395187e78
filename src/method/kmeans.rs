//! Spherical k-means on unit vectors (cosine similarity), as DeepCluster-v2 clusters its memory
//! bank (Caron et al. 2020, appendix; the reference `cluster_memory`):
//! ```text
//! C ← k distinct rows of X (seeded draw)
//! repeat `iterations` times:
//!     a_i = argmax_j ⟨x_i, c_j⟩                       (assignment)
//!     c_j ← Σ_{a_i = j} x_i / ‖Σ_{a_i = j} x_i‖       (empty clusters keep c_j)
//! a_i = argmax_j ⟨x_i, c_j⟩                           (final assignment to the final C)
//! ```

use crate::loss::l2_normalize;
use crate::rng::Rng;
use tch::{Kind, Tensor};

/// Random stream of the initial centroid draw.
const INIT_STREAM: u64 = 3 << 32;
/// Rows scored against the centroids at a time: bounds the [rows, k] score matrix.
const ROWS_PER_CHUNK: i64 = 4096;

/// Clusters `x` [N, D] (unit rows) into `k ≤ N` clusters: unit centroids [k, D] and each
/// row's cluster \[N\] (i64). Deterministic in `seed`; no gradient flows.
pub fn spherical_kmeans(x: &Tensor, k: usize, iterations: usize, seed: u64) -> (Tensor, Tensor) {
    let n = x.size()[0] as usize;
    assert!((1..=n).contains(&k), "k-means: k = {k} for {n} rows");
    tch::no_grad(|| {
        let first: Vec<i64> = Rng::for_sample(seed, 0, 0, INIT_STREAM).permutation(n)[..k]
            .iter()
            .map(|&i| i as i64)
            .collect();
        let mut c = x.index_select(0, &Tensor::from_slice(&first).to_device(x.device()));
        for _ in 0..iterations {
            let a = assign(x, &c);
            let sums = Tensor::zeros_like(&c).index_add(0, &a, x);
            let counts = Tensor::zeros([k as i64], (Kind::Float, x.device())).index_add(
                0,
                &a,
                &Tensor::ones([n as i64], (Kind::Float, x.device())),
            );
            let filled = counts.gt(0.0).unsqueeze(1);
            c = l2_normalize(&sums).where_self(&filled, &c);
        }
        let a = assign(x, &c);
        (c, a)
    })
}

/// The nearest centroid (largest cosine) of every row of `x` [N, D]: \[N\] i64.
pub fn assign(x: &Tensor, centroids: &Tensor) -> Tensor {
    let n = x.size()[0];
    let parts: Vec<Tensor> = (0..n)
        .step_by(ROWS_PER_CHUNK as usize)
        .map(|start| {
            x.narrow(0, start, ROWS_PER_CHUNK.min(n - start))
                .matmul(&centroids.tr())
                .argmax(1, false)
        })
        .collect();
    Tensor::cat(&parts, 0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::Device;

    /// `per` noisy unit points around each of `m` random unit directions, in order.
    fn blobs(m: i64, per: i64, d: i64, noise: f64, seed: i64) -> Tensor {
        tch::manual_seed(seed);
        let dirs = l2_normalize(&Tensor::randn([m, d], (Kind::Float, Device::Cpu)));
        let x = dirs.repeat_interleave_self_int(per, 0, None)
            + Tensor::randn([m * per, d], (Kind::Float, Device::Cpu)) * noise;
        l2_normalize(&x)
    }

    #[test]
    fn over_clustering_well_separated_blobs_never_mixes_them() {
        // Lloyd's iterations from a random draw: a blob that draws no initial centroid would
        // be merged into another, so draw 4 per blob on average (none missing, seeded).
        let (m, per) = (3, 50);
        let x = blobs(m, per, 16, 0.05, 0);
        let (c, a) = spherical_kmeans(&x, 4 * m as usize, 10, 1);
        let a: Vec<i64> = a.try_into().unwrap();
        let blob_of = |i: usize| i / per as usize;
        for j in 0..4 * m {
            let blobs: std::collections::BTreeSet<usize> =
                (0..a.len()).filter(|&i| a[i] == j).map(blob_of).collect();
            assert!(blobs.len() <= 1, "cluster {j} mixes blobs {blobs:?}");
        }
        let norms = c.norm_scalaropt_dim(2, [1], false);
        let ones = Tensor::ones([4 * m], (Kind::Float, Device::Cpu));
        assert!(norms.allclose(&ones, 1e-5, 1e-5, false));
    }

    #[test]
    fn iterations_never_lower_the_mean_cosine_to_the_centroid() {
        let x = blobs(4, 30, 8, 0.6, 5);
        let objective = |iterations| {
            let (c, a) = spherical_kmeans(&x, 6, iterations, 2);
            (&x * c.index_select(0, &a))
                .sum(Kind::Float)
                .double_value(&[])
                / 120.0
        };
        let scores: Vec<f64> = (0..6).map(objective).collect();
        for w in scores.windows(2) {
            assert!(w[1] >= w[0] - 1e-5, "objective fell: {scores:?}");
        }
        assert!(scores[5] > scores[0], "no progress: {scores:?}");
    }

    #[test]
    fn centroids_are_the_normalised_means_of_their_members() {
        let x = blobs(3, 20, 8, 0.5, 2);
        let (c, a) = spherical_kmeans(&x, 5, 4, 3);
        // the last assignment is to the final centroids
        assert!(a.equal(&assign(&x, &c)));
        // one more update step from a fixed point changes little: each centroid is close to
        // the normalised mean of the rows assigned to it
        let a: Vec<i64> = a.try_into().unwrap();
        for j in 0..5 {
            let rows: Vec<i64> = (0..60).filter(|&i| a[i as usize] == j).collect();
            if rows.is_empty() {
                continue;
            }
            let mean = l2_normalize(
                &x.index_select(0, &Tensor::from_slice(&rows))
                    .sum_dim_intlist([0i64].as_slice(), true, Kind::Float),
            );
            let cos = mean.matmul(&c.get(j).unsqueeze(1)).double_value(&[0, 0]);
            assert!(
                cos > 0.97,
                "centroid {j}: cosine {cos} to its members' mean"
            );
        }
    }

    #[test]
    fn empty_clusters_keep_their_centroid_and_nothing_is_nan() {
        // Two distinct points (a four times, b once) and k = 3: at least two initial centroids
        // are copies of a, ties go to the lower index, so a cluster is always empty. Its sum
        // is zero; it must keep its centroid, not become 0 or NaN.
        let a = l2_normalize(&Tensor::from_slice(&[1.0f32, 2.0, 3.0]).view([1, 3]));
        let b = l2_normalize(&Tensor::from_slice(&[-3.0f32, 1.0, 0.5]).view([1, 3]));
        let x = Tensor::cat(&[a.repeat([4, 1]), b.shallow_clone()], 0); // [5, 3]
        for seed in 0..20 {
            let (c, assign) = spherical_kmeans(&x, 3, 3, seed);
            assert_eq!(c.isnan().any().int64_value(&[]), 0, "seed {seed}");
            let norms = c.norm_scalaropt_dim(2, [1], false);
            assert!(
                norms.allclose(
                    &Tensor::ones([3], (Kind::Float, Device::Cpu)),
                    1e-5,
                    1e-5,
                    false
                ),
                "seed {seed}: a centroid lost its unit norm (an empty cluster was overwritten)"
            );
            // every centroid is one of the two distinct points: a kept start or a cluster mean
            for j in 0..3 {
                let cj = c.get(j);
                assert!(
                    cj.allclose(&a.get(0), 1e-5, 1e-5, false)
                        || cj.allclose(&b.get(0), 1e-5, 1e-5, false),
                    "seed {seed}: centroid {j} is neither point"
                );
            }
            assert_eq!(assign.size(), [5]);
        }
    }

    #[test]
    fn is_deterministic_in_the_seed_and_chunking_does_not_matter() {
        let x = blobs(5, 1000, 4, 0.3, 4); // 5000 rows: two chunks
        let (c1, a1) = spherical_kmeans(&x, 7, 3, 9);
        let (c2, a2) = spherical_kmeans(&x, 7, 3, 9);
        assert!(c1.equal(&c2) && a1.equal(&a2));
        let whole = x.matmul(&c1.tr()).argmax(1, false);
        assert!(a1.equal(&whole));
    }
}
