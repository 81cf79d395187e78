//! ResNet-18/34/50 (He et al. 2016, arXiv:1512.03385) with an ImageNet stem (7×7/2 conv +
//! 3×3/2 max-pool) or the CIFAR stem of SimCLR's appendix B.9 (3×3/1 conv, no max-pool),
//! and a width multiplier on every stage's channels (1.0 = 64-128-256-512).
//!
//! Parameter names follow torchvision's (`conv1.weight`, `bn1.running_mean`,
//! `layer1.0.conv2.weight`, `layer2.0.downsample.0.weight`, …) so that weights can be
//! exchanged with PyTorch. There is no `fc`: the encoder ends at global average pooling.

use crate::error::SettingError;
use serde::{Deserialize, Serialize};
use tch::nn::{self, ModuleT};
use tch::Tensor;

/// Which first layers the network has.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Stem {
    /// 3×3 stride-1 conv, no max-pool: for 32×32 inputs such as CIFAR.
    Cifar,
    /// 7×7 stride-2 conv + 3×3 stride-2 max-pool: for 224×224 inputs.
    Imagenet,
}

impl Stem {
    /// The training resolution (crop side) used when none is set: 32 for the CIFAR stem; 96
    /// for the ImageNet stem, which on a small CPU trains about 5× more images per second
    /// than 224 (the guide, "Photo collections").
    pub fn default_crop_size(self) -> usize {
        match self {
            Stem::Cifar => 32,
            Stem::Imagenet => 96,
        }
    }
}

/// A stage of the ResNet whose output, global-average-pooled, is a representation: `layer4`
/// is the encoder's h; the earlier stages give mid-level features (RotNet's best CIFAR-10
/// features come from its second block; VISSL evaluates every stage).
#[derive(
    Clone,
    Copy,
    Debug,
    Default,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Serialize,
    Deserialize,
    clap::ValueEnum,
)]
#[serde(rename_all = "lowercase")]
pub enum Layer {
    Layer1,
    Layer2,
    Layer3,
    #[default]
    Layer4,
}

impl Layer {
    /// Every stage, first to last.
    pub const ALL: [Layer; 4] = [Layer::Layer1, Layer::Layer2, Layer::Layer3, Layer::Layer4];

    /// 0 for `layer1` … 3 for `layer4`.
    pub fn index(self) -> usize {
        self as usize
    }

    /// `"layer1"` … `"layer4"`, as torchvision names the stages.
    pub fn name(self) -> &'static str {
        ["layer1", "layer2", "layer3", "layer4"][self.index()]
    }
}

/// Input channels a strided 1×1 convolution needs before channels-last order is used (see
/// [`ResNetConfig::channels_last_is_safe`]): 8 floats fill one AVX2 register.
pub const CHANNELS_LAST_MIN_INPUTS: i64 = 8;

/// The architecture of a ResNet encoder.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ResNetConfig {
    /// 18, 34 or 50.
    pub depth: usize,
    pub stem: Stem,
    /// Multiplier on the channel counts 64-128-256-512 (0.25 → 16-32-64-128).
    pub width: f64,
}

impl ResNetConfig {
    /// Blocks per stage and whether the blocks are bottlenecks (×4 expansion).
    pub(crate) fn layout(&self) -> Option<([usize; 4], bool)> {
        match self.depth {
            18 => Some(([2, 2, 2, 2], false)),
            34 => Some(([3, 4, 6, 3], false)),
            50 => Some(([3, 4, 6, 3], true)),
            _ => None,
        }
    }

    /// Channels of each stage's 3×3 convolutions after the width multiplier (at least 1).
    pub fn stage_channels(&self) -> [i64; 4] {
        [64.0, 128.0, 256.0, 512.0].map(|c: f64| ((c * self.width).round() as i64).max(1))
    }

    /// D, the dimension of the representation h.
    pub fn out_dim(&self) -> i64 {
        self.layer_dim(Layer::Layer4)
    }

    /// Channels of a stage's output (its pooled features' dimension).
    pub fn layer_dim(&self, layer: Layer) -> i64 {
        let bottleneck = self.layout().map(|l| l.1).unwrap_or(false);
        self.stage_channels()[layer.index()] * if bottleneck { 4 } else { 1 }
    }

    /// Input channels of every strided 1×1 convolution (the downsampling shortcuts of stages
    /// 2–4), in network order.
    pub fn strided_pointwise_inputs(&self) -> Vec<i64> {
        let Some((_, bottleneck)) = self.layout() else {
            return Vec::new();
        };
        let ch = self.stage_channels();
        let expansion = if bottleneck { 4 } else { 1 };
        (1..4).map(|stage| ch[stage - 1] * expansion).collect()
    }

