//! selfsup: self-supervised contrastive representation learning on images, on libtorch.
//!
//! The modules follow the pipeline:
//! `data` → `augment` → `backbone` → `head` → `loss` → `method` → `optim` → `train` → `eval`.

pub mod augment;
pub mod backbone;
pub mod bench;
pub mod checkpoint;
pub mod config;
pub mod data;
pub mod eval;
pub mod head;
pub mod loss;
pub mod malloc;
pub mod method;
pub mod optim;
pub mod rng;
pub mod train;
