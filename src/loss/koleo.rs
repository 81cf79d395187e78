//! The KoLeo regulariser (Sablayrolles et al. 2019, "Spreading vectors for similarity search",
//! arXiv:1806.03198; DINOv2, Oquab et al. 2023, §4): the Kozachenko–Leonenko differential
//! entropy estimator, which pushes each feature away from its nearest neighbour in the batch
//! and so spreads the batch uniformly over the sphere.

use super::{check_rows, l2_normalize, LossError};
use tch::{Kind, Tensor};

/// `u_i = z_i / ‖z_i‖`, `n(i) = argmax_{j ≠ i} u_i·u_j` (the nearest neighbour, no gradient
/// through the choice),
/// ```text
/// L = −1/B Σ_i log(‖u_i − u_n(i) + ε‖ + ε),   ε = 1e-8
/// ```
/// (DINOv2's `KoLeoLoss`: `PairwiseDistance(eps = 1e-8)` adds ε inside the norm).
/// # Shapes
/// `z`: [B, D], B ≥ 2 → scalar
pub fn koleo(z: &Tensor) -> Result<Tensor, LossError> {
    check_rows("features", z, 2)?;
    let u = l2_normalize(z); // [B, D]
    let b = u.size()[0];
    let nearest = tch::no_grad(|| {
        let dots = u.matmul(&u.tr()); // [B, B]
        let eye = Tensor::eye(b, (Kind::Bool, u.device()));
        dots.masked_fill(&eye, -2.0).argmax(1, false) // [B]
    });
    let d = (&u - u.index_select(0, &nearest) + 1e-8)
        .square()
        .sum_dim_intlist([1i64].as_slice(), false, u.kind())
        .sqrt(); // [B]
    Ok(-(d + 1e-8).log().mean(u.kind()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::loss::testing::{dist, randn, rows, to_rows, unit};

    #[test]
    fn by_hand_on_three_points() {
        let z = rows(&[&[1.0, 0.0], &[0.8, 0.6], &[-1.0, 0.1]]);
        let u: Vec<Vec<f64>> = to_rows(&z).iter().map(|r| unit(r)).collect();
        // nearest neighbours: 0 ↔ 1, and 2's nearest is 1 (cosine −0.8 + 0.06 > −0.995)
        let want = -[(0, 1), (1, 0), (2, 1)]
            .iter()
            .map(|&(i, j)| dist(&u[i], &u[j]).ln())
            .sum::<f64>()
            / 3.0;
        let got = koleo(&z).unwrap().double_value(&[]);
        assert!((got - want).abs() < 1e-6, "{got} vs {want}");
    }

    #[test]
    fn spread_points_score_lower_than_clustered_ones_and_one_row_is_refused() {
        let spread = randn(&[16, 8], 0);
        let clustered = randn(&[1, 8], 1).repeat([16, 1]) + randn(&[16, 8], 2) * 0.01;
        let a = koleo(&spread).unwrap().double_value(&[]);
        let b = koleo(&clustered).unwrap().double_value(&[]);
        assert!(a < b, "{a} vs {b}");
        // the gradient pushes neighbours apart: a step against it lowers the loss
        let x = spread.set_requires_grad(true);
        let l = koleo(&x).unwrap();
        l.backward();
        let moved = tch::no_grad(|| &x - x.grad() * 0.01);
        assert!(koleo(&moved).unwrap().double_value(&[]) < l.double_value(&[]));
        assert!(koleo(&randn(&[1, 8], 3)).is_err());
    }
}
