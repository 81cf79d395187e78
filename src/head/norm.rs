//! The normalisation inside the heads' MLPs (`model.head_norm`): BatchNorm as every method's
//! recipe has it, or LayerNorm, which normalises each image alone. Exact micro-batching
//! (train/grad_cache.rs) gives the whole batch's gradients only where no layer couples the
//! images of a micro-batch: with a ViT encoder and LayerNorm heads it does.
//!
//! The choice is scoped to building a method ([`building_with`]) rather than passed to every
//! head's constructor, so that every head honours it and no method names it.

use serde::{Deserialize, Serialize};
use std::cell::Cell;

/// `model.head_norm`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum HeadNorm {
    /// BatchNorm1d: statistics of the batch (per micro-batch with `train.micro_batch`).
    #[default]
    Batch,
    /// LayerNorm over each row's features (with a learned scale and shift).
    Layer,
}

thread_local! {
    static BUILDING: Cell<HeadNorm> = const { Cell::new(HeadNorm::Batch) };
}

/// Runs `f` (a method's build) with its heads normalised by `norm`.
pub fn building_with<T>(norm: HeadNorm, f: impl FnOnce() -> T) -> T {
    let prev = BUILDING.with(|b| b.replace(norm));
    let out = f();
    BUILDING.with(|b| b.set(prev));
    out
}

/// The normalisation of heads built now.
pub fn current() -> HeadNorm {
    BUILDING.with(|b| b.get())
}
