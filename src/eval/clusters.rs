//! Under- and over-clustering of an encoder's features (`selfsup eval --kind clusters`):
//! k-means on the test split's features at k = the number of classes, compared with the labels.
//!
//! Too few negatives and classes merge: one cluster holds several classes (under-clustering).
//! Too many — images of the same class pushed apart as negatives — and a class splits over
//! several clusters (over-clustering). With the contingency table n_ij (images of class i in
//! cluster j), a_i = Σ_j n_ij, b_j = Σ_i n_ij, N = Σ n_ij:
//! ```text
//! NMI = I(Y; C) / ((H(Y) + H(C)) / 2)          (sklearn's "arithmetic" normalisation)
//! ARI = (Σ C(n_ij,2) − E) / ((Σ C(a_i,2) + Σ C(b_j,2)) / 2 − E),   E = Σ C(a_i,2) Σ C(b_j,2) / C(N,2)
//! split(i)  = #{ j : n_ij ≥ 10 % of a_i }      (clusters a class is spread over)
//! merged(j) = #{ i : n_ij ≥ 10 % of b_j }      (classes a cluster mixes)
//! ```

use crate::loss::l2_normalize;
use crate::method::kmeans::spherical_kmeans;
use tch::{Kind, Tensor};

/// A class or cluster counts another as a part of it from this share of its images.
pub const SHARE: f64 = 0.10;
/// k-means restarts (the best by the sum of cosines to the centroids is kept) and iterations.
const RESTARTS: u64 = 5;
const ITERATIONS: usize = 30;

/// The clustering of a split's features against its labels.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct ClusterReport {
    /// k: the number of classes.
    pub clusters: usize,
    pub images: usize,
    /// Normalised mutual information, 0 (independent) to 1 (the same partition).
    pub nmi: f64,
    /// Adjusted Rand index: 0 for chance agreement, 1 for the same partition.
    pub ari: f64,
    /// Per class (by label): the clusters holding at least [`SHARE`] of it.
    pub clusters_per_class: Vec<usize>,
    /// Per cluster: the classes holding at least [`SHARE`] of it (0 for an empty cluster).
    pub classes_per_cluster: Vec<usize>,
}

impl ClusterReport {
    /// Classes spread over two or more clusters (over-clustering).
    pub fn split_classes(&self) -> usize {
        self.clusters_per_class.iter().filter(|&&n| n >= 2).count()
    }

    /// Clusters mixing two or more classes (under-clustering).
    pub fn merged_clusters(&self) -> usize {
        self.classes_per_cluster.iter().filter(|&&n| n >= 2).count()
    }
}

/// k-means of `features` [M, D] (cosine, rows normalised here) at k = `classes`, scored
/// against `labels` (each < `classes`). Deterministic.
pub fn cluster_report(features: &Tensor, labels: &[u32], classes: usize) -> ClusterReport {
    let x = l2_normalize(&features.to_kind(Kind::Float));
    let m = labels.len();
    let k = classes.min(m).max(1);
    let best = (0..RESTARTS)
        .map(|seed| {
            let (c, a) = spherical_kmeans(&x, k, ITERATIONS, seed);
            // Σ_i ⟨x_i, c_{a_i}⟩: higher is tighter
            let fit = (&x * c.index_select(0, &a))
                .sum(Kind::Double)
                .double_value(&[]);
            (fit, a)
        })
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, a)| a)
        .expect("at least one restart");
    let assigned: Vec<i64> = Vec::try_from(best).unwrap_or_default();
    let mut table = vec![vec![0usize; k]; classes];
    for (&y, &c) in labels.iter().zip(&assigned) {
        table[y as usize][c as usize] += 1;
    }
    scores(&table)
}

