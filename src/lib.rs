//! selfsup: self-supervised representation learning on images, on libtorch.
//!
//! The modules follow the pipeline:
//! `data` → `augment` → `backbone` → `head` → `loss` → `method` → `optim` → `train` → `eval`.
//! A method is one file in `method/` plus one row of [`method::registry::REGISTRY`].
//!
//! The names most programs need are re-exported here:
//! ```no_run
//! use selfsup::{evaluate, pretrain, EvalKind, TrainConfig};
//! let cfg = TrainConfig::load(None, &["method.name=byol".into()])?;
//! let splits = selfsup::train::load_data(&cfg)?;
//! let (report, model) = pretrain(&cfg, &splits, false)?;
//! # Ok::<(), anyhow::Error>(())
//! ```

pub mod augment;
pub mod backbone;
pub mod checkpoint;
pub mod config;
pub mod data;
pub mod device;
pub mod dist;
pub mod error;
pub mod eval;
pub mod export;
pub mod head;
pub mod loss;
pub mod malloc;
pub mod method;
pub mod optim;
pub mod precision;
pub mod report;
pub mod rng;
pub mod sequence;
pub mod text;
pub mod train;

pub use augment::ViewRecipe;
pub use backbone::{ResNet, ResNetConfig, Stem};
pub use config::TrainConfig;
pub use data::{Dataset, ImageStore, Splits};
pub use eval::{evaluate, EvalKind, EvalReport, FrozenEncoder};
pub use loss::TwoViewLoss;
pub use method::{Method, MethodSpec, StepContext, StepOutput};
pub use train::{open_encoder, pretrain, Model, PretrainReport, Trainer};
