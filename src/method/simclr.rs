//! SimCLR (Chen et al. 2020, arXiv:2002.05709): a shared encoder f, a projection MLP g,
//! and NT-Xent between the two augmented views of every image; all other views in the batch
//! are negatives.

use super::{Method, StepOutput};
use crate::backbone::ResNet;
use crate::config::MethodConfig;
use crate::config::TrainConfig;
use crate::head::{Block, Mlp};
use crate::loss::TwoViewLoss;
use tch::nn::{self, ModuleT};
use tch::Tensor;

pub struct SimClr {
    pub backbone: ResNet,
    pub projection: Mlp,
    /// NT-Xent by default; any two-view loss of the catalogue (`method.loss`).
    pub loss: TwoViewLoss,
}

impl SimClr {
    /// Variables under `backbone.*` (torchvision names after the prefix) and `projection.*`.
    pub fn new(p: &nn::Path, cfg: &TrainConfig) -> anyhow::Result<Self> {
        let backbone =
            ResNet::new(&(p / "backbone"), &cfg.model.resnet()).map_err(anyhow::Error::msg)?;
        let d = backbone.out_dim();
        let m = &cfg.method;
        let (projection, loss_name) = match m.name.as_str() {
            // Barlow Twins (§4, Table 14) and VICReg (§4.3) use a wide 3-layer projector.
            "barlow_twins" | "vicreg" => {
                let h = cfg.model.projection_hidden.unwrap_or(4 * d);
                let blocks = [
                    Block::new(d, h, true, true),
                    Block::new(h, h, true, true),
                    Block::new(h, h, false, false),
                ];
                (Mlp::new(&(p / "projection"), &blocks), m.name.clone())
            }
            _ => {
                let hidden = cfg.model.projection_hidden.unwrap_or(d);
                let proj = Mlp::simclr_projection(
                    &(p / "projection"),
                    d,
                    hidden,
                    cfg.model.projection_dim,
                );
                (proj, m.loss.clone())
            }
        };
        let loss = MethodConfig {
            loss: loss_name,
            ..m.clone()
        }
        .two_view_loss()
        .map_err(anyhow::Error::msg)?;
        Ok(SimClr {
            backbone,
            projection: projection.map_err(anyhow::Error::msg)?,
            loss,
        })
    }
}

impl Method for SimClr {
    /// Both views go through f and g as one batch of 2K (BatchNorm sees both, as in SimCLR):
    /// `z = g(f([x_a; x_b]))`, `L = NT-Xent(z[:K], z[K:], τ)` (or the configured loss).
    fn step(&self, views: &[Tensor], _labels: Option<&Tensor>) -> anyhow::Result<StepOutput> {
        anyhow::ensure!(
            views.len() == 2,
            "SimCLR takes 2 views per image, got {}",
            views.len()
        );
        let k = views[0].size()[0];
        let x = Tensor::cat(views, 0); // [2K, 3, H, W]
        let h = self.backbone.forward_t(&x, true); // [2K, D]
        let z = self.projection.forward_t(&h, true); // [2K, 128]
        let (za, zb) = (z.narrow(0, 0, k), z.narrow(0, k, k)); // [K, 128] each
        let loss = self.loss.compute(&za, &zb)?;
        Ok(StepOutput {
            loss,
            embeddings: za.detach(),
            embeddings_b: zb.detach(),
        })
    }

    fn encoder(&self) -> &ResNet {
        &self.backbone
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::{Device, Kind};

    #[test]
    fn a_few_steps_lower_the_loss_on_fixed_views() {
        tch::manual_seed(0);
        let mut cfg = TrainConfig::default();
        cfg.model.width = 0.125;
        cfg.model.projection_dim = 16;
        let vs = nn::VarStore::new(Device::Cpu);
        let m = SimClr::new(&vs.root(), &cfg).unwrap();
        let a = Tensor::randn([8, 3, 16, 16], (Kind::Float, Device::Cpu));
        let b = &a + Tensor::randn([8, 3, 16, 16], (Kind::Float, Device::Cpu)) * 0.1;
        let mut opt = crate::optim::Sgd::new(&vs, 0.9, 0.0);
        let first = m
            .step(&[a.shallow_clone(), b.shallow_clone()], None)
            .unwrap()
            .loss
            .double_value(&[]);
        for _ in 0..15 {
            opt.zero_grad();
            m.step(&[a.shallow_clone(), b.shallow_clone()], None)
                .unwrap()
                .loss
                .backward();
            opt.step(0.05);
        }
        let last = m.step(&[a, b], None).unwrap().loss.double_value(&[]);
        assert!(last < first - 0.1, "loss {first} → {last}");
        assert!(vs
            .variables()
            .contains_key("backbone.layer1.0.conv1.weight"));
    }
}
