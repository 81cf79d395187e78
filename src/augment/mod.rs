//! View augmentations: random "views" of u8 HWC images, as in SimCLR (Chen et al. 2020,
//! arXiv:2002.05709, appendix A) and BYOL (Grill et al. 2020, arXiv:2006.07733, table 6).
//!
//! One view goes through these ops, in torchvision's order for those recipes. Each op lives in
//! its own file with its formula; [`ViewRecipe`] holds the parameters and fuses the per-pixel
//! ops into as few passes over the image as the order allows.
//! ```text
//! u8 [H, W, 3] ── crop          random resized crop + horizontal flip, bilinear, straight from
//!                               the source to [S, S, 3] f32 in [0, 1]
//!              ── color_jitter  p = 0.8: brightness, contrast, saturation, hue in random order
//!              ── grayscale     p = 0.2: ITU-R 601-2 luma, replicated to 3 channels
//!              ── blur          p = 0 (CIFAR) / 0.5 (ImageNet): Gaussian, σ ~ U(0.1, 2)
//!              ── solarize      p = 0 for SimCLR: x ≥ 0.5 → 1 − x
//!              ── normalize     (x − mean) / std per channel → f32 [S, S, 3]
//! ```
//! Pretext tasks cut that view up further ([`views`]: the [`Views`] a method trains on):
//! [`rotation`] (the view turned by k·90°), [`relative_patch`] (two patches of a 3×3
//! [`grid`]) and [`jigsaw`] (its 9 tiles shuffled).
//!
//! [`augment_batch`] makes one view of each image of a batch in parallel; every draw comes from
//! `Rng::for_sample(seed, epoch, index, view)`, so the output does not depend on thread count.

pub mod batch;
pub mod blur;
pub mod color_jitter;
pub mod crop;
pub mod grayscale;
pub mod grid;
pub mod jigsaw;
pub mod normalize;
pub mod recipe;
pub mod relative_patch;
pub mod rotation;
pub mod solarize;
pub mod temporal_order;
pub mod tensor;
pub mod views;

pub use batch::{augment_batch, eval_batch, render_batch};
pub use color_jitter::{Jitter, JitterOp};
pub use crop::CropBox;
pub use normalize::{CIFAR10_MEAN, CIFAR10_STD, IMAGENET_MEAN, IMAGENET_STD};
pub use recipe::{ViewParams, ViewRecipe};
pub use tensor::{map_eval_batches, nhwc_to_tensor};
pub use views::{ViewShape, Views};

/// A view recipe that cannot be used as written.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum AugmentError {
    /// One field of [`ViewRecipe`] is out of its range.
    #[error("view recipe: `{field}` is {value}, but it must be {expected}")]
    InvalidRecipe {
        field: &'static str,
        value: String,
        expected: &'static str,
    },
}
