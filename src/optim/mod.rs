//! Optimisers and schedules, written out so that their state can be checkpointed and
//! restored exactly.

pub mod schedule;
pub mod sgd;

pub use schedule::{cosine_schedule, warmup_cosine};
pub use sgd::Sgd;
