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
    // singular values [min(N, D)]; NaN when the SVD fails (non-finite embeddings)
    let Ok((_, s, _)) = c.f_svd(true, false) else {
        return f64::NAN;
    };
    let total = s.sum(Kind::Double).double_value(&[]);
    if !total.is_finite() {
        return f64::NAN;
    }
    if total <= 0.0 {
        return 1.0;
    }
    let p = s / total;
    let h = -(&p * p.clamp_min(1e-300).log())
        .sum(Kind::Double)
        .double_value(&[]);
    h.exp()
}

/// Alignment (Wang & Isola 2020, eq. 4 with α = 2): mean squared distance between the
/// normalised embeddings of positive pairs; 0 when the two views agree exactly.
/// ```text
/// align = 1/K Σ_k ‖u_k − v_k‖²,   u = z_a/‖z_a‖, v = z_b/‖z_b‖      (in [0, 4])
/// ```
/// # Shapes
/// `z_a`, `z_b`: [K, D] → f64
pub fn alignment(z_a: &Tensor, z_b: &Tensor) -> f64 {
    let u = normalized(z_a);
    let v = normalized(z_b);
    (u - v)
        .pow_tensor_scalar(2)
        .sum_dim_intlist([1i64].as_slice(), false, Kind::Double)
        .mean(Kind::Double)
        .double_value(&[])
}

/// Uniformity (Wang & Isola 2020, eq. 5 with t = 2): log of the mean Gaussian potential between
/// distinct normalised embeddings; −4 is the ideal of points spread over a high-dimensional
/// sphere, 0 is complete collapse.
/// ```text
/// unif = log( 1/(N(N−1)) Σ_{i≠j} exp(−2 ‖u_i − u_j‖²) )
/// ```
/// # Shapes
/// `z`: [N, D], N ≥ 2 → f64
pub fn uniformity(z: &Tensor) -> f64 {
    let u = normalized(z);
    let n = u.size()[0];
    if n < 2 {
        return f64::NAN;
    }
    // ‖u_i − u_j‖² = 2 − 2 u_i·u_j for unit rows
    let sq = (u.matmul(&u.tr()) * -2.0 + 2.0).clamp_min(0.0); // [N, N]
    let k = (sq * -2.0).exp();
    let off_diagonal = k.sum(Kind::Double) - k.diagonal(0, 0, 1).sum(Kind::Double);
    (off_diagonal / (n * (n - 1)) as f64)
        .log()
        .double_value(&[])
}

fn normalized(z: &Tensor) -> Tensor {
    let z = z.detach().to_kind(Kind::Double);
    &z / z.norm_scalaropt_dim(2, [1], true).clamp_min(1e-12)
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

    #[test]
    fn alignment_and_uniformity_closed_forms() {
        tch::manual_seed(3);
        let z = Tensor::randn([50, 8], (Kind::Float, Device::Cpu));
        assert!(alignment(&z, &(&z * 2.0)) < 1e-10);
        // opposite views: ‖u − (−u)‖² = 4
        assert!((alignment(&z, &(-&z)) - 4.0).abs() < 1e-6);
        // collapse: every distance 0 → log 1 = 0
        let same = Tensor::ones([10, 4], (Kind::Float, Device::Cpu));
        assert!(uniformity(&same).abs() < 1e-9);
        // two antipodal points: exp(−2·4) → −8
        let pair = Tensor::from_slice(&[1.0f32, 0.0, -1.0, 0.0]).view([2, 2]);
        assert!((uniformity(&pair) + 8.0).abs() < 1e-9);
        // random points in 8-D spread out: well below 0, above the antipodal bound
        let u = uniformity(&z);
        assert!(u < -2.0 && u > -8.0, "{u}");
    }
}
