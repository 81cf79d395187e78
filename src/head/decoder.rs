//! Decoders back to pixels for the self-prediction methods: from the encoder's map of
//! features ([`crate::backbone::Backbone::feature_map`]) to an image of the input's size.
//! - [`ConvDecoder`] (a ResNet's last stage [N, C, s, s]): k = log₂(S / s) stages of ×2
//!   nearest upsampling → 3×3 conv → BN → ReLU, halving the channels (at least 16), then a
//!   3×3 conv to 3 channels;
//! - [`PatchDecoder`] (a ViT's patch tokens [N, D, S/p, S/p]): one linear map per token to its
//!   p×p×3 pixels (MAE's `decoder_pred` without the transformer), then unpatchify.

use crate::backbone::vit::{unpatchify, xavier_linear};
use crate::error::SettingError;
use tch::nn::{self, ModuleT};
use tch::Tensor;

/// Upsampling convolutions from a coarse map to pixels.
#[derive(Debug)]
pub struct ConvDecoder {
    stages: Vec<(nn::Conv2D, nn::BatchNorm)>,
    out: nn::Conv2D,
}

impl ConvDecoder {
    /// `in_ch` channels at side `in_side` → 3 channels at `out_side` (`out_side / in_side` a
    /// power of two).
    pub fn new(
        p: &nn::Path,
        in_ch: i64,
        in_side: i64,
        out_side: i64,
    ) -> Result<Self, SettingError> {
        let ratio = out_side / in_side.max(1);
        if in_side < 1 || ratio < 1 || ratio * in_side != out_side || (ratio & (ratio - 1)) != 0 {
            return Err(format!(
                "the decoder cannot grow a {in_side}x{in_side} feature map to {out_side}x{out_side} \
                 pixels: the crop size must be the map's side times a power of two (e.g. 32)"
            ).into());
        }
        let pad = nn::ConvConfig {
            padding: 1,
            bias: false,
            ..Default::default()
        };
        let mut c = in_ch;
        let mut stages = Vec::new();
        for i in 0..ratio.trailing_zeros() {
            let next = (c / 2).max(16);
            let sp = p / format!("up{i}");
            stages.push((
                nn::conv2d(&sp / "conv", c, next, 3, pad),
                nn::batch_norm2d(&sp / "bn", next, Default::default()),
            ));
            c = next;
        }
        let out = nn::conv2d(
            p / "out",
            c,
            3,
            3,
            nn::ConvConfig {
                padding: 1,
                ..Default::default()
            },
        );
        Ok(ConvDecoder { stages, out })
    }
}

impl ModuleT for ConvDecoder {
    /// [N, C, s, s] → [N, 3, S, S]
    fn forward_t(&self, x: &Tensor, train: bool) -> Tensor {
        let mut y = x.shallow_clone();
        for (conv, bn) in &self.stages {
            let (h, w) = (y.size()[2], y.size()[3]);
            y = y
                .upsample_nearest2d([2 * h, 2 * w], None, None)
                .apply(conv)
                .apply_t(bn, train)
                .relu();
        }
        y.apply(&self.out)
    }
}

/// A linear map from each patch token to its pixels.
#[derive(Debug)]
pub struct PatchDecoder {
    pred: nn::Linear,
    patch: i64,
}

impl PatchDecoder {
    pub fn new(p: &nn::Path, dim: i64, patch: i64) -> Self {
        PatchDecoder {
            pred: xavier_linear(p / "pred", dim, patch * patch * 3),
            patch,
        }
    }
}

impl ModuleT for PatchDecoder {
    /// [N, D, g, g] → [N, 3, g·p, g·p]
    fn forward_t(&self, x: &Tensor, _train: bool) -> Tensor {
        let tokens = x.flatten(2, 3).transpose(1, 2); // [N, g², D]
        unpatchify(&tokens.apply(&self.pred), self.patch)
    }
}

/// The decoder that fits an encoder: patches for a ViT, convolutions for a ResNet.
#[derive(Debug)]
pub enum Decoder {
    Conv(ConvDecoder),
    Patch(PatchDecoder),
}

impl Decoder {
    /// Variables under `p`; `map` is [`Backbone::feature_map`](crate::backbone::Backbone::feature_map)'s
    /// shape [C, s, s] for inputs of side `side`.
    pub fn for_backbone(
        p: &nn::Path,
        backbone: &crate::backbone::Backbone,
        map: (i64, i64),
        side: i64,
    ) -> Result<Self, SettingError> {
        Ok(match backbone.as_vit() {
            Some(v) => Decoder::Patch(PatchDecoder::new(p, v.config.dim, v.config.patch)),
            None => Decoder::Conv(ConvDecoder::new(p, map.0, map.1, side)?),
        })
    }
}

impl ModuleT for Decoder {
    /// In the training step's precision ([`crate::precision::autocast`]), fp32 out.
    fn forward_t(&self, x: &Tensor, train: bool) -> Tensor {
        crate::precision::autocast(|| match self {
            Decoder::Conv(d) => d.forward_t(x, train),
            Decoder::Patch(d) => d.forward_t(x, train),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::{Device, Kind};

    #[test]
    fn decoders_give_images_of_the_input_size_and_refuse_odd_ratios() {
        let vs = nn::VarStore::new(Device::Cpu);
        let d = ConvDecoder::new(&(vs.root() / "c"), 32, 4, 32).unwrap();
        let x = Tensor::randn([2, 32, 4, 4], (Kind::Float, Device::Cpu));
        assert_eq!(d.forward_t(&x, true).size(), vec![2, 3, 32, 32]);
        let e = ConvDecoder::new(&(vs.root() / "e"), 32, 4, 28)
            .unwrap_err()
            .to_string();
        assert!(e.contains("4x4") && e.contains("28x28"), "{e}");
        let p = PatchDecoder::new(&(vs.root() / "p"), 8, 4);
        let t = Tensor::randn([2, 8, 8, 8], (Kind::Float, Device::Cpu));
        assert_eq!(p.forward_t(&t, true).size(), vec![2, 3, 32, 32]);
    }
}
