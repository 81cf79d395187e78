//! Encoders f(·): images [N, 3, H, W] → representations h [N, D].

pub mod resnet;

pub use resnet::{Layer, ResNet, ResNetConfig, Stem};

use tch::Tensor;

/// Rewrites every 4-D variable of the store in channels-last memory order (NHWC strides,
/// same NCHW shape). libtorch's CPU convolutions then run their fastest (oneDNN) path, and
/// gradients and optimiser buffers follow the parameters' layout.
pub fn to_channels_last(vs: &tch::nn::VarStore) {
    tch::no_grad(|| {
        for (_, mut v) in vs.variables() {
            if v.dim() == 4 {
                let cl = channels_last(&v);
                v.set_data(&cl);
            }
        }
    });
}

/// The same tensor [N, C, H, W] with channels-last strides (a copy unless it already is).
pub fn channels_last(x: &Tensor) -> Tensor {
    x.permute([0, 2, 3, 1]).contiguous().permute([0, 3, 1, 2])
}
