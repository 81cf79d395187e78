//! Collapse diagnostics (Jing et al. 2022; Wang & Isola 2020): cheap numbers that tell whether
//! embeddings still spread out or have collapsed to (nearly) one point or a low-dimensional set.

use tch::{Kind, Tensor};

/// Mean over dimensions of the per-dimension standard deviation of the L2-normalised rows:
/// ```text
/// u_i = z_i / ‖z_i‖,   std = 1/D Σ_d std_i(u_id)
/// ```
/// Complete collapse gives 0; embeddings spread uniformly on the sphere give ≈ 1/√D.
/// # Shapes
/// `z`: [N, D], N ≥ 2 → f64
pub fn embedding_std(z: &Tensor) -> f64 {
    let z = z.detach().to_kind(Kind::Float);
    let u = &z / z.norm_scalaropt_dim(2, [1], true).clamp_min(1e-12);
    u.std_dim([0i64].as_slice(), false, false)
        .mean(Kind::Float)
        .double_value(&[])
}

/// Effective rank (Roy & Vetterli 2007) of the centred embeddings: exp of the entropy of the
/// normalised singular values, between 1 (all on a line) and D (all directions used).
/// ```text
/// p_k = σ_k / Σ σ,   erank = exp(−Σ p_k log p_k)
/// ```
/// # Shapes
/// `z`: [N, D] → f64
pub fn effective_rank(z: &Tensor) -> f64 {
    let z = z.detach().to_kind(Kind::Double);
    let c = &z - z.mean_dim([0i64].as_slice(), true, Kind::Double);
    let (_, s, _) = c.svd(true, false); // singular values [min(N, D)]
    let total = s.sum(Kind::Double).double_value(&[]);
    if total <= 0.0 {
        return 1.0;
    }
    let p = s / total;
    let h = -(&p * p.clamp_min(1e-300).log())
        .sum(Kind::Double)
        .double_value(&[]);
    h.exp()
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::Device;

    #[test]
    fn collapse_reads_zero_and_spread_reads_about_one_over_sqrt_d() {
        let same = Tensor::ones([64, 16], (Kind::Float, Device::Cpu));
        assert!(embedding_std(&same) < 1e-6);
        tch::manual_seed(0);
        let spread = Tensor::randn([4096, 16], (Kind::Float, Device::Cpu));
        let s = embedding_std(&spread);
        assert!((s - 0.25).abs() < 0.02, "{s}");
    }

    #[test]
    fn effective_rank_of_a_line_and_of_isotropic_data() {
        let t = Tensor::arange(32, (Kind::Float, Device::Cpu)).view([32, 1]);
        let line = Tensor::cat(&[&t, &(&t * 2.0), &(&t * -1.0)], 1); // [32, 3], rank 1
        assert!((effective_rank(&line) - 1.0).abs() < 1e-6);
        tch::manual_seed(0);
        let iso = Tensor::randn([4096, 8], (Kind::Float, Device::Cpu));
        let r = effective_rank(&iso);
        assert!(r > 7.8 && r <= 8.0 + 1e-9, "{r}");
    }
}
