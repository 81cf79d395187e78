//! Frozen features: the encoder in eval mode (BatchNorm running statistics, no gradients)
//! over every image of a store, with the deterministic eval transform (the centred square of
//! the image resized to the training resolution, normalised), pooled at the chosen stage.

use super::FrozenEncoder;
use crate::augment::{map_eval_batches, ViewRecipe};
use crate::data::ImageStore;
use tch::{Kind, Tensor};

/// Encodes every image: [N, D] float32, D the dimension of `encoder.layer`'s output.
pub fn extract_features(encoder: FrozenEncoder, images: &ImageStore, batch_size: usize) -> Tensor {
    extract_features_with(encoder, images, batch_size, &mut |_| {})
}

/// [`extract_features`], telling `progress` the number of images of each batch done (for a
/// progress bar over a long extraction).
pub fn extract_features_with(
    encoder: FrozenEncoder,
    images: &ImageStore,
    batch_size: usize,
    progress: &mut dyn FnMut(usize),
) -> Tensor {
    let recipe = ViewRecipe::eval(encoder.input_side);
    let (net, layer) = (encoder.net, encoder.layer);
    let parts = tch::no_grad(|| {
        map_eval_batches(
            images,
            &recipe,
            batch_size,
            encoder.channels_last,
            false,
            |x| {
                let f = net
                    .features_at(&crate::device::to_device(x, net.device()), false, layer)
                    .to_kind(Kind::Float)
                    .to_device(tch::Device::Cpu);
                progress(x.size()[0] as usize);
                f
            },
        )
    });
    if parts.is_empty() {
        let d = net.layer_dim(layer);
        return Tensor::zeros([0, d], (Kind::Float, tch::Device::Cpu)); // features come back to the CPU
    }
    Tensor::cat(&parts, 0)
}
