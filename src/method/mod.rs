//! Methods: compositions of backbone + heads + loss, with the view recipe they train on.
//! A registry maps the CLI name to the method.

pub mod byol;
pub mod deepcluster;
pub mod dino;
pub mod ema;
pub mod kmeans;
pub mod moco;
pub mod queue;
pub mod simclr;
pub mod simsiam;
pub mod sinkhorn;
pub mod supcon;
pub mod swav;

pub use byol::Byol;
pub use deepcluster::DeepCluster;
pub use dino::Dino;
pub use ema::Ema;
pub use moco::MoCo;
pub use queue::Queue;
pub use simclr::SimClr;
pub use simsiam::SimSiam;
pub use supcon::SupCon;
pub use swav::SwAV;

use crate::backbone::ResNet;
use crate::config::TrainConfig;
use crate::data::ImageStore;
use std::collections::HashMap;
use tch::{nn, Tensor};

/// What one training step returns.
pub struct StepOutput {
    /// The scalar loss to minimise.
    pub loss: Tensor,
    /// Embeddings of the first view [K, D'], for collapse diagnostics (detached).
    pub embeddings: Tensor,
    /// Embeddings of the second view [K, D'] (detached), for alignment.
    pub embeddings_b: Tensor,
}

/// The per-image targets a method's `step` is given with each batch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Targets {
    /// None: the views are all it needs.
    Nothing,
    /// The images' classes (SupCon).
    ClassLabels,
    /// The images' indices in the training split (DeepCluster's pseudo-labels are per image).
    ImageIndices,
}

/// A self-supervised method: its loss on a batch of views, and the encoder it trains.
pub trait Method {
    /// Views: `views[v]` is [K, 3, H_v, W_v], view v of the same K images (views 0 and 1 the
    /// large ones; multi-crop methods take smaller ones after them). `targets` [K] (i64) are
    /// what [`targets`](Method::targets) asks for: the images' classes or their indices.
    fn step(&self, views: &[Tensor], targets: Option<&Tensor>) -> anyhow::Result<StepOutput>;
    /// What the loader gives `step` as `targets`.
    fn targets(&self) -> Targets {
        Targets::Nothing
    }
    /// Refuses a training split of `images` images the method cannot train on (checked
    /// before the run folder is written).
    fn check_data(&self, _images: usize) -> anyhow::Result<()> {
        Ok(())
    }
    /// Called once before a session's first step (`first_step`: 0, or where a resumed run
    /// goes on) with the training images: DeepCluster embeds and clusters them here.
    fn prepare(
        &self,
        _images: &ImageStore,
        _first_step: u64,
        _steps_per_epoch: u64,
    ) -> anyhow::Result<()> {
        Ok(())
    }
    /// State outside the variable store that a checkpoint keeps for an exact resume
    /// (DeepCluster's memory bank and clustering), by name; saved as float32.
    fn buffers(&self) -> Vec<(String, Tensor)> {
        Vec::new()
    }
    /// Restores what [`buffers`](Method::buffers) gave, from a checkpoint; called before
    /// [`prepare`](Method::prepare) on resume.
    fn restore_buffers(&self, _saved: &HashMap<String, Tensor>) -> anyhow::Result<()> {
        Ok(())
    }
    /// Called after every optimiser step (`step` = the step just taken, 0-based): momentum
    /// updates of target networks, queue updates.
    fn after_step(&self, _step: u64, _total_steps: u64) {}
    /// The encoder f whose features are evaluated and exported.
    fn encoder(&self) -> &ResNet;
    /// Name-space of the encoder's variables in the store (stripped on export).
    fn encoder_prefix(&self) -> &'static str {
        "backbone."
    }
}

