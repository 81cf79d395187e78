//! CPC on 1-D signals (van den Oord et al. 2018, section 2): a strided convolutional encoder
//! turns a signal into latents z_t, a GRU summarises z_≤t into a context c_t, and for each
//! k = 1..K a linear map W_k predicts z_{t+k} from c_t, scored by InfoNCE against every other
//! latent of the batch ([`crate::loss::cpc`]). The baseline objective, [`Objective::NextValue`],
//! is the plain autoregressive model: the same encoder and GRU, predicting the next window's raw
//! samples from c_t by least squares.
//!
//! ```text
//! x [B, L] ─conv(k8,s4)─relu─conv(k4,s2)─relu→ z [B, T = L/8, D] ─GRU→ c [B, T, H]
//! CPC:        L = 1/K Σ_k InfoNCE(W_k c_{:, <T−k}, z, k)
//! next value: L = ‖V c_{:, <T−1} − x windows 1..T‖²  (mean)
//! representation of a sequence: c at its last step [B, H]
//! ```

use crate::loss::cpc::{k_step_accuracy, k_step_info_nce};
use crate::optim::AdamW;
use crate::rng::Rng;
use crate::sequence::signals::SignalSet;
use tch::nn::{self, Module, RNN};
use tch::{Kind, Tensor};

/// Samples per latent step (the encoder's total stride).
pub const STRIDE: i64 = 8;

/// What the network is trained to predict.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Objective {
    /// InfoNCE on the latents 1..=K steps ahead.
    Cpc { steps_ahead: i64 },
    /// Least squares on the next window's raw samples.
    NextValue,
}

pub struct CpcNet {
    encoder: nn::Sequential,
    gru: nn::GRU,
    /// W_1..W_K (CPC) or V (next value)
    heads: Vec<nn::Linear>,
    pub objective: Objective,
    pub latent_dim: i64,
    pub context_dim: i64,
}

impl CpcNet {
    pub fn new(p: &nn::Path, latent_dim: i64, context_dim: i64, objective: Objective) -> CpcNet {
        let conv = |stride, padding| nn::ConvConfig {
            stride,
            padding,
            ..Default::default()
        };
        let encoder = nn::seq()
            .add(nn::conv1d(p / "enc0", 1, 32, 8, conv(4, 2)))
            .add_fn(|x| x.relu())
            .add(nn::conv1d(p / "enc1", 32, latent_dim, 4, conv(2, 1)))
            .add_fn(|x| x.relu());
        let gru = nn::gru(p / "gru", latent_dim, context_dim, Default::default());
        let no_bias = nn::LinearConfig {
            bias: false,
            ..Default::default()
        };
        let heads = match objective {
            Objective::Cpc { steps_ahead } => (1..=steps_ahead)
                .map(|k| nn::linear(p / format!("w{k}"), context_dim, latent_dim, no_bias))
                .collect(),
            Objective::NextValue => vec![nn::linear(
                p / "next",
                context_dim,
                STRIDE,
                Default::default(),
            )],
        };
        CpcNet {
            encoder,
            gru,
            heads,
            objective,
            latent_dim,
            context_dim,
        }
    }

    /// x [B, L] (L a multiple of 8) → z [B, L/8, D]
    pub fn latents(&self, x: &Tensor) -> Tensor {
        self.encoder.forward(&x.unsqueeze(1)).transpose(1, 2)
    }

    /// z [B, T, D] → c [B, T, H]
    pub fn contexts(&self, z: &Tensor) -> Tensor {
        self.gru.seq(z).0
    }

    /// The representation of each sequence: its last context. x [B, L] → [B, H]
    pub fn features(&self, x: &Tensor) -> Tensor {
        let c = self.contexts(&self.latents(x));
        c.select(1, c.size()[1] - 1)
    }

