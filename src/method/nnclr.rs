//! NNCLR (Dwibedi et al. 2021, arXiv:2104.14548): SimCLR whose positive is not the other view
//! itself but its nearest neighbour in a support set of past embeddings, so that positives
//! come from other images of the same kind ("beyond a single instance").
//!
//! ```text
//! z = normalise(g(f([x_a; x_b])))    p = normalise(h(g(f(·))))             [2K, D]
//! NN(z) = argmax_{q ∈ Q} z·q          Q: the support queue [S, D], no gradient
//! L = ½ [InfoNCE(NN(z_a), p_b, τ) + InfoNCE(NN(z_b), p_a, τ)]             in-batch negatives
//! Q ← enqueue(z_a) after the update
//! ```

use super::moco::check_queue_size;
use super::queue::Queue;
use super::{positive, BuildContext, Method, MethodSection, MethodSpec, StepContext, StepOutput};
use super::{LargeState, MethodPlan};
use crate::backbone::Backbone;
use crate::error::SettingError;
use crate::head::Mlp;
use crate::loss::{info_nce_in_batch, l2_normalize};
use serde::{Deserialize, Serialize};
use tch::nn::{self, ModuleT};
use tch::Tensor;

/// `[method.nnclr]`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NnclrConfig {
    /// Temperature τ of InfoNCE. Default 0.1 (the paper).
    pub temperature: f64,
    /// Embeddings in the support queue. Default 8192: solo-learn's CIFAR recipe keeps 65536
    /// over 1000 epochs; a queue refreshed every 32 steps (at batch 256) holds recent
    /// embeddings on short runs.
    pub queue_size: usize,
    /// Hidden width of the predictor; 0: 4 × `model.projection_dim` (the paper uses 16 ×:
    /// 4096 for 256). Default 0.
    pub predictor_hidden: usize,
}

impl Default for NnclrConfig {
    fn default() -> Self {
        NnclrConfig {
            temperature: 0.1,
            queue_size: 8192,
            predictor_hidden: 0,
        }
    }
}

impl MethodSection for NnclrConfig {
    const NAME: &'static str = "nnclr";
    const SUMMARY: &'static str =
        "nearest neighbour from a support queue as the positive, predictor, InfoNCE";
}

impl MethodSpec for NnclrConfig {
    fn plan(&self) -> MethodPlan {
        MethodPlan {
            // Data-parallel: in-batch InfoNCE over the gathered global batch; every rank enqueues the same global embeddings.
            data_parallel: true,
            state: Some(LargeState::Queue {
                keys: self.queue_size,
                setting: "method.nnclr.queue_size",
            }),
            ..MethodPlan::default()
        }
    }

    fn check(&self) -> Result<(), SettingError> {
        positive("method.nnclr.temperature", self.temperature)?;
        check_queue_size("nnclr", self.queue_size)
    }

    /// Projection hidden width `model.projection_hidden`, default the encoder's features.
    fn build(&self, vs: &nn::VarStore, ctx: &BuildContext) -> anyhow::Result<Box<dyn Method>> {
        let p = vs.root();
        let e = anyhow::Error::msg;
        let (backbone, projection) = ctx.encoder_and_projection(&p)?;
        let out = ctx.projection_dim;
        let hidden = match self.predictor_hidden {
            0 => 4 * out,
            h => h as i64,
        };
        let predictor = Mlp::simclr_projection(&(&p / "predictor"), out, hidden, out).map_err(e)?;
        Ok(Box::new(Nnclr {
            backbone,
            projection,
            predictor,
            support: Queue::new(&(&p / "support"), self.queue_size as i64, out),
            temperature: self.temperature,
            pending: None,
        }))
    }
}

pub struct Nnclr {
    pub backbone: Backbone,
    /// g: `Linear(d, hidden) → BN → ReLU → Linear(hidden, out)`.
    pub projection: Mlp,
    /// h: `Linear(out, hidden) → BN → ReLU → Linear(hidden, out)`.
    pub predictor: Mlp,
    /// Q, in the variable store (`support.*`): checkpoints keep it.
    pub support: Queue,
    temperature: f64,
    /// This step's first-view embeddings, enqueued after the update.
    pending: Option<Tensor>,
}

