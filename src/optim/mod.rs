//! Optimisers and schedules, written out so that their state can be checkpointed and
//! restored exactly: SGD with momentum ([`sgd`]), AdamW ([`adamw`]) and LARS ([`lars`]), chosen by
//! `optim.name` (unset: the method's own, [`crate::method::MethodSpec::default_optimizer`]).

pub mod adamw;
pub mod groups;
pub mod lars;
pub mod schedule;
pub mod sgd;

pub use adamw::AdamW;
pub use groups::{Param, ParamPlan};
pub use lars::Lars;
pub use schedule::{cosine_schedule, warmup_cosine};
pub use sgd::Sgd;

use serde::{Deserialize, Serialize};
use tch::Tensor;

/// `optim.name`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum OptimizerName {
    /// SGD with momentum `optim.momentum`, coupled weight decay `optim.weight_decay`.
    #[default]
    Sgd,
    /// AdamW with `optim.betas` and decoupled weight decay `optim.weight_decay`.
    Adamw,
    /// LARS (SimCLR's for large batches): SGD with momentum whose ≥ 2-D parameters' steps are
    /// scaled by the trust ratio `optim.trust_coefficient · ‖p‖ / (‖g‖ + λ‖p‖)`.
    Lars,
}

impl OptimizerName {
    /// The weight decay used when `optim.weight_decay` is unset: SGD 5e-4 (SimCLR's CIFAR
    /// recipe), AdamW 0.05 (MAE's pre-training, Table 8 of He et al. 2021), LARS 1e-6
    /// (SimCLR's, §B.6 of Chen et al. 2020).
    pub fn default_weight_decay(self) -> f64 {
        match self {
            OptimizerName::Sgd => 5e-4,
            OptimizerName::Adamw => 0.05,
            OptimizerName::Lars => 1e-6,
        }
    }
}

/// The trainable variables of `vs` (those that require a gradient; BatchNorm statistics do
/// not), in name order: the order optimisers keep their state in and the ranks of a
/// data-parallel job reduce gradients in (a VarStore's own order is a hash map's).
pub fn trainable_by_name(vs: &tch::nn::VarStore) -> Vec<(String, Tensor)> {
    let mut params: Vec<(String, Tensor)> = vs
        .variables()
        .into_iter()
        .filter(|(_, t)| t.requires_grad())
        .collect();
    params.sort_by(|a, b| a.0.cmp(&b.0));
    params
}

/// AdamW's β when `optim.betas` is unset: MAE's (0.9, 0.95).
pub fn adamw_default_betas() -> (f64, f64) {
    (0.9, 0.95)
}

/// Why an optimiser's saved state cannot be restored.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum StateError {
    /// A buffer of a parameter is not in the state (`"momentum buffer for l.weight"`).
    #[error("the optimiser state has no {what}")]
    Missing { what: String },
    /// A buffer has another shape than its parameter.
    #[error("{what} is {saved:?} in the checkpoint but the model needs {needed:?}")]
    Shape {
        what: String,
        saved: Vec<i64>,
        needed: Vec<i64>,
    },
}

/// The optimisers' hyper-parameters (`optim.*`; each optimiser reads its own).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Settings {
    /// SGD's μ.
    pub momentum: f64,
    /// AdamW's (β1, β2).
    pub betas: (f64, f64),
    /// λ: SGD's and LARS's coupled or AdamW's decoupled weight decay.
    pub weight_decay: f64,
    /// LARS's trust coefficient η.
    pub trust_coefficient: f64,
}

/// The trainer's optimiser.
pub enum Optimizer {
    Sgd(Sgd),
    AdamW(AdamW),
    Lars(Lars),
}

impl Optimizer {
    /// Optimiser `name` over the trainable variables of `vs`, grouped by `plan` (those held
    /// at a constant rate at `peak_lr`).
    pub fn new(
        name: OptimizerName,
        vs: &tch::nn::VarStore,
        plan: &ParamPlan,
        settings: Settings,
        peak_lr: f64,
    ) -> Self {
        let params = plan.params(vs, peak_lr);
        let wd = settings.weight_decay;
        match name {
            OptimizerName::Sgd => Optimizer::Sgd(Sgd::planned(params, settings.momentum, wd)),
            OptimizerName::Adamw => {
                Optimizer::AdamW(AdamW::planned(params, settings.betas, wd, vs.device()))
            }
            OptimizerName::Lars => Optimizer::Lars(Lars::planned(
                params,
                settings.momentum,
                wd,
                settings.trust_coefficient,
            )),
        }
    }

    pub fn zero_grad(&mut self) {
        match self {
            Optimizer::Sgd(o) => o.zero_grad(),
            Optimizer::AdamW(o) => o.zero_grad(),
            Optimizer::Lars(o) => o.zero_grad(),
        }
    }

    /// `sqrt(Σ_p ‖∂L/∂p‖²)` over the optimised parameters (non-finite if any gradient is).
    pub fn grad_norm(&self) -> f64 {
        let params = match self {
            Optimizer::Sgd(o) => o.params(),
            Optimizer::AdamW(o) => o.params(),
            Optimizer::Lars(o) => o.params(),
        };
        sgd::grad_norm(params)
    }

    /// [`Optimizer::grad_norm`] as a scalar tensor on the device (None: no gradient).
    pub fn grad_norm_tensor(&self) -> Option<Tensor> {
        let params = match self {
            Optimizer::Sgd(o) => o.params(),
            Optimizer::AdamW(o) => o.params(),
            Optimizer::Lars(o) => o.params(),
        };
        sgd::grad_norm_tensor(params)
    }

    pub fn step(&mut self, lr: f64) {
        match self {
            Optimizer::Sgd(o) => o.step(lr),
            Optimizer::AdamW(o) => o.step(lr),
            Optimizer::Lars(o) => o.step(lr),
        }
    }

    /// The buffers to checkpoint, by name (`momentum.<param>`; `exp_avg.<param>`,
    /// `exp_avg_sq.<param>`, `step`).
    pub fn state(&self) -> Vec<(String, Tensor)> {
        match self {
            Optimizer::Sgd(o) => o.state(),
            Optimizer::AdamW(o) => o.state(),
            Optimizer::Lars(o) => o.state(),
        }
    }

    pub fn load_state(&mut self, state: &[(String, Tensor)]) -> Result<(), StateError> {
        match self {
            Optimizer::Sgd(o) => o.load_state(state),
            Optimizer::AdamW(o) => o.load_state(state),
            Optimizer::Lars(o) => o.load_state(state),
        }
    }
}
