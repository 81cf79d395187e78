//! Supervised contrastive learning (Khosla et al. 2020, arXiv:2004.11362) when labels are
//! given: SimCLR's network, but every view of the same class is a positive.

use super::{
    positive, BuildContext, Method, MethodSection, MethodSpec, StepContext, StepOutput, Targets,
};
use super::{MethodPlan, MicroBatch};
use crate::backbone::Backbone;
use crate::error::SettingError;
use crate::head::Mlp;
use crate::loss::supcon;
use serde::{Deserialize, Serialize};
use tch::nn::{self, ModuleT};
use tch::Tensor;

/// `[method.supcon]`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SupConConfig {
    /// Temperature τ. Default 0.2.
    pub temperature: f64,
}

impl Default for SupConConfig {
    fn default() -> Self {
        SupConConfig { temperature: 0.2 }
    }
}

impl MethodSection for SupConConfig {
    const NAME: &'static str = "supcon";
    const SUMMARY: &'static str =
        "supervised contrastive on the class labels (every same-class view is a positive)";
}

impl MethodSpec for SupConConfig {
    fn plan(&self) -> MethodPlan {
        MethodPlan {
            // Data-parallel: the supervised contrastive loss of the gathered global batch and its labels.
            data_parallel: true,
            targets: Targets::ClassLabels,
            micro_batch: MicroBatch::Split,
            ..MethodPlan::default()
        }
    }

    fn check(&self) -> Result<(), SettingError> {
        positive("method.supcon.temperature", self.temperature)
    }

    /// SimCLR's network: projection hidden width `model.projection_hidden`, default the
    /// encoder's features.
    fn build(&self, vs: &nn::VarStore, ctx: &BuildContext) -> anyhow::Result<Box<dyn Method>> {
        let (backbone, projection) = ctx.encoder_and_projection(&vs.root())?;
        Ok(Box::new(SupCon {
            backbone,
            projection,
            temperature: self.temperature,
        }))
    }
}

pub struct SupCon {
    pub backbone: Backbone,
    /// g: `Linear(d, hidden) → BN → ReLU → Linear(hidden, projection_dim)`.
    pub projection: Mlp,
    temperature: f64,
}

impl Method for SupCon {
    /// `[z_a; z_b] = g(f([x_a; x_b]))`, each [K, D].
    fn embed_views(
        &mut self,
        views: &[Tensor],
        _labels: Option<&Tensor>,
        _ctx: &StepContext,
    ) -> anyhow::Result<Vec<Tensor>> {
        let (k, x) = super::two_views(views, "SupCon")?; // x: [2K, 3, H, W]
        let z = self
            .projection
            .forward_t(&self.backbone.forward_t(&x, true), true); // [2K, D]
        Ok(vec![z.narrow(0, 0, k), z.narrow(0, k, k)])
    }

    /// `z = [z_a; z_b]` [2K, D], labels `[y; y]` \[2K\]: `L = SupCon(z, [y; y], τ)`.
    fn embedding_loss(
        &mut self,
        e: &[Tensor],
        labels: Option<&Tensor>,
        _ctx: &StepContext,
    ) -> anyhow::Result<StepOutput> {
        let k = e[0].size()[0];
        let Some(y) = labels else {
            anyhow::bail!("SupCon needs the class labels of the batch's images");
        };
        anyhow::ensure!(
            y.size() == [k],
            "SupCon: {} labels for {k} images",
            y.size().first().copied().unwrap_or(0)
        );
        let z = Tensor::cat(&e[..2], 0); // [2K, D]
                                         // data-parallel: the global batch and its labels (identity in one process)
        let (z_all, y_all) = (
            crate::dist::gather_rows(&z),
            crate::dist::gather_rows(&Tensor::cat(&[y, y], 0)),
        );
        let loss = supcon(&z_all, &y_all, self.temperature)?;
        Ok(StepOutput {
            loss,
            embeddings: e[0].detach(),
            embeddings_b: e[1].detach(),
            metrics: Vec::new(),
        })
    }

    fn encoder(&self) -> &Backbone {
        &self.backbone
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::loss::l2_normalize;
    use crate::method::testing::{at, tiny_context, tiny_views};
    use crate::optim::Sgd;
    use tch::{Device, Kind};

    #[test]
    fn same_class_images_are_pulled_together_and_labels_are_required() {
        let vs = nn::VarStore::new(Device::Cpu);
        let mut ctx = tiny_context();
        ctx.projection_hidden = None;
        let backbone = ctx.backbone(&vs.root()).unwrap();
        let d = backbone.out_dim();
        let mut m = SupCon {
            backbone,
            projection: Mlp::simclr_projection(&(vs.root() / "projection"), d, d, 16).unwrap(),
            temperature: 0.2,
        };
        let views = tiny_views(8, 6);
        assert!(m.step(&views, None, &at(0, 1)).is_err());
        assert!(m
            .step(&views, Some(&Tensor::from_slice(&[0i64; 3])), &at(0, 1))
            .is_err());
        let y = Tensor::from_slice(&[0i64, 0, 0, 0, 1, 1, 1, 1]);
        // mean cosine between different images of class 0, before and after training
        let same_class_cos = |m: &SupCon| {
            let z = tch::no_grad(|| {
                l2_normalize(
                    &m.projection
                        .forward_t(&m.backbone.forward_t(&views[0], true), true),
                )
            });
            let a = z.narrow(0, 0, 4);
            (a.matmul(&a.tr()).sum(Kind::Float).double_value(&[]) - 4.0) / 12.0
        };
        let before = same_class_cos(&m);
        let mut opt = Sgd::new(&vs, 0.9, 0.0);
        for _ in 0..15 {
            let out = m.step(&views, Some(&y), &at(0, 1)).unwrap();
            opt.zero_grad();
            out.loss.backward();
            opt.step(0.05);
        }
        let after = same_class_cos(&m);
        assert!(
            after > before + 0.05,
            "class-0 cosine {before:.3} → {after:.3}"
        );
    }
}
