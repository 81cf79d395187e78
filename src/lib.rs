//! selfsup: self-supervised representation learning on images, on libtorch.
//!
//! The modules follow the pipeline:
//! `data` → `augment` → `backbone` → `head` → `loss` → `method` → `optim` → `train` → `eval`.
//! A method is one file in `method/` plus one row of [`method::registry::REGISTRY`].
//!
//! The names most programs need are re-exported here. Pretrain a tiny SimCLR on the built-in
//! synthetic shapes, then embed the test images with the run's encoder (a doc test: it runs):
//! ```
//! use selfsup::{open_encoder, pretrain, TrainConfig};
//! let run = std::env::temp_dir().join(format!("selfsup-doc-{}", std::process::id()));
//! let set = |kv: &[&str]| kv.iter().map(|s| s.to_string()).collect::<Vec<_>>();
//! let cfg = TrainConfig::load(
//!     None,
//!     &set(&[
//!         "method.name=\"simclr\"",
//!         "model.width=0.0625",          // a tiny ResNet-18
//!         "train.batch_size=16",
//!         "train.epochs=1",
//!         "train.threads=1",
//!         "data.synthetic_train_per_class=8", // 80 images of 10 shapes
//!         "data.synthetic_test_per_class=2",
//!         "data.synthetic_size=16",
//!         &format!("train.out_dir={:?}", run.display().to_string()),
//!     ]),
//! )?;
//! let splits = selfsup::train::load_data(&cfg)?;
//! let (report, _model) = pretrain(&cfg, &splits, false)?;
//! assert_eq!(report.steps_run, 5); // 80 images / 16 per step
//! // the run folder's encoder, as `selfsup embed` reads it
//! let encoder = open_encoder(&run, false, tch::Device::Cpu)?;
//! let test = &splits.test.as_ref().expect("a test split").images;
//! let features = selfsup::eval::extract_features(encoder.frozen(test), test, 8); // [20, D]
//! assert_eq!(features.size()[0], 20);
//! std::fs::remove_dir_all(&run)?;
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