    /// The objective's loss on a batch, and (CPC) the accuracy of the 1-step prediction.
    /// x [B, L] → (scalar, accuracy or NaN)
    pub fn loss(&self, x: &Tensor) -> (Tensor, f64) {
        let z = self.latents(x); // [B, T, D]
        let c = self.contexts(&z); // [B, T, H]
        let t = z.size()[1];
        match self.objective {
            Objective::Cpc { steps_ahead } => {
                let mut total = Tensor::zeros([], (Kind::Float, x.device()));
                let mut acc = f64::NAN;
                for k in 1..=steps_ahead {
                    let pred = self.heads[(k - 1) as usize].forward(&c.narrow(1, 0, t - k)); // [B, T−k, D]
                    total += k_step_info_nce(&pred, &z, k).expect("shapes made here");
                    if k == 1 {
                        acc = tch::no_grad(|| {
                            k_step_accuracy(&pred, &z, k).expect("shapes made here")
                        });
                    }
                }
                (total / steps_ahead as f64, acc)
            }
            Objective::NextValue => {
                let windows = x.reshape([x.size()[0], t, STRIDE]); // [B, T, 8]
                let pred = self.heads[0].forward(&c.narrow(1, 0, t - 1)); // [B, T−1, 8]
                (
                    pred.mse_loss(&windows.narrow(1, 1, t - 1), tch::Reduction::Mean),
                    f64::NAN,
                )
            }
        }
    }
}

/// How long and how fast [`train`] trains.
#[derive(Clone, Copy, Debug)]
pub struct Steps {
    /// Adam steps.
    pub steps: usize,
    /// Sequences per step, drawn with replacement.
    pub batch: usize,
    /// Constant learning rate.
    pub lr: f64,
    /// Seed of the batches' draw.
    pub seed: u64,
}

/// Trains `net` (its variables in `vs`) with Adam (the project's [`AdamW`] without decay,
/// β = (0.9, 0.999)) on random batches of `set`, telling `log` each tenth of the way
/// `(step, loss, accuracy)`; returns the last loss.
pub fn train(
    vs: &nn::VarStore,
    net: &CpcNet,
    set: &SignalSet,
    Steps {
        steps,
        batch,
        lr,
        seed,
    }: Steps,
    mut log: impl FnMut(usize, f64, f64),
) -> anyhow::Result<f64> {
    let mut opt = AdamW::new(vs, (0.9, 0.999), 0.0);
    let mut rng = Rng::new(seed);
    let n = set.x.size()[0] as usize;
    let mut last = f64::NAN;
    for step in 1..=steps {
        let idx: Vec<i64> = (0..batch).map(|_| rng.below(n) as i64).collect();
        let x = set.x.index_select(0, &Tensor::from_slice(&idx));
        let (loss, acc) = net.loss(&x);
        last = loss.double_value(&[]);
        anyhow::ensure!(
            last.is_finite(),
            "the loss is {last} at step {step}: lower the learning rate"
        );
        opt.zero_grad();
        loss.backward();
        opt.step(lr);
        if step % (steps / 10).max(1) == 0 || step == steps {
            log(step, last, acc);
        }
    }
    Ok(last)
}

/// The representations of every sequence of `set`, in batches, without gradients. → [N, H]
pub fn features(net: &CpcNet, set: &SignalSet) -> Tensor {
    tch::no_grad(|| {
        let parts: Vec<Tensor> = set
            .x
            .split(256, 0)
            .iter()
            .map(|x| net.features(x))
            .collect();
        Tensor::cat(&parts, 0)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sequence::signals::oscillators;

    #[test]
    fn shapes_through_the_network_and_both_objectives_learn() {
        tch::manual_seed(0);
        let set = oscillators(16, 2, 64, 1);
        for objective in [Objective::Cpc { steps_ahead: 2 }, Objective::NextValue] {
            let vs = nn::VarStore::new(tch::Device::Cpu);
            let net = CpcNet::new(&vs.root(), 16, 12, objective);
            let x = set.x.narrow(0, 0, 4);
            assert_eq!(net.latents(&x).size(), vec![4, 8, 16]);
            assert_eq!(net.features(&x).size(), vec![4, 12]);
            let mut losses = Vec::new();
            let how = Steps {
                steps: 60,
                batch: 16,
                lr: 3e-3,
                seed: 0,
            };
            train(&vs, &net, &set, how, |_, l, _| losses.push(l)).unwrap();
            assert!(
                losses.last().unwrap() < &losses[0],
                "{objective:?}: {losses:?}"
            );
            assert_eq!(features(&net, &set).size(), vec![32, 12]);
        }
    }
}
