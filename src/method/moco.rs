//! MoCo v2 (He et al. 2020, arXiv:1911.05722; Chen et al. 2020, arXiv:2003.04297): a query
//! encoder trained by InfoNCE against a momentum key encoder's keys, with a queue of past keys
//! as negatives — many negatives without a large batch.
//!
//! Not done: shuffle-BN (MoCo §3.3). Keys are computed in one batch on one device, so the
//! current keys share BatchNorm statistics with the queries while the queue's come from older
//! batches; MoCo v2 reports τ = 0.2 (`--temperature 0.2`).

use super::ema::Ema;
use super::queue::Queue;
use super::{
    positive, unit_interval, BuildContext, Method, MethodSection, MethodSpec, StepContext,
    StepOutput,
};
use super::{LargeState, MethodPlan};
use crate::backbone::Backbone;
use crate::dist::gather_rows;
use crate::error::SettingError;
use crate::head::{Block, Mlp};
use crate::loss::{info_nce, l2_normalize};
use crate::optim::cosine_schedule;
use serde::{Deserialize, Serialize};
use tch::nn::{self, ModuleT};
use tch::Tensor;

/// `[method.moco]`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MoCoConfig {
    /// Temperature τ of InfoNCE. Default 0.2 (MoCo v2).
    pub temperature: f64,
    /// Starting momentum of the key encoder; it rises to 1 by a cosine schedule over the run.
    /// Default 0.99.
    pub ema_momentum: f64,
    /// Negative keys in the queue. Default 4096.
    pub queue_size: usize,
}

impl Default for MoCoConfig {
    fn default() -> Self {
        MoCoConfig {
            temperature: 0.2,
            ema_momentum: 0.99,
            queue_size: 4096,
        }
    }
}

impl MethodSection for MoCoConfig {
    const NAME: &'static str = "moco";
    const SUMMARY: &'static str = "MoCo v2: momentum key encoder + queue of negatives, InfoNCE";
}

impl MethodSpec for MoCoConfig {
    fn plan(&self) -> MethodPlan {
        MethodPlan {
            // Data-parallel: queries and keys gathered; every rank enqueues the same global keys.
            data_parallel: true,
            state: Some(LargeState::Queue {
                keys: self.queue_size,
                setting: "method.moco.queue_size",
            }),
            // its negatives are the queue's, not the batch's
            micro_batch: super::MicroBatch::Refused(
                "its negatives come from its queue, not from the batch: a longer \
                 method.moco.queue_size gives more of them in little memory",
            ),
            ..MethodPlan::default()
        }
    }

    fn check(&self) -> Result<(), SettingError> {
        positive("method.moco.temperature", self.temperature)?;
        unit_interval("method.moco.ema_momentum", self.ema_momentum)?;
        check_queue_size("moco", self.queue_size)
    }

    fn build(&self, vs: &nn::VarStore, ctx: &BuildContext) -> anyhow::Result<Box<dyn Method>> {
        Ok(Box::new(MoCo::new(vs, ctx, self)?))
    }
}

/// A queue of 1 to 2²⁰ keys, else the message names `method.<method>.queue_size`.
pub fn check_queue_size(method: &str, size: usize) -> Result<(), SettingError> {
    match (1..=1 << 20).contains(&size) {
        true => Ok(()),
        false => Err(SettingError::out_of_range(
            format!("method.{method}.queue_size"),
            size,
            "it must be between 1 and 1048576 (MoCo uses 4096–65536)",
        )),
    }
}

