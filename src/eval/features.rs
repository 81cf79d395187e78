//! Frozen features: the encoder in eval mode (BatchNorm running statistics, no gradients)
//! over every image of a store, with the deterministic eval transform (normalise only).

use crate::augment::{eval_batch, ViewRecipe};
use crate::backbone::ResNet;
use crate::data::ImageStore;
use tch::nn::ModuleT;
use tch::{Kind, Tensor};

/// A batch of NHWC f32 views [B, S, S, 3] as an NCHW tensor [B, 3, S, S]; with `channels_last`
/// the strides stay NHWC (no copy beyond the one into libtorch), else it is made contiguous.
pub fn nhwc_to_tensor(buf: &[f32], batch: usize, size: usize, channels_last: bool) -> Tensor {
    let t = Tensor::from_slice(&buf[..batch * size * size * 3]).view([
        batch as i64,
        size as i64,
        size as i64,
        3,
    ]);
    let t = t.permute([0, 3, 1, 2]); // [B, 3, S, S], channels-last strides
    if channels_last {
        t
    } else {
        t.contiguous()
    }
}

/// Encodes every image: [N, D] float32.
pub fn extract_features(
    encoder: &ResNet,
    images: &ImageStore,
    recipe: &ViewRecipe,
    batch_size: usize,
    channels_last: bool,
) -> Tensor {
    let n = images.len();
    let s = recipe.out_size;
    let mut buf = vec![0f32; batch_size * s * s * 3];
    let mut out = Vec::new();
    tch::no_grad(|| {
        let mut start = 0;
        while start < n {
            let len = batch_size.min(n - start);
            let idx: Vec<usize> = (start..start + len).collect();
            eval_batch(
                &images.pixels,
                images.height,
                images.width,
                &idx,
                recipe,
                &mut buf[..len * s * s * 3],
            );
            let x = nhwc_to_tensor(&buf, len, s, channels_last);
            out.push(encoder.forward_t(&x, false).to_kind(Kind::Float));
            start += len;
        }
    });
    if out.is_empty() {
        return Tensor::zeros([0, encoder.out_dim()], (Kind::Float, tch::Device::Cpu));
    }
    Tensor::cat(&out, 0)
}