/// The names `method.name` accepts:
/// - `simclr`: NT-Xent (or `method.loss`) on a 2-layer projection;
/// - `moco`: MoCo v2, momentum key encoder + queue of `method.queue_size` negatives;
/// - `byol`: predictor + EMA target, negative cosine;
/// - `simsiam`: predictor + stop-gradient, negative cosine;
/// - `barlow_twins`, `vicreg`: their losses on a 3-layer projector of width
///   `model.projection_hidden` (default 4 × the encoder's features);
/// - `swav`: prototypes + Sinkhorn codes, swapped prediction, multi-crop;
/// - `dino`: EMA teacher, centring and sharpening, multi-crop;
/// - `deepcluster`: k-means pseudo-labels of a memory bank, re-clustered every epoch;
/// - `supcon`: supervised contrastive, on the class labels of the training images.
pub const METHODS: &[&str] = &[
    "simclr",
    "moco",
    "byol",
    "simsiam",
    "barlow_twins",
    "vicreg",
    "swav",
    "dino",
    "deepcluster",
    "supcon",
];

/// Builds the method named in `cfg.method.name`, creating its variables in `vs`.
pub fn build(vs: &nn::VarStore, cfg: &TrainConfig) -> anyhow::Result<Box<dyn Method>> {
    match cfg.method.name.as_str() {
        "simclr" | "barlow_twins" | "vicreg" => Ok(Box::new(SimClr::new(&vs.root(), cfg)?)),
        "moco" => Ok(Box::new(MoCo::new(vs, cfg)?)),
        "byol" => Ok(Box::new(Byol::new(vs, cfg)?)),
        "simsiam" => Ok(Box::new(SimSiam::new(vs, cfg)?)),
        "swav" => Ok(Box::new(SwAV::new(&vs.root(), cfg)?)),
        "dino" => Ok(Box::new(Dino::new(vs, cfg)?)),
        "deepcluster" => Ok(Box::new(DeepCluster::new(&vs.root(), cfg)?)),
        "supcon" => Ok(Box::new(SupCon::new(&vs.root(), cfg)?)),
        other => anyhow::bail!(
            "unknown method {other:?}: choose one of {}",
            METHODS.join(", ")
        ),
    }
}

#[cfg(test)]
pub(crate) mod testing {
    //! Tiny settings and views for the methods' tests.
    use super::Method;
    use crate::config::TrainConfig;
    use crate::optim::Sgd;
    use tch::{nn, Device, Kind, Tensor};

    /// ResNet-18 at width 1/8 with a 16-d projection, for method `name`.
    pub fn tiny_config(name: &str) -> TrainConfig {
        let mut cfg = TrainConfig::default();
        cfg.method.name = name.into();
        cfg.model.width = 0.125;
        cfg.model.projection_dim = 16;
        cfg.model.projection_hidden = Some(32);
        tch::manual_seed(0);
        cfg
    }

    /// Two views [k, 3, 16, 16] of k random images (the second slightly perturbed).
    pub fn tiny_views(k: i64, seed: i64) -> Vec<Tensor> {
        tch::manual_seed(seed);
        let a = Tensor::randn([k, 3, 16, 16], (Kind::Float, Device::Cpu));
        let b = &a + Tensor::randn([k, 3, 16, 16], (Kind::Float, Device::Cpu)) * 0.1;
        vec![a, b]
    }

    /// Eight SGD steps on fixed views with `after_step`: every loss finite, the encoder's
    /// weights move and its embeddings do not collapse.
    pub fn train_a_few_steps(vs: &nn::VarStore, m: &dyn Method, _cfg: &TrainConfig) {
        let views = tiny_views(16, 7);
        let mut opt = Sgd::new(vs, 0.9, 0.0);
        let w = vs.variables()["backbone.conv1.weight"].copy();
        for s in 0..8 {
            let out = m.step(&views, None).unwrap();
            let l = out.loss.double_value(&[]);
            assert!(l.is_finite(), "step {s}: loss {l}");
            opt.zero_grad();
            out.loss.backward();
            opt.step(0.05);
            m.after_step(s, 8);
            assert!(
                crate::eval::embedding_std(&out.embeddings) > 1e-3,
                "step {s}: collapsed"
            );
        }
        assert!(
            !vs.variables()["backbone.conv1.weight"].equal(&w),
            "the encoder did not move"
        );
    }
}