/// The row of `support` [S, D] nearest to each row of `z` [K, D] by dot product (cosine for
/// unit rows): [K, D].
pub fn nearest_neighbours(z: &Tensor, support: &Tensor) -> Tensor {
    let idx = z.matmul(&support.tr()).argmax(1, false); // [K]
    support.index_select(0, &idx)
}

impl Method for Nnclr {
    fn step(
        &mut self,
        views: &[Tensor],
        _targets: Option<&Tensor>,
        _ctx: &StepContext,
    ) -> anyhow::Result<StepOutput> {
        let (k, x) = super::two_views(views, "NNCLR")?; // x: [2K, 3, H, W]
        let g = self
            .projection
            .forward_t(&self.backbone.forward_t(&x, true), true); // [2K, D]
        let p = l2_normalize(&self.predictor.forward_t(&g, true)); // [2K, D]
        let z = l2_normalize(&g.detach()); // [2K, D]
        let support = self.support.negatives(); // [S, D]
        let nn_z = nearest_neighbours(&z, &support); // [2K, D], no gradient
                                                     // data-parallel: the global batch [W·K, D] (identity in one process)
        let all = |t: Tensor| crate::dist::gather_rows(&t);
        let (nn_a, nn_b) = (all(nn_z.narrow(0, 0, k)), all(nn_z.narrow(0, k, k)));
        let (p_a, p_b) = (all(p.narrow(0, 0, k)), all(p.narrow(0, k, k)));
        let t = self.temperature;
        let loss = (info_nce_in_batch(&nn_a, &p_b, t)? + info_nce_in_batch(&nn_b, &p_a, t)?) * 0.5;
        self.pending = Some(all(z.narrow(0, 0, k)));
        Ok(StepOutput {
            loss,
            embeddings: g.narrow(0, 0, k).detach(),
            embeddings_b: g.narrow(0, k, k).detach(),
            metrics: Vec::new(),
        })
    }

    fn after_step(&mut self, _ctx: &StepContext) {
        if let Some(z) = self.pending.take() {
            self.support.push(&z);
        }
    }

    fn encoder(&self) -> &Backbone {
        &self.backbone
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::method::testing::{at, tiny_context, tiny_views, train_a_few_steps};
    use tch::Device;

    #[test]
    fn the_nearest_neighbour_is_the_most_similar_support_row() {
        let support = Tensor::from_slice(&[1.0f32, 0.0, 0.0, 1.0, -1.0, 0.0]).view([3, 2]);
        let z = Tensor::from_slice(&[0.1f32, 0.9, -0.8, 0.2]).view([2, 2]);
        let nn = nearest_neighbours(&z, &support);
        assert_eq!(
            Vec::<f32>::try_from(nn.view(-1)).unwrap(),
            [0.0, 1.0, -1.0, 0.0]
        );
    }

    #[test]
    fn positives_come_from_the_queue_which_takes_this_steps_embeddings_after_it() {
        let vs = nn::VarStore::new(Device::Cpu);
        let cfg = NnclrConfig {
            queue_size: 32,
            ..Default::default()
        };
        let mut m = cfg.build(&vs, &tiny_context()).unwrap();
        let queue = vs.variables()["support.keys"].shallow_clone();
        let before = queue.copy();
        let out = m.step(&tiny_views(8, 0), None, &at(0, 10)).unwrap();
        assert!(queue.equal(&before), "the step itself leaves the queue");
        out.loss.backward();
        assert!(vs.variables()["predictor.layers.0.linear.weight"]
            .grad()
            .defined());
        assert!(vs.variables()["backbone.conv1.weight"].grad().defined());
        m.after_step(&at(0, 10));
        let written = queue.narrow(0, 0, 8);
        let norms = written.norm_scalaropt_dim(2, [1], false);
        assert!((norms - 1.0).abs().max().double_value(&[]) < 1e-5);
        assert!(!written.equal(&before.narrow(0, 0, 8)));
        assert!(queue.narrow(0, 8, 24).equal(&before.narrow(0, 8, 24)));
        let l = out.loss.double_value(&[]);
        assert!(l.is_finite() && l > 0.0, "{l}");
        train_a_few_steps(&vs, m.as_mut());
        let bad = NnclrConfig {
            queue_size: 0,
            ..Default::default()
        };
        assert_eq!(
            bad.check().unwrap_err().key(),
            Some("method.nnclr.queue_size")
        );
    }
}