pub struct MoCo {
    pub backbone: Backbone,
    /// MoCo v2's MLP head: `Linear(d, hidden) → ReLU → Linear(hidden, out)`.
    pub projection: Mlp,
    key_backbone: Backbone,
    key_projection: Mlp,
    key_encoder: Ema,
    pub queue: Queue,
    temperature: f64,
    base_momentum: f64,
    /// This step's keys, enqueued after the update (the queue never holds the current keys).
    pending: Option<Tensor>,
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
    /// under `queue.*`; head hidden width `model.projection_hidden`, default the encoder's
    /// features.
    pub fn new(vs: &nn::VarStore, ctx: &BuildContext, cfg: &MoCoConfig) -> anyhow::Result<Self> {
        let p = vs.root();
        let backbone = ctx.backbone(&p)?;
        let d = backbone.out_dim();
        let hidden = ctx.hidden_or(d);
        let out = ctx.projection_dim;
        let projection = head(&(&p / "projection"), d, hidden, out)?;
        let t = &p / "target";
        let key_backbone = ctx.backbone(&t)?;
        let key_projection = head(&(&t / "projection"), d, hidden, out)?;
        let key_encoder = Ema::new(vs, "target.").map_err(anyhow::Error::msg)?;
        let queue = Queue::new(&(&p / "queue"), cfg.queue_size as i64, out);
        Ok(MoCo {
            backbone,
            projection,
            key_backbone,
            key_projection,
            key_encoder,
            queue,
            temperature: cfg.temperature,
            base_momentum: cfg.ema_momentum,
            pending: None,
        })
    }
}

impl Method for MoCo {
    /// Symmetrised: `q = normalise(g(f([x_a; x_b])))`, keys `k` from the momentum encoder
    /// (no gradient), `L = ½ [InfoNCE(q_a, k_b, queue) + InfoNCE(q_b, k_a, queue)]`.
    fn step(
        &mut self,
        views: &[Tensor],
        _targets: Option<&Tensor>,
        _ctx: &StepContext,
    ) -> anyhow::Result<StepOutput> {
        let (k, x) = super::two_views(views, "MoCo")?; // x: [2K, 3, H, W]
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
        // data-parallel: the global batch's queries and keys [W·K, D] (identity in one process)
        let (gq_a, gq_b) = (gather_rows(&q_a), gather_rows(&q_b));
        let (k_a, k_b) = (
            gather_rows(&keys.narrow(0, 0, k)),
            gather_rows(&keys.narrow(0, k, k)),
        );
        let loss = (info_nce(&gq_a, &k_b, &negatives, self.temperature)?
            + info_nce(&gq_b, &k_a, &negatives, self.temperature)?)
            * 0.5;
        self.pending = Some(Tensor::cat(&[k_a, k_b], 0)); // [2·W·K, D]
        Ok(StepOutput {
            loss,
            embeddings: q_a.detach(),
            embeddings_b: q_b.detach(),
            metrics: Vec::new(),
        })
    }

    /// Momentum update of the key encoder (m from `ema_momentum` to 1, cosine), then enqueue.
    fn after_step(&mut self, ctx: &StepContext) {
        self.key_encoder.update(cosine_schedule(
            ctx.step,
            ctx.total_steps,
            self.base_momentum,
            1.0,
        ));
        if let Some(keys) = self.pending.take() {
            self.queue.push(&keys);
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

    #[test]
    fn trains_enqueues_this_steps_keys_after_the_step_and_moves_the_key_encoder() {
        let cfg = MoCoConfig {
            queue_size: 32,
            ..Default::default()
        };
        let vs = nn::VarStore::new(tch::Device::Cpu);
        let mut m = MoCo::new(&vs, &tiny_context(), &cfg).unwrap();
        let views = tiny_views(8, 0);
        let before = m.queue.negatives();
        let out = m.step(&views, None, &at(0, 10)).unwrap();
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
        m.after_step(&at(0, 10));
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
        let mom = cfg.ema_momentum;
        let want = &key_var * mom + &query_var * (1.0 - mom);
        let got = vs.variables()["target.backbone.conv1.weight"].copy();
        assert!((got - want).abs().max().double_value(&[]) < 1e-6);
        train_a_few_steps(&vs, &mut m);
    }
}
