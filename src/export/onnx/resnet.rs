//! A ResNet encoder as ONNX nodes, from its config and its weights under torchvision's names:
//! `Conv → BatchNormalization → Relu` per convolution (eval mode: the running statistics),
//! the ImageNet stem's `MaxPool`, residual `Add`s, then `GlobalAveragePool → Flatten`:
//! [N, 3, S, S] → [N, D]. It mirrors `crate::backbone::resnet` layer by layer.

use super::graph::{self, Graph};
use super::Weights;
use crate::backbone::{ResNetConfig, Stem};

/// libtorch's BatchNorm ε (`nn::batch_norm2d`'s default), which the network was trained with.
const BN_EPS: f32 = 1e-5;

/// `Conv(k×k, stride, padding k/2, no bias) → BatchNormalization`, then `Relu` when `relu`.
fn conv_bn(
    g: &mut Graph,
    w: &Weights,
    x: &str,
    (conv, bn): (&str, &str),
    (k, stride): (i64, i64),
    relu: bool,
) -> anyhow::Result<String> {
    let kernel = g.weight(&format!("{conv}.weight"), w.get(&format!("{conv}.weight"))?);
    let attrs = vec![
        graph::ints("kernel_shape", &[k, k]),
        graph::ints("strides", &[stride, stride]),
        graph::ints("pads", &[k / 2; 4]),
    ];
    let y = g.op("Conv", &[x, &kernel], attrs);
    let mut stats = Vec::new();
    for part in ["weight", "bias", "running_mean", "running_var"] {
        let name = format!("{bn}.{part}");
        stats.push(g.weight(&name, w.get(&name)?));
    }
    let inputs: Vec<&str> = std::iter::once(y.as_str())
        .chain(stats.iter().map(String::as_str))
        .collect();
    let y = g.op(
        "BatchNormalization",
        &inputs,
        vec![graph::float("epsilon", BN_EPS)],
    );
    Ok(match relu {
        true => g.op("Relu", &[&y], vec![]),
        false => y,
    })
}

/// The encoder's nodes on input `x` [N, 3, S, S]; returns the features' name ([N, D]).
pub fn encoder(g: &mut Graph, cfg: &ResNetConfig, w: &Weights, x: &str) -> anyhow::Result<String> {
    let (blocks, bottleneck) = cfg.layout().ok_or_else(|| {
        anyhow::anyhow!(
            "a ResNet of depth {}: ONNX export knows 18, 34 and 50",
            cfg.depth
        )
    })?;
    let stem = match cfg.stem {
        Stem::Cifar => (3, 1),
        Stem::Imagenet => (7, 2),
    };
    let mut y = conv_bn(g, w, x, ("conv1", "bn1"), stem, true)?;
    if cfg.stem == Stem::Imagenet {
        let pool = vec![
            graph::ints("kernel_shape", &[3, 3]),
            graph::ints("strides", &[2, 2]),
            graph::ints("pads", &[1, 1, 1, 1]),
        ];
        y = g.op("MaxPool", &[&y], pool);
    }
    for (stage, &n) in blocks.iter().enumerate() {
        for i in 0..n {
            let p = format!("layer{}.{i}", stage + 1);
            let stride = if i == 0 && stage > 0 { 2 } else { 1 };
            // basic: 3×3 (stride), 3×3; bottleneck: 1×1, 3×3 (stride), 1×1
            let convs: &[(i64, i64)] = match bottleneck {
                true => &[(1, 1), (3, stride), (1, 1)],
                false => &[(3, stride), (3, 1)],
            };
            let mut h = y.clone();
            for (j, &shape) in convs.iter().enumerate() {
                let names = (format!("{p}.conv{}", j + 1), format!("{p}.bn{}", j + 1));
                let last = j + 1 == convs.len();
                h = conv_bn(g, w, &h, (&names.0, &names.1), shape, !last)?;
            }
            let shortcut = match w.has(&format!("{p}.downsample.0.weight")) {
                true => {
                    let names = (format!("{p}.downsample.0"), format!("{p}.downsample.1"));
                    conv_bn(g, w, &y, (&names.0, &names.1), (1, stride), false)?
                }
                false => y.clone(),
            };
            let sum = g.op("Add", &[&h, &shortcut], vec![]);
            y = g.op("Relu", &[&sum], vec![]);
        }
    }
    let pooled = g.op("GlobalAveragePool", &[&y], vec![]); // [N, D, 1, 1]
    Ok(g.op("Flatten", &[&pooled], vec![graph::int("axis", 1)])) // [N, D]
}
