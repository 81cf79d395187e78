//! VICReg (Bardes et al. 2022, arXiv:2105.04906): invariance, variance and covariance terms
//! between the two views' projections, on a wide 3-layer projector (§4.3).

use super::barlow_twins::wide_projector_net;
use super::{BuildContext, Method, MethodSection, MethodSpec};
use super::{MethodPlan, MicroBatch};
use crate::error::SettingError;
use crate::loss::TwoViewLoss;
use serde::{Deserialize, Serialize};
use tch::nn;

/// `[method.vicreg]`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct VicRegConfig {
    /// Weights (invariance λ, variance μ, covariance ν). Default [25, 25, 1] (the paper).
    pub vicreg_weights: [f64; 3],
}

impl Default for VicRegConfig {
    fn default() -> Self {
        VicRegConfig {
            vicreg_weights: [25.0, 25.0, 1.0],
        }
    }
}

impl MethodSection for VicRegConfig {
    const NAME: &'static str = "vicreg";
    const SUMMARY: &'static str = "invariance + variance + covariance on a wide 3-layer projector";
}

impl MethodSpec for VicRegConfig {
    fn plan(&self) -> MethodPlan {
        MethodPlan {
            // Data-parallel: variance, covariance and invariance of the gathered global batch.
            data_parallel: true,
            micro_batch: MicroBatch::Split,
            ..MethodPlan::default()
        }
    }

    fn check(&self) -> Result<(), SettingError> {
        match self
            .vicreg_weights
            .iter()
            .all(|w| w.is_finite() && *w >= 0.0)
        {
            true => Ok(()),
            false => Err(format!(
                "method.vicreg.vicreg_weights is {:?}: each must be ≥ 0",
                self.vicreg_weights
            )
            .into()),
        }
    }

    /// Projector of width `model.projection_hidden` (default 4 × the encoder's features).
    fn build(&self, vs: &nn::VarStore, ctx: &BuildContext) -> anyhow::Result<Box<dyn Method>> {
        let loss = TwoViewLoss::VicReg {
            weights: self.vicreg_weights,
        };
        wide_projector_net(vs, ctx, loss)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::method::testing::{tiny_context, train_a_few_steps};

    #[test]
    fn trains_and_refuses_negative_weights() {
        let vs = nn::VarStore::new(tch::Device::Cpu);
        let mut m = VicRegConfig::default().build(&vs, &tiny_context()).unwrap();
        train_a_few_steps(&vs, m.as_mut());
        let bad = VicRegConfig {
            vicreg_weights: [1.0, -1.0, 1.0],
        };
        assert!(bad
            .check()
            .unwrap_err()
            .to_string()
            .contains("vicreg_weights"));
    }
}