    /// Whether training this network in channels-last order is safe from a heap corruption in
    /// libtorch's CPU kernels (torch 2.13 and 2.15, oneDNN's AVX2 path, one intra-op thread):
    /// the weight gradient of a 1×1 stride-2 convolution with 2–7 input channels, channels-last,
    /// writes out of bounds (`scripts/channels_last_crash.py` is the minimal repro). The rule
    /// asks every strided 1×1 convolution for at least [`CHANNELS_LAST_MIN_INPUTS`] input
    /// channels; below it selfsup trains in NCHW, which is unaffected. Width 0.125 and up of
    /// every depth passes; width 0.0625 of ResNet-18/34 (4 input channels) does not.
    pub fn channels_last_is_safe(&self) -> bool {
        self.strided_pointwise_inputs()
            .iter()
            .all(|&c| c >= CHANNELS_LAST_MIN_INPUTS)
    }

    /// Checks the depth and width; the message names the bad value.
    pub fn validate(&self) -> Result<(), SettingError> {
        if self.layout().is_none() {
            return Err(format!("model.depth is {}: choose 18, 34 or 50", self.depth).into());
        }
        if !(self.width.is_finite() && self.width > 0.0 && self.width <= 8.0) {
            return Err(SettingError::out_of_range(
                "model.width",
                self.width,
                "it must be in (0, 8]",
            ));
        }
        Ok(())
    }
}

fn conv(p: nn::Path, c_in: i64, c_out: i64, k: i64, stride: i64) -> nn::Conv2D {
    let cfg = nn::ConvConfig {
        stride,
        padding: k / 2,
        bias: false,
        // torchvision: kaiming_normal_(mode="fan_out", nonlinearity="relu")
        ws_init: nn::Init::Kaiming {
            dist: nn::init::NormalOrUniform::Normal,
            fan: nn::init::FanInOut::FanOut,
            non_linearity: nn::init::NonLinearity::ReLU,
        },
        ..Default::default()
    };
    nn::conv2d(p, c_in, c_out, k, cfg)
}

fn bn(p: nn::Path, c: i64) -> nn::BatchNorm {
    nn::batch_norm2d(p, c, Default::default())
}

/// One residual block: basic (two 3×3) or bottleneck (1×1, 3×3, 1×1 with ×4 expansion).
#[derive(Debug)]
struct Block {
    convs: Vec<(nn::Conv2D, nn::BatchNorm)>,
    downsample: Option<(nn::Conv2D, nn::BatchNorm)>,
}

impl Block {
    fn new(p: &nn::Path, c_in: i64, c: i64, stride: i64, bottleneck: bool) -> (Self, i64) {
        let (c_out, shapes): (i64, Vec<(i64, i64, i64, i64)>) = if bottleneck {
            (
                4 * c,
                vec![(c_in, c, 1, 1), (c, c, 3, stride), (c, 4 * c, 1, 1)],
            )
        } else {
            (c, vec![(c_in, c, 3, stride), (c, c, 3, 1)])
        };
        let convs = shapes
            .iter()
            .enumerate()
            .map(|(i, &(ci, co, k, s))| {
                let n = i + 1;
                (
                    conv(p / format!("conv{n}"), ci, co, k, s),
                    bn(p / format!("bn{n}"), co),
                )
            })
            .collect();
        let downsample = (stride != 1 || c_in != c_out).then(|| {
            let d = p / "downsample";
            (conv(&d / "0", c_in, c_out, 1, stride), bn(&d / "1", c_out))
        });
        (Block { convs, downsample }, c_out)
    }

    fn forward_t(&self, x: &Tensor, train: bool) -> Tensor {
        let last = self.convs.len() - 1;
        let mut y = x.shallow_clone();
        for (i, (c, b)) in self.convs.iter().enumerate() {
            y = y.apply(c).apply_t(b, train);
            if i < last {
                y = y.relu_();
            }
        }
        let shortcut = match &self.downsample {
            Some((c, b)) => x.apply(c).apply_t(b, train),
            None => x.shallow_clone(),
        };
        (y + shortcut).relu_()
    }
}

/// A ResNet encoder: `forward_t` maps [N, 3, H, W] → [N, out_dim].
#[derive(Debug)]
pub struct ResNet {
    pub config: ResNetConfig,
    conv1: nn::Conv2D,
    bn1: nn::BatchNorm,
    layers: Vec<Block>,
    /// `layers[..stage_ends[i]]` are the blocks up to the end of stage i.
    stage_ends: [usize; 4],
}

