//! The 2-D map of the embeddings: t-SNE (van der Maaten 2014, Barnes-Hut, from the `bhtsne`
//! crate) on cosine distances, started from PCA; PCA alone as the fast fallback.
//!
//! ```text
//! PCA:    X_c = X − mean(X),  X_c = U Σ Vᵀ,  y_i = X_c,i · V[:, :2]
//! t-SNE:  p_j|i ∝ exp(−d(x_i, x_j)² / 2σ_i²) over the 3·perplexity nearest neighbours,
//!         d = ‖x_i/‖x_i‖ − x_j/‖x_j‖‖ = √(2 − 2 cos);  q_ij ∝ (1 + ‖y_i − y_j‖²)⁻¹;  min KL(P‖Q)
//! ```
//! Starting t-SNE from the PCA map scaled to a tiny spread (openTSNE's default) makes it
//! deterministic and keeps the global layout PCA sees.

use crate::eval::similarity::nearest;
use tch::{Kind, Tensor};

/// Which map.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum MapKind {
    /// t-SNE (perplexity 30, 750 iterations); PCA when there are too few points for it.
    Tsne,
    /// The first two principal components: seconds, but classes overlap more.
    Pca,
}

/// The first two principal components of the rows.
/// # Shapes
/// `x`: [N, D] → N points
pub fn pca(x: &Tensor) -> Vec<[f32; 2]> {
    let x = x.to_kind(Kind::Double);
    let n = x.size()[0];
    if n == 0 {
        return Vec::new();
    }
    let c = &x - x.mean_dim([0i64].as_slice(), true, Kind::Double); // [N, D]
    let coords = match c.f_svd(true, true) {
        Ok((_, _, v)) if v.size()[1] >= 2 => c.matmul(&v.narrow(1, 0, 2)), // [N, 2]
        Ok((_, _, v)) if v.size()[1] == 1 => Tensor::cat(
            &[
                c.matmul(&v),
                Tensor::zeros([n, 1], (Kind::Double, c.device())),
            ],
            1,
        ),
        _ => Tensor::zeros([n, 2], (Kind::Double, c.device())),
    };
    points(&coords)
}

/// [N, 2] → points
fn points(coords: &Tensor) -> Vec<[f32; 2]> {
    let v = Vec::<f32>::try_from(coords.to_kind(Kind::Float).flatten(0, -1)).expect("float");
    v.chunks(2).map(|p| [p[0], p[1]]).collect()
}

/// The perplexity used for `n` points: 30, lowered for small sets (t-SNE needs 3·perplexity
/// neighbours); None when there are too few points for t-SNE to mean anything.
pub fn perplexity_for(n: usize) -> Option<usize> {
    let p = 30.min(n.saturating_sub(2) / 3);
    (p >= 3).then_some(p)
}

/// The t-SNE map of the rows (PCA for fewer than 11 points), telling `progress` each
/// iteration done out of `iterations`.
/// # Shapes
/// `x`: [N, D] → N points
pub fn tsne(x: &Tensor, iterations: usize, progress: &mut dyn FnMut(usize)) -> Vec<[f32; 2]> {
    let n = x.size()[0] as usize;
    let init = pca(x);
    let Some(perplexity) = perplexity_for(n) else {
        return init;
    };
    let k = 3 * perplexity;
    let neighbours: Vec<Vec<bhtsne::Neighbor<f32>>> = nearest(x, x, k, true)
        .into_iter()
        .map(|row| {
            row.into_iter()
                .map(|nb| bhtsne::Neighbor {
                    index: nb.index,
                    distance: (2.0 - 2.0 * nb.similarity).max(0.0).sqrt(),
                })
                .collect()
        })
        .collect();
    // the PCA map with a standard deviation of 1e-4 along its first axis
    let sd = {
        let m = init.iter().map(|p| p[0]).sum::<f32>() / n as f32;
        (init.iter().map(|p| (p[0] - m).powi(2)).sum::<f32>() / n as f32).sqrt()
    };
    let scale = if sd > 0.0 { 1e-4 / sd } else { 1.0 };
    let start: Vec<f32> = init
        .iter()
        .flat_map(|p| [p[0] * scale, p[1] * scale])
        .collect();
    let ids: Vec<usize> = (0..n).collect();
    let mut t = bhtsne::tSNE::<f32, usize, 2>::new(&ids);
    t.perplexity(perplexity as f32)
        .epochs(iterations)
        .initial_embedding(start)
        .epoch_callback(|e, _| progress(e + 1))
        .barnes_hut_with_neighbors(0.5, &neighbours);
    t.embedding().chunks(2).map(|p| [p[0], p[1]]).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::Device;

    /// Two tight clusters far apart in 16-D.
    fn clusters(per: i64) -> Tensor {
        tch::manual_seed(1);
        let a = Tensor::randn([per, 16], (Kind::Float, Device::Cpu)) * 0.05 + 1.0;
        let b = Tensor::randn([per, 16], (Kind::Float, Device::Cpu)) * 0.05;
        let b = b + Tensor::from_slice(&[1f32, -1.0].repeat(8)).view([1, 16]);
        Tensor::cat(&[a, b], 0)
    }

    /// Mean distance between the clusters' centres over the mean spread within them.
    fn separation(p: &[[f32; 2]], per: usize) -> f32 {
        let centre = |s: &[[f32; 2]]| {
            let n = s.len() as f32;
            [
                s.iter().map(|q| q[0]).sum::<f32>() / n,
                s.iter().map(|q| q[1]).sum::<f32>() / n,
            ]
        };
        let spread = |s: &[[f32; 2]], c: [f32; 2]| {
            s.iter()
                .map(|q| ((q[0] - c[0]).powi(2) + (q[1] - c[1]).powi(2)).sqrt())
                .sum::<f32>()
                / s.len() as f32
        };
        let (a, b) = (&p[..per], &p[per..]);
        let (ca, cb) = (centre(a), centre(b));
        let between = ((ca[0] - cb[0]).powi(2) + (ca[1] - cb[1]).powi(2)).sqrt();
        between / (0.5 * (spread(a, ca) + spread(b, cb)))
    }

    #[test]
    fn pca_and_tsne_keep_two_clusters_apart() {
        let x = clusters(60);
        let p = pca(&x);
        assert_eq!(p.len(), 120);
        assert!(separation(&p, 60) > 5.0, "{}", separation(&p, 60));
        let mut last = 0;
        let t = tsne(&x, 300, &mut |e| last = e);
        assert_eq!(last, 300);
        assert_eq!(t.len(), 120);
        assert!(t.iter().all(|q| q[0].is_finite() && q[1].is_finite()));
        assert!(separation(&t, 60) > 3.0, "{}", separation(&t, 60));
    }

    #[test]
    fn tiny_sets_fall_back_to_pca_and_the_empty_set_is_empty() {
        assert_eq!(perplexity_for(10), None);
        assert_eq!(perplexity_for(11), Some(3));
        assert_eq!(perplexity_for(5000), Some(30));
        let x = Tensor::randn([5, 4], (Kind::Float, Device::Cpu));
        assert_eq!(tsne(&x, 100, &mut |_| {}), pca(&x));
        assert!(pca(&Tensor::zeros([0, 4], (Kind::Float, Device::Cpu))).is_empty());
    }
}
