//! Methods: compositions of backbone + heads + loss, with the view recipe they train on.
//! A registry maps the CLI name to the method.

pub mod simclr;

pub use simclr::SimClr;

use crate::backbone::ResNet;
use crate::config::TrainConfig;
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

/// A self-supervised method: its loss on a batch of views, and the encoder it trains.
pub trait Method {
    /// Views: `views[v]` is [K, 3, H, W], view v of the same K images.
    fn step(&self, views: &[Tensor]) -> anyhow::Result<StepOutput>;
    /// The encoder f whose features are evaluated and exported.
    fn encoder(&self) -> &ResNet;
    /// Name-space of the encoder's variables in the store (stripped on export).
    fn encoder_prefix(&self) -> &'static str {
        "backbone."
    }
}

/// The names `method.name` accepts.
pub const METHODS: &[&str] = &["simclr"];

/// Builds the method named in `cfg.method.name`, creating its variables in `vs`.
pub fn build(vs: &nn::VarStore, cfg: &TrainConfig) -> anyhow::Result<Box<dyn Method>> {
    match cfg.method.name.as_str() {
        "simclr" => Ok(Box::new(SimClr::new(&vs.root(), cfg)?)),
        other => anyhow::bail!(
            "unknown method {other:?}: choose one of {}",
            METHODS.join(", ")
        ),
    }
}