impl ResNet {
    /// Creates the variables under `p` (use the store's root for torchvision names).
    pub fn new(p: &nn::Path, config: &ResNetConfig) -> Result<Self, SettingError> {
        config.validate()?;
        let (blocks, bottleneck) = config.layout().expect("validated");
        let ch = config.stage_channels();
        let (k, s) = match config.stem {
            Stem::Cifar => (3, 1),
            Stem::Imagenet => (7, 2),
        };
        let conv1 = conv(p / "conv1", 3, ch[0], k, s);
        let bn1 = bn(p / "bn1", ch[0]);
        let mut c_in = ch[0];
        let mut layers = Vec::new();
        let mut stage_ends = [0; 4];
        for (stage, (&n, &c)) in blocks.iter().zip(ch.iter()).enumerate() {
            let lp = p / format!("layer{}", stage + 1);
            for i in 0..n {
                let stride = if i == 0 && stage > 0 { 2 } else { 1 };
                let (b, c_out) = Block::new(&(&lp / i), c_in, c, stride, bottleneck);
                layers.push(b);
                c_in = c_out;
            }
            stage_ends[stage] = layers.len();
        }
        Ok(ResNet {
            config: config.clone(),
            conv1,
            bn1,
            layers,
            stage_ends,
        })
    }

    pub fn out_dim(&self) -> i64 {
        self.config.out_dim()
    }

    /// Where the weights live.
    pub fn device(&self) -> tch::Device {
        self.conv1.ws.device()
    }

    /// The output of stage `layer`, global-average-pooled: [N, 3, H, W] → [N, layer_dim].
    /// `Layer::Layer4` is [`forward_t`](ModuleT::forward_t).
    pub fn features_at(&self, x: &Tensor, train: bool, layer: Layer) -> Tensor {
        self.map_at(x, train, layer)
            .adaptive_avg_pool2d([1, 1])
            .flatten(1, -1) // [N, C_layer]
    }

    /// The output of the last stage before pooling: [N, 3, H, W] → [N, D, H/8, W/8] (CIFAR
    /// stem; H/32 with the ImageNet stem).
    pub fn feature_map(&self, x: &Tensor, train: bool) -> Tensor {
        self.map_at(x, train, Layer::Layer4)
    }

    fn map_at(&self, x: &Tensor, train: bool, layer: Layer) -> Tensor {
        let mut y = x.apply(&self.conv1).apply_t(&self.bn1, train).relu_(); // [N, C0, H', W']
        if self.config.stem == Stem::Imagenet {
            y = y.max_pool2d([3, 3], [2, 2], [1, 1], [1, 1], false);
        }
        for b in &self.layers[..self.stage_ends[layer.index()]] {
            y = b.forward_t(&y, train);
        }
        y // [N, C_layer, H_layer, W_layer]
    }
}

