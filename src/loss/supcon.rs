//! Supervised contrastive loss (Khosla et al. 2020, "Supervised Contrastive Learning",
//! eq. 2, L^sup_out): NT-Xent where every view of the same class is a positive.

use super::{check_positive, check_rows, check_shape, l2_normalize, LossError};
use tch::{Kind, Tensor};

/// SupCon over N views with labels (two views of an image share its label):
/// ```text
/// u_i = z_i / ‖z_i‖,  s_ij = u_i·u_j / τ,  P(i) = { p ≠ i : y_p = y_i }
/// ℓ_i = −1/|P(i)| Σ_{p∈P(i)} log( exp(s_ip) / Σ_{a≠i} exp(s_ia) )
/// L = mean of ℓ_i over the anchors with |P(i)| ≥ 1   (0 if none)
/// ```
/// With all labels distinct except the two views of each image, it is NT-Xent.
///
/// # Shapes
/// `z`: [N, D]; `labels`: \[N\] integer → scalar
pub fn supcon(z: &Tensor, labels: &Tensor, temperature: f64) -> Result<Tensor, LossError> {
    check_rows("z", z, 1)?;
    check_shape("labels", labels, &[z.size()[0]])?;
    check_positive("temperature", temperature)?;
    let n = z.size()[0];
    let kind = z.kind();
    let u = l2_normalize(z);
    let eye = Tensor::eye(n, (Kind::Bool, z.device()));
    let logits = (u.matmul(&u.tr()) / temperature).masked_fill(&eye, f64::NEG_INFINITY); // [N, N]
    let log_prob = logits.log_softmax(-1, kind); // [N, N], −∞ on the diagonal
    let positives = labels
        .unsqueeze(1)
        .eq_tensor(&labels.unsqueeze(0))
        .logical_and(&eye.logical_not()); // [N, N]
    let count = positives.sum_dim_intlist([1i64].as_slice(), false, kind); // [N]
    let pos_log_prob = log_prob
        .masked_fill(&positives.logical_not(), 0.0)
        .sum_dim_intlist([1i64].as_slice(), false, kind); // [N]
    let has = count.gt(0.0);
    // anchors without a positive add 0, and a batch without any gives 0 (no host read)
    let anchors = has.sum(kind).clamp_min(1.0);
    let per_anchor = -(pos_log_prob / count.clamp_min(1.0)); // [N]
    Ok(per_anchor.masked_fill(&has.logical_not(), 0.0).sum(kind) / anchors)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::loss::nt_xent;
    use crate::loss::testing::{dot, grad_check, randn, to_rows, unit};

    fn naive(z: &Tensor, y: &[i64], t: f64) -> f64 {
        let u: Vec<Vec<f64>> = to_rows(z).iter().map(|r| unit(r)).collect();
        let n = u.len();
        let (mut total, mut anchors) = (0.0, 0.0);
        for i in 0..n {
            let den: f64 = (0..n)
                .filter(|&a| a != i)
                .map(|a| (dot(&u[i], &u[a]) / t).exp())
                .sum();
            let pos: Vec<usize> = (0..n).filter(|&p| p != i && y[p] == y[i]).collect();
            if pos.is_empty() {
                continue;
            }
            let l: f64 = pos
                .iter()
                .map(|&p| -((dot(&u[i], &u[p]) / t).exp() / den).ln())
                .sum();
            total += l / pos.len() as f64;
            anchors += 1.0;
        }
        total / anchors
    }

    #[test]
    fn matches_a_naive_loop() {
        let z = randn(&[8, 3], 0);
        let y = [0i64, 1, 0, 2, 1, 0, 3, 2]; // label 3 has no positive: not an anchor
        let got = supcon(&z, &Tensor::from_slice(&y), 0.3)
            .unwrap()
            .double_value(&[]);
        let want = naive(&z, &y, 0.3);
        assert!((got - want).abs() < 1e-10, "{got} vs {want}");
    }

    #[test]
    fn pair_labels_reduce_it_to_nt_xent_and_identical_rows_give_a_closed_form() {
        let (a, b) = (randn(&[5, 4], 1), randn(&[5, 4], 2));
        let ids = Tensor::arange(5, (Kind::Int64, tch::Device::Cpu)).repeat([2]);
        let s = supcon(&Tensor::cat(&[&a, &b], 0), &ids, 0.5)
            .unwrap()
            .double_value(&[]);
        let n = nt_xent(&a, &b, 0.5).unwrap().double_value(&[]);
        assert!((s - n).abs() < 1e-10, "{s} vs {n}");
        // identical rows: every term is log(N − 1)
        let z = Tensor::ones([6, 2], (Kind::Double, tch::Device::Cpu));
        let y = Tensor::from_slice(&[0i64, 0, 0, 1, 1, 2]);
        let l = supcon(&z, &y, 0.1).unwrap().double_value(&[]);
        assert!((l - 5f64.ln()).abs() < 1e-10);
    }

    #[test]
    fn gradients_match_finite_differences() {
        let z = randn(&[6, 3], 3);
        let y = Tensor::from_slice(&[0i64, 1, 0, 1, 2, 2]);
        let worst = grad_check(&z, |t| supcon(t, &y, 0.5).unwrap());
        assert!(worst < 1e-7, "{worst}");
    }

    #[test]
    fn bad_arguments_are_named() {
        let z = randn(&[4, 3], 0);
        let e = supcon(&z, &Tensor::from_slice(&[0i64, 1]), 0.5)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("labels") && e.contains("[2]") && e.contains("[4]"),
            "{e}"
        );
        let e = supcon(&z, &Tensor::from_slice(&[0i64, 1, 0, 1]), -0.5)
            .unwrap_err()
            .to_string();
        assert!(e.contains("temperature"), "{e}");
    }
}
