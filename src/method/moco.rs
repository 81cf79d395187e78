//! MoCo v2 (He et al. 2020, arXiv:1911.05722; Chen et al. 2020, arXiv:2003.04297): a query
//! encoder trained by InfoNCE against a momentum key encoder's keys, with a queue of past keys
//! as negatives — many negatives without a large batch.
//!
//! Not done: shuffle-BN (MoCo §3.3). Keys are computed in one batch on one device, so the
//! current keys share BatchNorm statistics with the queries while the queue's come from older
//! batches; MoCo v2 reports τ = 0.2 (`--temperature 0.2`).

use super::ema::Ema;
use super::queue::Queue;
use super::{Method, StepOutput};
use crate::backbone::ResNet;
use crate::config::TrainConfig;
use crate::head::{Block, Mlp};
use crate::loss::{info_nce, l2_normalize};
use crate::optim::cosine_schedule;
use std::cell::RefCell;
use tch::nn::{self, ModuleT};
use tch::Tensor;

pub struct MoCo {
    pub backbone: ResNet,
    /// MoCo v2's MLP head: `Linear(d, hidden) → ReLU → Linear(hidden, out)`.
    pub projection: Mlp,
    key_backbone: ResNet,
    key_projection: Mlp,
    key_encoder: Ema,
    pub queue: Queue,
    temperature: f64,
    base_momentum: f64,
    /// This step's keys, enqueued after the update (the queue never holds the current keys).
    pending: RefCell<Option<Tensor>>,
}

fn head(p: &nn::Path, d: i64, hidden: i64, out: i64) -> anyhow::Result<Mlp> {
    Mlp::new(
        p,
        &[
            Block::new(d, hidden, false, true),
            Block::new(hidden, out, false, false),
        ],
    )
    .map_err(anyhow::Error::msg)
}

impl MoCo {
    /// Query encoder under `backbone.*`/`projection.*`, key encoder under `target.*`, queue
    /// under `queue.*`.
    pub fn new(vs: &nn::VarStore, cfg: &TrainConfig) -> anyhow::Result<Self> {
        let p = vs.root();
        let r = cfg.model.resnet();
        let backbone = ResNet::new(&(&p / "backbone"), &r).map_err(anyhow::Error::msg)?;
        let d = backbone.out_dim();
        let hidden = cfg.model.projection_hidden.unwrap_or(d);
        let out = cfg.model.projection_dim;
        let projection = head(&(&p / "projection"), d, hidden, out)?;
        let t = &p / "target";
        let key_backbone = ResNet::new(&(&t / "backbone"), &r).map_err(anyhow::Error::msg)?;
        let key_projection = head(&(&t / "projection"), d, hidden, out)?;
        let key_encoder = Ema::new(vs, "target.").map_err(anyhow::Error::msg)?;
        let queue = Queue::new(&(&p / "queue"), cfg.method.queue_size as i64, out);
        Ok(MoCo {
            backbone,
            projection,
            key_backbone,
            key_projection,
            key_encoder,
            queue,
            temperature: cfg.method.temperature,
            base_momentum: cfg.method.ema_momentum,
            pending: RefCell::new(None),
        })
    }
}

impl Method for MoCo {
    /// Symmetrised: `q = normalise(g(f([x_a; x_b])))`, keys `k` from the momentum encoder
    /// (no gradient), `L = ½ [InfoNCE(q_a, k_b, queue) + InfoNCE(q_b, k_a, queue)]`.
    fn step(&self, views: &[Tensor], _labels: Option<&Tensor>) -> anyhow::Result<StepOutput> {
        anyhow::ensure!(
            views.len() == 2,
            "MoCo takes 2 views per image, got {}",
            views.len()
        );
        let k = views[0].size()[0];
        let x = Tensor::cat(views, 0); // [2K, 3, H, W]
        let q = l2_normalize(
            &self
                .projection
                .forward_t(&self.backbone.forward_t(&x, true), true),
        ); // [2K, D]
        let keys = tch::no_grad(|| {
            l2_normalize(
                &self
                    .key_projection
                    .forward_t(&self.key_backbone.forward_t(&x, true), true),
            )
        }); // [2K, D]
        let negatives = self.queue.negatives(); // [S, D]
        let (q_a, q_b) = (q.narrow(0, 0, k), q.narrow(0, k, k));
        let (k_a, k_b) = (keys.narrow(0, 0, k), keys.narrow(0, k, k));
        let loss = (info_nce(&q_a, &k_b, &negatives, self.temperature)?
            + info_nce(&q_b, &k_a, &negatives, self.temperature)?)
            * 0.5;
        *self.pending.borrow_mut() = Some(keys);
        Ok(StepOutput {
            loss,
            embeddings: q_a.detach(),
            embeddings_b: q_b.detach(),
        })
    }

    /// Momentum update of the key encoder (m from `ema_momentum` to 1, cosine), then enqueue.
    fn after_step(&self, step: u64, total_steps: u64) {
        self.key_encoder
            .update(cosine_schedule(step, total_steps, self.base_momentum, 1.0));
        if let Some(keys) = self.pending.borrow_mut().take() {
            self.queue.push(&keys);
        }
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
    fn trains_enqueues_this_steps_keys_after_the_step_and_moves_the_key_encoder() {
        let mut cfg = tiny_config("moco");
        cfg.method.queue_size = 32;
        let vs = nn::VarStore::new(tch::Device::Cpu);
        let m = MoCo::new(&vs, &cfg).unwrap();
        let views = tiny_views(8, 0);
        let before = m.queue.negatives();
        let out = m.step(&views, None).unwrap();
        // During the step the queue still holds only older keys.
        assert_eq!(m.queue.ptr(), 0);
        assert!(out.loss.double_value(&[]).is_finite());
        out.loss.backward();
        let key_var = vs.variables()["target.backbone.conv1.weight"].copy();
        let query_var = vs.variables()["backbone.conv1.weight"].shallow_clone();
        assert!(
            !vs.variables()["target.backbone.conv1.weight"]
                .grad()
                .defined(),
            "no gradient to the keys"
        );
        let _ = tch::no_grad(|| query_var.shallow_clone().g_add_scalar_(0.5));
        m.after_step(0, 10);
        assert_eq!(m.queue.ptr(), 16, "2K = 16 keys enqueued");
        assert!(!m
            .queue
            .negatives()
            .narrow(0, 0, 16)
            .equal(&before.narrow(0, 0, 16)));
        assert!(m
            .queue
            .negatives()
            .narrow(0, 16, 16)
            .equal(&before.narrow(0, 16, 16)));
        // key ← m·key + (1 − m)·query with m = ema_momentum at step 0
        let mom = cfg.method.ema_momentum;
        let want = &key_var * mom + &query_var * (1.0 - mom);
        let got = vs.variables()["target.backbone.conv1.weight"].copy();
        assert!((got - want).abs().max().double_value(&[]) < 1e-6);
        train_a_few_steps(&vs, &m, &cfg);
    }
}
