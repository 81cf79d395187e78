//! `[optim]`: the optimiser, its learning rate and schedule.

use crate::method::MethodSpec;
use crate::optim::OptimizerName;
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OptimConfig {
    /// Peak learning rate of SGD. Unset: the method's recipe's ([`MethodSpec::default_lr`]),
    /// else [`OptimConfig::DEFAULT_LR`]; a loaded config always has it set.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lr: Option<f64>,
    /// Learning rate at the end of the cosine decay. Default 0.
    pub final_lr: f64,
    /// The optimiser: "sgd", "adamw" or "lars". Unset: the method's own
    /// ([`MethodSpec::default_optimizer`]: AdamW for MAE, SGD for the others); a loaded
    /// config always has it set.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<OptimizerName>,
    /// SGD's momentum μ. Default 0.9.
    pub momentum: f64,
    /// AdamW's (β₁, β₂). Unset: MAE's (0.9, 0.95).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub betas: Option<(f64, f64)>,
    /// Weight decay λ (coupled for SGD, decoupled for AdamW, which skips norms, biases and
    /// tokens). Unset: 5e-4 for SGD, 0.05 for AdamW; a loaded config always has it set.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub weight_decay: Option<f64>,
    /// Linear warm-up length in epochs (fractions allowed). Default 0.5.
    pub warmup_epochs: f64,
    /// LARS's trust coefficient η (`optim.name = "lars"`). Default 0.001 (You et al. 2017,
    /// SimCLR).
    pub trust_coefficient: f64,
    /// How the peak learning rate follows the batch size B: "none" (`optim.lr` as given),
    /// "linear" (`optim.lr · B / 256`, SimCLR's rule with LARS: 0.3 · B/256) or "sqrt"
    /// (`optim.lr · √(B / 256)`, SimCLR's for small batches and long runs). `optim.lr` is then
    /// the rate at batch 256. Default "none".
    pub lr_scaling: LrScaling,
}

/// `optim.lr_scaling`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LrScaling {
    #[default]
    None,
    Linear,
    Sqrt,
}

impl LrScaling {
    /// The factor of `optim.lr` at batch size `batch`.
    pub fn factor(self, batch: usize) -> f64 {
        let ratio = batch as f64 / 256.0;
        match self {
            LrScaling::None => 1.0,
            LrScaling::Linear => ratio,
            LrScaling::Sqrt => ratio.sqrt(),
        }
    }
}

impl OptimConfig {
    /// `optim.name`, else `spec`'s, else SGD.
    pub fn optimizer(&self, spec: Option<&dyn MethodSpec>) -> OptimizerName {
        self.name
            .or_else(|| spec.map(|s| s.plan().default_optimizer))
            .unwrap_or_default()
    }

    /// `optim.weight_decay`, else the default of `name`.
    pub fn weight_decay_for(&self, name: OptimizerName) -> f64 {
        self.weight_decay
            .unwrap_or_else(|| name.default_weight_decay())
    }

    /// `optim.betas`, else MAE's.
    pub fn betas(&self) -> (f64, f64) {
        self.betas.unwrap_or(crate::optim::adamw_default_betas())
    }

    /// The peak learning rate of methods without their own: 0.3 (one-epoch CIFAR-10 runs at
    /// τ = 0.2: 0.3 and 0.12 tie; the 8-epoch 30-minute recipe of the guide uses 0.3).
    pub const DEFAULT_LR: f64 = 0.3;
}

impl Default for OptimConfig {
    fn default() -> Self {
        OptimConfig {
            lr: None,
            final_lr: 0.0,
            name: None,
            momentum: 0.9,
            betas: None,
            weight_decay: None,
            warmup_epochs: 0.5,
            trust_coefficient: 0.001,
            lr_scaling: LrScaling::None,
        }
    }
}
