//! The encoder as an ONNX model (`selfsup export --format onnx`), for ONNX Runtime, TensorRT,
//! OpenVINO and the web and mobile runtimes: the graph of the run's own ResNet ([`resnet`]) or
//! ViT ([`vit`]) in eval mode (BatchNorm as `BatchNormalization` with the running statistics),
//! its weights as initializers, opset 17, IR 8.
//!
//! ```text
//! images  float32 [N, 3, S, S]  (normalised as `selfsup embed` normalises: RGB / 255, then
//!                                 (x − mean) / std per channel, CIFAR-10's mean and std)
//!    or   uint8   [N, S, S, 3]  with `--with-normalisation` (RGB, normalised inside the graph)
//! features float32 [N, D]       (N is dynamic: any batch size)
//! ```
//! The model's `metadata_props` say the same (input, input_size, mean, std, output, backbone).

pub mod graph;
pub mod proto;
mod resnet;
mod vit;

use crate::augment::normalize::{CIFAR10_MEAN, CIFAR10_STD};
use crate::backbone::Backbone;
use graph::Graph;
use prost::Message;
use proto::{
    tensor_proto::DataType, GraphProto, ModelProto, OperatorSetIdProto, StringStringEntryProto,
};
use std::collections::HashMap;
use std::path::Path;
use tch::{nn::VarStore, Tensor};

/// The operator set the graph is written for (LayerNormalization needs 17).
pub const OPSET: i64 = 17;
/// The IR version of opset 17 (ONNX 1.12).
pub const IR_VERSION: i64 = 8;
/// The graph's input and output names.
pub const INPUT: &str = "images";
pub const OUTPUT: &str = "features";

/// The encoder's variables by name (torchvision's or timm's).
pub struct Weights(HashMap<String, Tensor>);

impl Weights {
    /// The variables of `vs` under `prefix` (removed): `backbone.` for a run's encoder.
    pub fn of(vs: &VarStore, prefix: &str) -> Self {
        let named = vs.variables().into_iter();
        Weights(
            named
                .filter_map(|(n, t)| n.strip_prefix(prefix).map(|s| (s.to_string(), t)))
                .collect(),
        )
    }

    fn get(&self, name: &str) -> anyhow::Result<&Tensor> {
        self.0.get(name).ok_or_else(|| {
            anyhow::anyhow!("the encoder has no variable {name}: the run's checkpoint does not match its config")
        })
    }

    fn has(&self, name: &str) -> bool {
        self.0.contains_key(name)
    }
}

/// What the exported graph takes.
#[derive(Clone, Copy, Debug)]
pub struct Options {
    /// S: the side of the square input (the run's crop size).
    pub side: i64,
    /// Take uint8 [N, S, S, 3] RGB and normalise inside the graph.
    pub with_normalisation: bool,
}

/// The uint8 [N, S, S, 3] → normalised float32 [N, 3, S, S] prologue; returns its output.
fn normalise(g: &mut Graph, x: &str) -> String {
    let to_float = graph::int("to", DataType::Float as i64);
    let x = g.op("Cast", &[x], vec![to_float]);
    let scale = g.floats("max", &[255.0], &[]);
    let x = g.op("Div", &[&x, &scale], vec![]);
    let mean = g.floats("mean", &CIFAR10_MEAN, &[3]);
    let std = g.floats("std", &CIFAR10_STD, &[3]);
    let x = g.op("Sub", &[&x, &mean], vec![]);
    let x = g.op("Div", &[&x, &std], vec![]);
    g.op("Transpose", &[&x], vec![graph::ints("perm", &[0, 3, 1, 2])]) // [N, 3, S, S]
}

/// A backbone's shape in words, for the metadata.
fn describe(net: &Backbone) -> String {
    match net {
        Backbone::ResNet(r) => format!(
            "ResNet-{} ({:?} stem, width {})",
            r.config.depth, r.config.stem, r.config.width
        ),
        Backbone::Vit(v) => {
            let c = &v.config;
            format!(
                "ViT (width {}, {} blocks, {} heads, patch {}, {:?} pooling, {:?} positions)",
                c.dim, c.depth, c.heads, c.patch, c.pool, c.pos_embed
            )
        }
    }
}

/// The ONNX model of `net`, whose variables `vs` holds under `prefix` (`backbone.` for a
/// run's encoder, `""` for a network built at the store's root).
pub fn model(
    net: &Backbone,
    (vs, prefix): (&VarStore, &str),
    opts: Options,
) -> anyhow::Result<ModelProto> {
    let s = opts.side;
    if let Backbone::Vit(v) = net {
        anyhow::ensure!(
            v.config.image == s,
            "a ViT for {} px images exported for {s} px: its position table fixes the size",
            v.config.image
        );
    }
    let w = Weights::of(vs, prefix);
    let mut g = Graph::default();
    let (input, x) = match opts.with_normalisation {
        true => (
            graph::batched_value(INPUT, DataType::Uint8, &[s, s, 3]),
            normalise(&mut g, INPUT),
        ),
        false => (
            graph::batched_value(INPUT, DataType::Float, &[3, s, s]),
            INPUT.to_string(),
        ),
    };
    let features = tch::no_grad(|| match net {
        Backbone::ResNet(r) => resnet::encoder(&mut g, &r.config, &w, &x),
        Backbone::Vit(v) => vit::encoder(&mut g, &v.config, &w, &x),
    })?;
    g.op("Identity", &[&features], vec![]);
    g.nodes.last_mut().expect("just added").output = vec![OUTPUT.to_string()];
    let output = graph::batched_value(OUTPUT, DataType::Float, &[net.out_dim()]);
    let m = |k: &str, v: String| StringStringEntryProto {
        key: Some(k.into()),
        value: Some(v),
    };
    let list = |v: [f32; 3]| v.map(|x| x.to_string()).join(",");
    let input_words = match opts.with_normalisation {
        true => format!(
            "uint8 [N, {s}, {s}, 3]: RGB, the centred square of the image resized to {s}; the graph divides by 255 and normalises by mean and std"
        ),
        false => format!(
            "float32 [N, 3, {s}, {s}]: RGB / 255 of the centred square of the image resized to {s}, then (x - mean) / std per channel"
        ),
    };
    Ok(ModelProto {
        ir_version: Some(IR_VERSION),
        opset_import: vec![OperatorSetIdProto {
            domain: Some(String::new()),
            version: Some(OPSET),
        }],
        producer_name: Some("selfsup".into()),
        producer_version: Some(env!("CARGO_PKG_VERSION").into()),
        doc_string: Some(format!("the encoder of a selfsup run: {}", describe(net))),
        graph: Some(GraphProto {
            name: Some("encoder".into()),
            node: g.nodes,
            initializer: g.initializers,
            input: vec![input],
            output: vec![output],
            ..Default::default()
        }),
        metadata_props: vec![
            m("input", input_words),
            m("input_size", s.to_string()),
            m("mean", list(CIFAR10_MEAN)),
            m("std", list(CIFAR10_STD)),
            m(
                "output",
                format!(
                    "float32 [N, {}]: the encoder's features, as `selfsup embed` writes them",
                    net.out_dim()
                ),
            ),
            m("backbone", describe(net)),
        ],
        ..Default::default()
    })
}

/// Writes [`model`] to `path` atomically.
pub fn save(
    net: &Backbone,
    weights: (&VarStore, &str),
    opts: Options,
    path: &Path,
) -> anyhow::Result<()> {
    let bytes = model(net, weights, opts)?.encode_to_vec();
    crate::export::write_file(path, &bytes)
}

#[cfg(test)]
mod tests;
