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

/// An error unless every value of `features` [N, D] is finite: a run stopped by a non-finite
/// loss can leave weights (norms near 1e30) whose features are NaN, and a score computed from
/// them means nothing. `what` names the images (`the training split`).
pub fn ensure_finite(features: &Tensor, what: &str) -> anyhow::Result<()> {
    let bad = features.isfinite().logical_not().any_dim(1, false); // [N]
    let n_bad = bad.sum(Kind::Int64).int64_value(&[]);
    if n_bad > 0 {
        let first = bad.nonzero().int64_value(&[0, 0]);
        anyhow::bail!(
            "the encoder gives non-finite features for {n_bad} images of {what} (the first is \
             image {first}): its weights are damaged (a run stopped by a non-finite loss leaves \
             such weights); nothing was scored: train again, or score another run"
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn non_finite_features_are_named_and_finite_ones_pass() {
        let f = Tensor::ones([4, 3], (Kind::Float, tch::Device::Cpu));
        ensure_finite(&f, "the test split").unwrap();
        let _ = f.get(2).get(1).fill_(f64::NAN);
        let _ = f.get(3).get(0).fill_(f64::INFINITY);
        let e = ensure_finite(&f, "the test split").unwrap_err().to_string();
        assert!(e.contains("2 images of the test split"), "{e}");
        assert!(e.contains("image 2"), "{e}");
    }
}