/// The report of a contingency table `table[class][cluster]`.
pub fn scores(table: &[Vec<usize>]) -> ClusterReport {
    let k = table.first().map_or(0, Vec::len);
    let a: Vec<usize> = table.iter().map(|r| r.iter().sum()).collect();
    let b: Vec<usize> = (0..k).map(|j| table.iter().map(|r| r[j]).sum()).collect();
    let n: usize = a.iter().sum();
    let nf = n as f64;
    let entropy = |counts: &[usize]| -> f64 {
        counts
            .iter()
            .filter(|&&c| c > 0)
            .map(|&c| {
                let p = c as f64 / nf;
                -p * p.ln()
            })
            .sum()
    };
    let mut mutual = 0.0;
    for (i, row) in table.iter().enumerate() {
        for (j, &nij) in row.iter().enumerate() {
            if nij > 0 {
                let p = nij as f64 / nf;
                mutual += p * (p * nf * nf / (a[i] as f64 * b[j] as f64)).ln();
            }
        }
    }
    let (hy, hc) = (entropy(&a), entropy(&b));
    let nmi = match hy + hc {
        s if s > 0.0 => (mutual / (s / 2.0)).clamp(0.0, 1.0),
        _ => 1.0, // one class in one cluster: the same partition
    };
    let pairs = |c: usize| (c * c.saturating_sub(1)) as f64 / 2.0;
    let index: f64 = table.iter().flatten().map(|&c| pairs(c)).sum();
    let (sa, sb) = (
        a.iter().map(|&c| pairs(c)).sum::<f64>(),
        b.iter().map(|&c| pairs(c)).sum::<f64>(),
    );
    let expected = sa * sb / pairs(n).max(1.0);
    let ari = match (sa + sb) / 2.0 - expected {
        d if d.abs() > 1e-12 => (index - expected) / d,
        _ => 1.0,
    };
    let at_least = |part: usize, whole: usize| whole > 0 && part as f64 >= SHARE * whole as f64;
    ClusterReport {
        clusters: k,
        images: n,
        nmi,
        ari,
        clusters_per_class: table
            .iter()
            .zip(&a)
            .map(|(row, &ai)| row.iter().filter(|&&c| at_least(c, ai)).count())
            .collect(),
        classes_per_cluster: (0..k)
            .map(|j| table.iter().filter(|r| at_least(r[j], b[j])).count())
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::Device;

    #[test]
    fn identical_partitions_score_one_and_crossed_ones_score_by_hand() {
        let same = scores(&[vec![2, 0], vec![0, 2]]);
        assert!((same.nmi - 1.0).abs() < 1e-12 && (same.ari - 1.0).abs() < 1e-12);
        // labels [0, 0, 1, 1], clusters [0, 1, 0, 1]: independent; ARI by hand
        // (0 − 2·2/6) / ((2 + 2)/2 − 2·2/6) = −0.5
        let crossed = scores(&[vec![1, 1], vec![1, 1]]);
        assert!(crossed.nmi.abs() < 1e-12);
        assert!((crossed.ari + 0.5).abs() < 1e-12, "{}", crossed.ari);
        assert_eq!(crossed.clusters_per_class, [2, 2]);
        assert_eq!(crossed.classes_per_cluster, [2, 2]);
    }

    /// Points around `centre` rows (one clump each) with a little noise: [n · clumps, D].
    fn clumps(centres: &[[f32; 3]], n: i64) -> Tensor {
        tch::manual_seed(7);
        let rows: Vec<Tensor> = centres
            .iter()
            .map(|c| {
                Tensor::from_slice(c).unsqueeze(0).repeat([n, 1])
                    + Tensor::randn([n, 3], (Kind::Float, Device::Cpu)) * 0.02
            })
            .collect();
        Tensor::cat(&rows, 0)
    }

    #[test]
    fn separated_classes_are_found_and_merged_and_split_ones_are_named() {
        let axes = [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]];
        // three classes, each its own clump: found exactly
        let x = clumps(&axes, 20);
        let labels: Vec<u32> = (0..60).map(|i| i / 20).collect();
        let r = cluster_report(&x, &labels, 3);
        assert!(
            (r.nmi - 1.0).abs() < 1e-9 && (r.ari - 1.0).abs() < 1e-9,
            "{r:?}"
        );
        assert_eq!((r.split_classes(), r.merged_clusters()), (0, 0));
        // classes 0 and 1 share the first clump (merged); class 2 lies in two clumps (split)
        let labels: Vec<u32> = (0..60)
            .map(|i| match i {
                0..=9 => 0,
                10..=19 => 1,
                _ => 2,
            })
            .collect();
        let r = cluster_report(&x, &labels, 3);
        assert_eq!(r.clusters_per_class, [1, 1, 2], "{r:?}");
        let mut per_cluster = r.classes_per_cluster.clone();
        per_cluster.sort();
        assert_eq!(per_cluster, [1, 1, 2], "{r:?}");
        assert_eq!((r.split_classes(), r.merged_clusters()), (1, 1));
        assert!(r.nmi < 1.0 && r.ari < 1.0);
    }
}