impl ModuleT for ResNet {
    /// [N, 3, H, W] → [N, D]
    fn forward_t(&self, x: &Tensor, train: bool) -> Tensor {
        self.features_at(x, train, Layer::Layer4) // [N, D]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::{Device, Kind};

    fn build(depth: usize, stem: Stem, width: f64) -> (nn::VarStore, ResNet) {
        let vs = nn::VarStore::new(Device::Cpu);
        let net = ResNet::new(&vs.root(), &ResNetConfig { depth, stem, width }).unwrap();
        (vs, net)
    }

    fn param_count(vs: &nn::VarStore) -> i64 {
        vs.trainable_variables()
            .iter()
            .map(|t| t.numel() as i64)
            .sum()
    }

    #[test]
    fn torchvision_names_and_parameter_counts() {
        // torchvision resnet18 has 11,689,512 parameters; its fc is 512*1000 + 1000.
        let (vs, net) = build(18, Stem::Imagenet, 1.0);
        assert_eq!(param_count(&vs), 11_689_512 - 513_000);
        assert_eq!(net.out_dim(), 512);
        let names = vs.variables();
        for n in [
            "conv1.weight",
            "bn1.running_mean",
            "layer1.0.conv2.weight",
            "layer2.0.downsample.0.weight",
            "layer2.0.downsample.1.running_var",
            "layer4.1.bn2.bias",
        ] {
            assert!(names.contains_key(n), "missing {n}");
        }
        assert_eq!(names["layer2.0.conv1.weight"].size(), vec![128, 64, 3, 3]);
        // torchvision resnet50: 25,557,032 parameters, fc = 2048*1000 + 1000.
        let (vs, net) = build(50, Stem::Imagenet, 1.0);
        assert_eq!(param_count(&vs), 25_557_032 - 2_049_000);
        assert_eq!(net.out_dim(), 2048);
        // resnet34: 21,797,672.
        let (vs, _) = build(34, Stem::Imagenet, 1.0);
        assert_eq!(param_count(&vs), 21_797_672 - 513_000);
    }

    #[test]
    fn cifar_stem_keeps_resolution_and_width_scales_channels() {
        let (vs, net) = build(18, Stem::Cifar, 0.25);
        assert_eq!(vs.variables()["conv1.weight"].size(), vec![16, 3, 3, 3]);
        let x = Tensor::randn([2, 3, 32, 32], (Kind::Float, Device::Cpu));
        let h = net.forward_t(&x, false);
        assert_eq!(h.size(), vec![2, 32 * 4 / 4 * 4]); // 128 = 512 × 0.25
                                                       // The ImageNet stem downsamples 4×, the CIFAR stem not at all: same 32×32 input, both
                                                       // end at global pooling, so only the intermediate sizes differ; check via a 1×1 input.
        let (_, inet) = build(18, Stem::Imagenet, 0.25);
        assert_eq!(inet.forward_t(&x, true).size(), vec![2, 128]);
    }

    #[test]
    fn intermediate_layers_have_their_stage_widths_and_layer4_is_the_encoder() {
        for (depth, widths) in [(18, [16, 32, 64, 128]), (50, [64, 128, 256, 512])] {
            let (_, net) = build(depth, Stem::Cifar, 0.25);
            let x = Tensor::randn([2, 3, 16, 16], (Kind::Float, Device::Cpu));
            for (layer, w) in Layer::ALL.into_iter().zip(widths) {
                assert_eq!(
                    net.features_at(&x, false, layer).size(),
                    vec![2, w],
                    "{layer:?}"
                );
                assert_eq!(net.config.layer_dim(layer), w);
            }
            let h = net.forward_t(&x, false);
            assert!(h.equal(&net.features_at(&x, false, Layer::Layer4)));
            let l2 = net.features_at(&x, false, Layer::Layer2);
            assert!(
                !l2.narrow(1, 0, 16).equal(&h.narrow(1, 0, 16)),
                "a different stage"
            );
        }
        assert_eq!(Layer::Layer2.name(), "layer2");
    }

    #[test]
    fn channels_last_is_refused_where_a_strided_pointwise_conv_has_few_inputs() {
        let cfg = |depth, width| ResNetConfig {
            depth,
            stem: Stem::Cifar,
            width,
        };
        // ResNet-18 at 0.0625: stages 4-8-16-32, so the stage-2 shortcut reads 4 channels
        assert_eq!(cfg(18, 0.0625).strided_pointwise_inputs(), vec![4, 8, 16]);
        assert!(!cfg(18, 0.0625).channels_last_is_safe());
        assert!(!cfg(34, 0.0625).channels_last_is_safe());
        assert!(!cfg(18, 0.1).channels_last_is_safe()); // 6 channels
        assert!(cfg(18, 0.125).channels_last_is_safe()); // 8 channels
        assert!(cfg(18, 0.25).channels_last_is_safe());
        // bottlenecks expand 4x before the shortcut: 16 channels at 0.0625
        assert_eq!(cfg(50, 0.0625).strided_pointwise_inputs(), vec![16, 32, 64]);
        assert!(cfg(50, 0.0625).channels_last_is_safe());
        assert!(!cfg(50, 0.02).channels_last_is_safe()); // 1 channel x 4
                                                         // the rule is what the trainer reads
        let model = crate::config::ModelConfig {
            width: 0.0625,
            ..Default::default()
        };
        assert!(model.channels_last && !model.uses_channels_last());
        let model = crate::config::ModelConfig::default();
        assert!(model.uses_channels_last());
    }

    #[test]
    fn channels_last_gives_the_same_output() {
        tch::manual_seed(0);
        let (vs, net) = build(18, Stem::Cifar, 0.125);
        let x = Tensor::randn([2, 3, 16, 16], (Kind::Float, Device::Cpu));
        let before = net.forward_t(&x, false);
        crate::backbone::to_channels_last(&vs);
        let after = net.forward_t(&crate::backbone::channels_last(&x), false);
        let diff = (before - after).abs().max().double_value(&[]);
        assert!(diff < 1e-4, "{diff}");
    }

    #[test]
    fn bad_depth_and_width_are_named() {
        let vs = nn::VarStore::new(Device::Cpu);
        let e = ResNet::new(
            &vs.root(),
            &ResNetConfig {
                depth: 20,
                stem: Stem::Cifar,
                width: 1.0,
            },
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("20"), "{e}");
        let e = ResNet::new(
            &vs.root(),
            &ResNetConfig {
                depth: 18,
                stem: Stem::Cifar,
                width: 0.0,
            },
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("width"), "{e}");
    }
}
