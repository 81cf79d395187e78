//! Linear probe: multinomial logistic regression on frozen, L2-normalised, standardised
//! features, trained with Adam on mini-batches and a cosine learning rate.

use tch::nn::{self, Module};
use tch::{Device, Kind, Tensor};

/// Accuracies of a trained linear probe.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct LinearProbe {
    pub train_accuracy: f64,
    pub test_accuracy: f64,
}

/// Trains `softmax(W x + b)` on `train` and reports top-1 on both splits:
/// ```text
/// x ← (x/‖x‖ − μ_train) / σ_train;   min_W,b  CE(W x + b, y)
/// ```
/// # Shapes
/// `train`: [N, D], `train_labels`: \[N\] int64, `test`: [M, D], `test_labels`: \[M\]
#[allow(clippy::too_many_arguments)]
pub fn linear_probe(
    train: &Tensor,
    train_labels: &Tensor,
    test: &Tensor,
    test_labels: &Tensor,
    num_classes: i64,
    epochs: usize,
    lr: f64,
    seed: u64,
) -> LinearProbe {
    let prep = |x: &Tensor| {
        let x = x.detach().to_kind(Kind::Float);
        &x / x.norm_scalaropt_dim(2, [1], true).clamp_min(1e-12)
    };
    let (xtr, xte) = (prep(train), prep(test));
    let mean = xtr.mean_dim([0i64].as_slice(), true, Kind::Float);
    let std = xtr.std_dim([0i64].as_slice(), false, true).clamp_min(1e-6);
    let xtr = (&xtr - &mean) / &std; // [N, D]
    let xte = (&xte - &mean) / &std; // [M, D]
    let (n, d) = (xtr.size()[0], xtr.size()[1]);

    tch::manual_seed(seed as i64);
    let vs = nn::VarStore::new(Device::Cpu);
    let lin = nn::linear(vs.root(), d, num_classes, Default::default());
    let mut opt = crate::optim::AdamW::new(&vs, (0.9, 0.999), 0.0); // Adam: no decay
    let batch = 256i64;
    let steps_per_epoch = (n + batch - 1) / batch;
    let total = steps_per_epoch as u64 * epochs as u64;
    let mut rng = crate::rng::Rng::new(seed);
    let mut step = 0u64;
    for _ in 0..epochs {
        let perm: Vec<i64> = rng
            .permutation(n as usize)
            .into_iter()
            .map(|i| i as i64)
            .collect();
        let perm = Tensor::from_slice(&perm);
        for b in 0..steps_per_epoch {
            let len = batch.min(n - b * batch);
            let idx = perm.narrow(0, b * batch, len);
            let logits = lin.forward(&xtr.index_select(0, &idx));
            let loss = logits.cross_entropy_for_logits(&train_labels.index_select(0, &idx));
            opt.zero_grad();
            loss.backward();
            opt.step(crate::optim::cosine_schedule(step, total, lr, 0.0));
            step += 1;
        }
    }
    let acc = |x: &Tensor, y: &Tensor| {
        tch::no_grad(|| super::accuracy(&lin.forward(x).argmax(1, false), y))
    };
    LinearProbe {
        train_accuracy: acc(&xtr, train_labels),
        test_accuracy: acc(&xte, test_labels),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn separates_linearly_separable_classes_and_not_random_labels() {
        tch::manual_seed(0);
        let n = 600;
        let y = Tensor::arange(n, (Kind::Int64, Device::Cpu)).remainder(3);
        // Class c lives along axis c (plus noise) in 8 dims: linearly separable after normalising.
        let x = Tensor::randn([n, 8], (Kind::Float, Device::Cpu)) * 0.2
            + y.one_hot(8).to_kind(Kind::Float) * 3.0;
        let p = linear_probe(&x, &y, &x, &y, 3, 60, 5e-2, 0);
        assert!(p.test_accuracy > 0.97, "{p:?}");
        // Labels independent of the features: test accuracy stays near chance (1/3).
        let random = Tensor::randint(3, [n], (Kind::Int64, Device::Cpu));
        let xte = Tensor::randn([n, 8], (Kind::Float, Device::Cpu));
        let yte = Tensor::randint(3, [n], (Kind::Int64, Device::Cpu));
        let p = linear_probe(&xte, &random, &x, &yte, 3, 5, 1e-2, 0);
        assert!(p.test_accuracy < 0.45, "{p:?}");
    }
}
