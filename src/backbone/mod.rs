//! Encoders f(·): images [N, 3, H, W] → representations h [N, D]: a ResNet ([`resnet`]) or a
//! Vision Transformer ([`vit`]), chosen by `model.backbone` (`--backbone`) for every method.

pub mod resnet;
pub mod transformer;
pub mod vit;

pub use resnet::{Layer, ResNet, ResNetConfig, Stem};
pub use vit::{Vit, VitConfig};

use crate::error::SettingError;
use serde::{Deserialize, Serialize};
use tch::nn::{self, ModuleT};
use tch::Tensor;

/// The encoders `--backbone` names.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
pub enum BackboneName {
    #[serde(rename = "resnet18")]
    #[value(name = "resnet18")]
    ResNet18,
    #[serde(rename = "resnet34")]
    #[value(name = "resnet34")]
    ResNet34,
    #[serde(rename = "resnet50")]
    #[value(name = "resnet50")]
    ResNet50,
    /// ViT-Tiny: width 192, 12 blocks, 3 heads.
    #[serde(rename = "vit_tiny")]
    #[value(name = "vit_tiny")]
    VitTiny,
    /// ViT-Small: width 384, 12 blocks, 6 heads.
    #[serde(rename = "vit_small")]
    #[value(name = "vit_small")]
    VitSmall,
}

impl BackboneName {
    /// The ResNet depth of a ResNet name.
    pub fn resnet_depth(self) -> Option<usize> {
        match self {
            BackboneName::ResNet18 => Some(18),
            BackboneName::ResNet34 => Some(34),
            BackboneName::ResNet50 => Some(50),
            _ => None,
        }
    }
}

/// The architecture of an encoder.
#[derive(Clone, Debug, PartialEq)]
pub enum BackboneConfig {
    ResNet(ResNetConfig),
    Vit(VitConfig),
}

impl BackboneConfig {
    /// Checks the shape; the message names the setting.
    pub fn validate(&self) -> Result<(), SettingError> {
        match self {
            BackboneConfig::ResNet(c) => c.validate(),
            BackboneConfig::Vit(c) => c.validate(),
        }
    }

    /// D, the dimension of h.
    pub fn out_dim(&self) -> i64 {
        self.layer_dim(Layer::Layer4)
    }

    /// The dimension of the representation at `layer`.
    pub fn layer_dim(&self, layer: Layer) -> i64 {
        match self {
            BackboneConfig::ResNet(c) => c.layer_dim(layer),
            BackboneConfig::Vit(c) => c.dim,
        }
    }

    /// "ResNet-18 width 0.25", "vit_tiny (192 wide, 12 blocks, patch 4)".
    pub fn describe(&self) -> String {
        match self {
            BackboneConfig::ResNet(c) => format!("ResNet-{} width {}", c.depth, c.width),
            BackboneConfig::Vit(c) => format!(
                "ViT {} wide, {} blocks, {} heads, patch {}",
                c.dim, c.depth, c.heads, c.patch
            ),
        }
    }

    /// Channels-last order is safe for this network (see
    /// [`ResNetConfig::channels_last_is_safe`]); a ViT's one convolution is unaffected, and
    /// its tokens have no such order, so it always takes NCHW.
    pub fn channels_last_is_safe(&self) -> bool {
        match self {
            BackboneConfig::ResNet(c) => c.channels_last_is_safe(),
            BackboneConfig::Vit(_) => false,
        }
    }
}

/// An encoder of either kind.
#[derive(Debug)]
pub enum Backbone {
    ResNet(ResNet),
    Vit(Vit),
}

impl Backbone {
    /// Creates the variables under `p` (torchvision's names for a ResNet, timm's for a ViT).
    pub fn new(p: &nn::Path, config: &BackboneConfig) -> Result<Self, SettingError> {
        Ok(match config {
            BackboneConfig::ResNet(c) => Backbone::ResNet(ResNet::new(p, c)?),
            BackboneConfig::Vit(c) => Backbone::Vit(Vit::new(p, c)?),
        })
    }

    pub fn out_dim(&self) -> i64 {
        match self {
            Backbone::ResNet(n) => n.out_dim(),
            Backbone::Vit(n) => n.out_dim(),
        }
    }

    /// Where the weights live (inputs go there; see [`crate::device`]).
    pub fn device(&self) -> tch::Device {
        match self {
            Backbone::ResNet(n) => n.device(),
            Backbone::Vit(n) => n.device(),
        }
    }

    /// The variables more than 1-D that weight decay must leave alone: a ViT's class token and
    /// position embeddings (timm's `no_weight_decay`); none for a ResNet.
    pub fn no_decay(&self) -> Vec<Tensor> {
        match self {
            Backbone::ResNet(_) => Vec::new(),
            Backbone::Vit(n) => n.no_decay(),
        }
    }

    /// The dimension of [`features_at`](Self::features_at) `layer`.
    pub fn layer_dim(&self, layer: Layer) -> i64 {
        match self {
            Backbone::ResNet(n) => n.config.layer_dim(layer),
            Backbone::Vit(n) => n.config.dim,
        }
    }

    /// The representation at `layer` (a ResNet's stage, pooled; a ViT's class token that far
    /// through its blocks): [N, 3, H, W] → [N, layer_dim].
    /// In the training step's precision ([`crate::precision::autocast`]), fp32 out.
    pub fn features_at(&self, x: &Tensor, train: bool, layer: Layer) -> Tensor {
        crate::precision::autocast(|| match self {
            Backbone::ResNet(n) => n.features_at(x, train, layer),
            Backbone::Vit(n) => n.features_at(x, layer),
        })
    }

    /// The ViT, for methods that work on its tokens (MAE).
    pub fn as_vit(&self) -> Option<&Vit> {
        match self {
            Backbone::Vit(v) => Some(v),
            Backbone::ResNet(_) => None,
        }
    }

    /// A map of features before pooling, for decoders: a ResNet's last stage [N, C, H/8, W/8]
    /// (CIFAR stem), a ViT's patch tokens laid out on their grid [N, D, S/p, S/p].
    pub fn feature_map(&self, x: &Tensor, train: bool) -> Tensor {
        crate::precision::autocast(|| match self {
            Backbone::ResNet(n) => n.feature_map(x, train),
            Backbone::Vit(n) => {
                let t = n.tokens(x); // [N, 1 + L, D]
                let (b, l) = (t.size()[0], n.config.patches());
                let g = n.config.grid();
                t.narrow(1, 1, l)
                    .transpose(1, 2)
                    .reshape([b, n.config.dim, g, g])
            }
        })
    }
}

impl ModuleT for Backbone {
    /// [N, 3, H, W] → [N, D]
    fn forward_t(&self, x: &Tensor, train: bool) -> Tensor {
        self.features_at(x, train, Layer::Layer4)
    }
}

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
