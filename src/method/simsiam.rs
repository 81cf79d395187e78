//! SimSiam (Chen & He 2021, arXiv:2011.10566): two views, a predictor on one side and
//! stop-gradient on the other; no negatives, no momentum encoder.

use super::{Method, StepOutput};
use crate::backbone::ResNet;
use crate::config::TrainConfig;
use crate::head::{Block, Mlp};
use crate::loss::negative_cosine;
use tch::nn::{self, ModuleT};
use tch::Tensor;

pub struct SimSiam {
    pub backbone: ResNet,
    /// SimSiam's 3-layer projector (BN on every layer, the last without ReLU); 2 layers on
    /// CIFAR as in the paper's §B: `Linear → BN → ReLU → Linear → BN`.
    pub projection: Mlp,
    /// The bottleneck predictor h: `Linear(out, out/4) → BN → ReLU → Linear(out/4, out)`.
    pub predictor: Mlp,
}

impl SimSiam {
    pub fn new(vs: &nn::VarStore, cfg: &TrainConfig) -> anyhow::Result<Self> {
        let p = vs.root();
        let e = anyhow::Error::msg;
        let backbone = ResNet::new(&(&p / "backbone"), &cfg.model.resnet()).map_err(e)?;
        let d = backbone.out_dim();
        let hidden = cfg.model.projection_hidden.unwrap_or(4 * d);
        let out = cfg.model.projection_dim;
        let projection = Mlp::new(
            &(&p / "projection"),
            &[
                Block::new(d, hidden, true, true),
                Block::new(hidden, out, true, false),
            ],
        )
        .map_err(e)?;
        let bottleneck = (out / 4).max(1);
        let predictor = Mlp::new(
            &(&p / "predictor"),
            &[
                Block::new(out, bottleneck, true, true),
                Block::new(bottleneck, out, false, false),
            ],
        )
        .map_err(e)?;
        Ok(SimSiam {
            backbone,
            projection,
            predictor,
        })
    }
}

impl Method for SimSiam {
    /// `z = g(f(x))`, `p = h(z)`, `L = ½ D(p_a, stopgrad(z_b)) + ½ D(p_b, stopgrad(z_a))` (eq. 2).
    fn step(&self, views: &[Tensor], _labels: Option<&Tensor>) -> anyhow::Result<StepOutput> {
        anyhow::ensure!(
            views.len() == 2,
            "SimSiam takes 2 views per image, got {}",
            views.len()
        );
        let k = views[0].size()[0];
        let x = Tensor::cat(views, 0); // [2K, 3, H, W]
        let z = self
            .projection
            .forward_t(&self.backbone.forward_t(&x, true), true); // [2K, D]
        let p = self.predictor.forward_t(&z, true); // [2K, D]
        let (z_a, z_b) = (z.narrow(0, 0, k), z.narrow(0, k, k));
        let (p_a, p_b) = (p.narrow(0, 0, k), p.narrow(0, k, k));
        let loss = negative_cosine(&p_a, &z_b.detach())? * 0.5
            + negative_cosine(&p_b, &z_a.detach())? * 0.5;
        Ok(StepOutput {
            loss,
            embeddings: z_a.detach(),
            embeddings_b: z_b.detach(),
        })
    }

    fn encoder(&self) -> &ResNet {
        &self.backbone
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::method::testing::{tiny_config, tiny_views, train_a_few_steps};

    #[test]
    fn the_gradient_reaches_the_encoder_only_through_the_predictor_side() {
        let cfg = tiny_config("simsiam");
        let vs = nn::VarStore::new(tch::Device::Cpu);
        let m = SimSiam::new(&vs, &cfg).unwrap();
        let out = m.step(&tiny_views(8, 2), None).unwrap();
        let l = out.loss.double_value(&[]);
        assert!((-1.0..=1.0).contains(&l), "a negative cosine: {l}");
        out.loss.backward();
        for n in [
            "predictor.layers.0.linear.weight",
            "projection.layers.0.linear.weight",
            "backbone.conv1.weight",
        ] {
            assert!(vs.variables()[n].grad().defined(), "{n}");
        }
        train_a_few_steps(&vs, &m, &cfg);
    }
}
