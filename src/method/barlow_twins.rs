//! Barlow Twins (Zbontar et al. 2021, arXiv:2103.03230): the cross-correlation of the two
//! views' projections is pulled to the identity, on a wide 3-layer projector (§4, Table 14).

use super::simclr::TwoViewNet;
use super::{BuildContext, Method, MethodSection, MethodSpec};
use super::{MethodPlan, MicroBatch};
use crate::error::SettingError;
use crate::head::Mlp;
use crate::loss::TwoViewLoss;
use serde::{Deserialize, Serialize};
use tch::nn;

/// `[method.barlow_twins]`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BarlowTwinsConfig {
    /// Off-diagonal weight λ. Default 5e-3 (the paper).
    pub barlow_lambda: f64,
}

impl Default for BarlowTwinsConfig {
    fn default() -> Self {
        BarlowTwinsConfig {
            barlow_lambda: 5e-3,
        }
    }
}

impl MethodSection for BarlowTwinsConfig {
    const NAME: &'static str = "barlow_twins";
    const SUMMARY: &'static str = "cross-correlation to the identity on a wide 3-layer projector";
}

impl MethodSpec for BarlowTwinsConfig {
    fn plan(&self) -> MethodPlan {
        MethodPlan {
            // Data-parallel: the cross-correlation of the gathered global batch.
            data_parallel: true,
            micro_batch: MicroBatch::Split,
            ..MethodPlan::default()
        }
    }

    fn check(&self) -> Result<(), SettingError> {
        let v = self.barlow_lambda;
        match v.is_finite() && v >= 0.0 {
            true => Ok(()),
            false => Err(SettingError::out_of_range(
                "method.barlow_twins.barlow_lambda",
                v,
                "it must be ≥ 0",
            )),
        }
    }

    /// Projector of width `model.projection_hidden` (default 4 × the encoder's features).
    fn build(&self, vs: &nn::VarStore, ctx: &BuildContext) -> anyhow::Result<Box<dyn Method>> {
        let loss = TwoViewLoss::BarlowTwins {
            lambda: self.barlow_lambda,
        };
        wide_projector_net(vs, ctx, loss)
    }
}

/// Encoder + `Linear(d, h) → BN → ReLU → Linear(h, h) → BN → ReLU → Linear(h, h)` + `loss`,
/// h = `model.projection_hidden` (default 4d): Barlow Twins' and VICReg's network.
pub fn wide_projector_net(
    vs: &nn::VarStore,
    ctx: &BuildContext,
    loss: TwoViewLoss,
) -> anyhow::Result<Box<dyn Method>> {
    let p = vs.root();
    let backbone = ctx.backbone(&p)?;
    let d = backbone.out_dim();
    let projection = Mlp::wide_projector(&(&p / "projection"), d, ctx.hidden_or(4 * d))
        .map_err(anyhow::Error::msg)?;
    Ok(Box::new(TwoViewNet {
        backbone,
        projection,
        loss,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::method::testing::{tiny_context, train_a_few_steps};

    #[test]
    fn trains_on_a_projector_of_the_hidden_width() {
        let vs = nn::VarStore::new(tch::Device::Cpu);
        let mut m = BarlowTwinsConfig::default()
            .build(&vs, &tiny_context())
            .unwrap();
        assert_eq!(
            vs.variables()["projection.layers.2.linear.weight"].size(),
            [32, 32]
        );
        train_a_few_steps(&vs, m.as_mut());
        let bad = BarlowTwinsConfig {
            barlow_lambda: -1.0,
        };
        let e = bad.check().unwrap_err();
        assert!(
            matches!(&e, SettingError::OutOfRange { key, value, .. }
                if key == "method.barlow_twins.barlow_lambda" && value == "-1"),
            "{e:?}"
        );
    }
}
