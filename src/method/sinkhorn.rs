//! Sinkhorn-Knopp equipartition of SwAV (Caron et al. 2020, arXiv:2006.09882, §3.1 and
//! Algorithm 1): soft assignments of B samples to K prototypes such that every prototype gets
//! the same share of the batch.

use tch::{Kind, Tensor};

/// The transport plan `Q = Diag(u) exp(S/ε) Diag(v)` found by `iterations` alternating
/// normalisations, scaled so each **row** (sample) sums to 1:
/// ```text
/// Q ← exp(S / ε)ᵀ / Σ                           [K, B]
/// repeat: Q ← Q / (K · rowsum(Q));  Q ← Q / (B · colsum(Q))
/// return (B · Q)ᵀ                              [B, K]
/// ```
/// Columns (prototypes) then each sum to B/K: an equipartition of the batch.
///
/// At least one iteration is run. SwAV uses ε = 0.05 on cosine scores in [−1, 1] and 3
/// iterations; peaked kernels (large |S|/ε) need many more iterations to equalise.
///
/// # Shapes
/// `scores`: [B, K] (sample–prototype similarities) → [B, K], no gradient
pub fn sinkhorn(scores: &Tensor, epsilon: f64, iterations: usize) -> Tensor {
    if scores.numel() == 0 {
        return scores.detach().zeros_like();
    }
    tch::no_grad(|| {
        let s = scores.detach().to_kind(Kind::Double);
        let (b, k) = (s.size()[0] as f64, s.size()[1] as f64);
        // subtract the max for stability: it cancels in the normalisations
        let mut q = ((&s - s.max()) / epsilon).exp().tr(); // [K, B]
        q = &q / q.sum(Kind::Double);
        for _ in 0..iterations.max(1) {
            q = &q / (q.sum_dim_intlist([1i64].as_slice(), true, Kind::Double) * k);
            q = &q / (q.sum_dim_intlist([0i64].as_slice(), true, Kind::Double) * b);
        }
        (q * b).tr().to_kind(scores.kind())
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::Device;

    #[test]
    fn assignments_are_doubly_stochastic() {
        tch::manual_seed(0);
        // cosine-like scores in [−0.1, 0.1]-ish, SwAV's ε: a kernel that converges in 50 steps
        let s = Tensor::randn([12, 4], (Kind::Float, Device::Cpu)) * 0.1;
        let q = sinkhorn(&s, 0.05, 50).to_kind(Kind::Double);
        let rows = q.sum_dim_intlist([1i64].as_slice(), false, Kind::Double);
        let cols = q.sum_dim_intlist([0i64].as_slice(), false, Kind::Double);
        assert!(
            (rows - 1.0).abs().max().double_value(&[]) < 1e-6,
            "each sample sums to 1"
        );
        assert!(
            (cols - 3.0).abs().max().double_value(&[]) < 1e-3,
            "each prototype gets B/K = 3"
        );
        assert!(q.min().double_value(&[]) >= 0.0);
    }

    #[test]
    fn a_collapsed_batch_is_still_spread_over_the_prototypes() {
        // Every sample prefers prototype 0: plain softmax would send all there; Sinkhorn splits.
        let s = Tensor::from_slice(&[1.0f32, 0.0, 0.0])
            .view([1, 3])
            .repeat([6, 1]);
        let q = sinkhorn(&s, 0.5, 100);
        let cols = q.sum_dim_intlist([0i64].as_slice(), false, Kind::Float);
        assert!(
            (&cols - 2.0).abs().max().double_value(&[]) < 1e-3,
            "{cols:?}"
        );
    }

    #[test]
    fn no_gradient_flows_through_the_assignments() {
        let s = Tensor::randn([4, 3], (Kind::Float, Device::Cpu)).set_requires_grad(true);
        assert!(!sinkhorn(&s, 0.05, 3).requires_grad());
    }
}
