//! Weighted k-nearest-neighbour classification on frozen features (Wu et al. 2018,
//! "Unsupervised Feature Learning via Non-Parametric Instance Discrimination"; lightly's
//! `knn_predict`), the standard monitor of SSL encoders.

use tch::{Kind, Tensor};

/// Predicts a class for every test row:
/// ```text
/// s_ij = cos(test_i, train_j);  N_k(i) = the k train rows of largest s_ij
/// score_ic = Σ_{j ∈ N_k(i), y_j = c} exp(s_ij / t);   ŷ_i = argmax_c score_ic
/// ```
/// Computed in chunks of test rows, so memory is O(chunk × N_train).
/// # Shapes
/// `train`: [N, D], `train_labels`: \[N\] int64, `test`: [M, D] → \[M\] int64
pub fn knn_predict(
    train: &Tensor,
    train_labels: &Tensor,
    test: &Tensor,
    num_classes: i64,
    k: usize,
    t: f64,
) -> Tensor {
    let normalise = |x: &Tensor| {
        let x = x.to_kind(Kind::Float);
        &x / x.norm_scalaropt_dim(2, [1], true).clamp_min(1e-12)
    };
    let train = normalise(train); // [N, D]
    let test = normalise(test); // [M, D]
    let n = train.size()[0];
    let m = test.size()[0];
    let k = (k as i64).min(n);
    let chunk = 256;
    let mut preds = Vec::new();
    tch::no_grad(|| {
        let mut start = 0;
        while start < m {
            let len = chunk.min(m - start);
            let sim = test.narrow(0, start, len).matmul(&train.tr()); // [len, N]
            let (top_sim, top_idx) = sim.topk(k, 1, true, true); // [len, k]
            let top_labels = train_labels
                .index_select(0, &top_idx.view(-1))
                .view([len, k]); // [len, k]
            let weights = (top_sim / t).exp(); // [len, k]
            let scores = Tensor::zeros([len, num_classes], (Kind::Float, train.device()))
                .scatter_add(1, &top_labels, &weights); // [len, C]
            preds.push(scores.argmax(1, false));
            start += len;
        }
    });
    if preds.is_empty() {
        return Tensor::zeros([0], (Kind::Int64, train.device()));
    }
    Tensor::cat(&preds, 0)
}

/// Top-1 accuracy of [`knn_predict`] against `test_labels` (\[M\] int64).
pub fn knn_accuracy(
    train: &Tensor,
    train_labels: &Tensor,
    test: &Tensor,
    test_labels: &Tensor,
    num_classes: i64,
    k: usize,
    t: f64,
) -> f64 {
    super::accuracy(
        &knn_predict(train, train_labels, test, num_classes, k, t),
        test_labels,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::Device;

    fn t2(v: &[[f32; 2]]) -> Tensor {
        let flat: Vec<f32> = v.iter().flatten().copied().collect();
        Tensor::from_slice(&flat).view([v.len() as i64, 2])
    }

    #[test]
    fn votes_are_weighted_by_similarity() {
        // Two train points of class 0 at 80° from the query, one of class 1 at 10°: with k = 3
        // a plain vote says 0, the weighted vote (t = 0.1) says 1.
        let deg = |a: f32| [a.to_radians().cos(), a.to_radians().sin()];
        let train = t2(&[deg(80.0), deg(-80.0), deg(10.0)]);
        let labels = Tensor::from_slice(&[0i64, 0, 1]);
        let query = t2(&[deg(0.0)]);
        assert_eq!(
            knn_predict(&train, &labels, &query, 2, 3, 0.1).int64_value(&[0]),
            1
        );
        // With a huge temperature the weights are ~equal and the majority wins.
        assert_eq!(
            knn_predict(&train, &labels, &query, 2, 3, 1e6).int64_value(&[0]),
            0
        );
    }

    #[test]
    fn separable_clusters_are_classified_perfectly_and_k_is_capped() {
        tch::manual_seed(0);
        let centres = Tensor::from_slice(&[5.0f32, 0.0, 0.0, 5.0, -5.0, -5.0]).view([3, 2]);
        let make = |n: i64| {
            let y = Tensor::arange(n, (Kind::Int64, Device::Cpu)).remainder(3);
            let x = centres.index_select(0, &y)
                + Tensor::randn([n, 2], (Kind::Float, Device::Cpu)) * 0.3;
            (x, y)
        };
        let (xtr, ytr) = make(300);
        let (xte, yte) = make(600);
        assert_eq!(knn_accuracy(&xtr, &ytr, &xte, &yte, 3, 20, 0.1), 1.0);
        assert_eq!(knn_accuracy(&xtr, &ytr, &xte, &yte, 3, 10_000, 0.1), 1.0);
    }
}
