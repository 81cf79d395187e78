//! Supervised contrastive learning (Khosla et al. 2020, arXiv:2004.11362) when labels are
//! given: SimCLR's network, but every view of the same class is a positive.

use super::{Method, StepOutput};
use crate::backbone::ResNet;
use crate::config::TrainConfig;
use crate::head::Mlp;
use crate::loss::supcon;
use tch::nn::{self, ModuleT};
use tch::Tensor;

pub struct SupCon {
    pub backbone: ResNet,
    /// g: `Linear(d, hidden) → BN → ReLU → Linear(hidden, projection_dim)`.
    pub projection: Mlp,
    temperature: f64,
}

impl SupCon {
    /// Variables `backbone.*` and `projection.*`, as SimCLR's.
    pub fn new(p: &nn::Path, cfg: &TrainConfig) -> anyhow::Result<Self> {
        let e = anyhow::Error::msg;
        let backbone = ResNet::new(&(p / "backbone"), &cfg.model.resnet()).map_err(e)?;
        let d = backbone.out_dim();
        let hidden = cfg.model.projection_hidden.unwrap_or(d);
        let projection =
            Mlp::simclr_projection(&(p / "projection"), d, hidden, cfg.model.projection_dim)
                .map_err(e)?;
        Ok(SupCon {
            backbone,
            projection,
            temperature: cfg.method.temperature,
        })
    }
}

impl Method for SupCon {
    /// `z = g(f([x_a; x_b]))` [2K, D], labels `[y; y]` [2K]: `L = SupCon(z, [y; y], τ)`.
    fn step(&self, views: &[Tensor], labels: Option<&Tensor>) -> anyhow::Result<StepOutput> {
        anyhow::ensure!(
            views.len() == 2,
            "SupCon takes 2 views per image, got {}",
            views.len()
        );
        let Some(y) = labels else {
            anyhow::bail!("SupCon needs the class labels of the batch's images");
        };
        let k = views[0].size()[0];
        anyhow::ensure!(
            y.size() == [k],
            "SupCon: {} labels for {k} images",
            y.size().first().copied().unwrap_or(0)
        );
        let z = self
            .projection
            .forward_t(&self.backbone.forward_t(&Tensor::cat(views, 0), true), true);
        let loss = supcon(&z, &Tensor::cat(&[y, y], 0), self.temperature)?;
        Ok(StepOutput {
            loss,
            embeddings: z.narrow(0, 0, k).detach(),
            embeddings_b: z.narrow(0, k, k).detach(),
        })
    }

    fn targets(&self) -> super::Targets {
        super::Targets::ClassLabels
    }

    fn encoder(&self) -> &ResNet {
        &self.backbone
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::loss::l2_normalize;
    use crate::method::testing::{tiny_config, tiny_views};
    use crate::optim::Sgd;
    use tch::{Device, Kind};

    #[test]
    fn same_class_images_are_pulled_together_and_labels_are_required() {
        let cfg = tiny_config("supcon");
        let vs = nn::VarStore::new(Device::Cpu);
        let m = SupCon::new(&vs.root(), &cfg).unwrap();
        let views = tiny_views(8, 6);
        assert!(m.step(&views, None).is_err());
        assert!(m
            .step(&views, Some(&Tensor::from_slice(&[0i64; 3])))
            .is_err());
        let y = Tensor::from_slice(&[0i64, 0, 0, 0, 1, 1, 1, 1]);
        // mean cosine between different images of class 0, before and after training
        let same_class_cos = || {
            let z = tch::no_grad(|| {
                l2_normalize(
                    &m.projection
                        .forward_t(&m.backbone.forward_t(&views[0], true), true),
                )
            });
            let a = z.narrow(0, 0, 4);
            (a.matmul(&a.tr()).sum(Kind::Float).double_value(&[]) - 4.0) / 12.0
        };
        let before = same_class_cos();
        let mut opt = Sgd::new(&vs, 0.9, 0.0);
        for _ in 0..15 {
            let out = m.step(&views, Some(&y)).unwrap();
            opt.zero_grad();
            out.loss.backward();
            opt.step(0.05);
        }
        let after = same_class_cos();
        assert!(
            after > before + 0.05,
            "class-0 cosine {before:.3} → {after:.3}"
        );
    }
}
