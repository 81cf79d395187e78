//! Frozen features: the encoder in eval mode (BatchNorm running statistics, no gradients)
//! over every image of a store, with the deterministic eval transform (normalise only).

use crate::augment::{map_eval_batches, ViewRecipe};
use crate::backbone::ResNet;
use crate::data::ImageStore;
use tch::nn::ModuleT;
use tch::{Kind, Tensor};

/// Encodes every image: [N, D] float32.
pub fn extract_features(
    encoder: &ResNet,
    images: &ImageStore,
    recipe: &ViewRecipe,
    batch_size: usize,
    channels_last: bool,
) -> Tensor {
    let parts = tch::no_grad(|| {
        map_eval_batches(images, recipe, batch_size, channels_last, false, |x| {
            encoder.forward_t(x, false).to_kind(Kind::Float)
        })
    });
    if parts.is_empty() {
        return Tensor::zeros([0, encoder.out_dim()], (Kind::Float, tch::Device::Cpu));
    }
    Tensor::cat(&parts, 0)
}
