//! The exported graphs' structure, read back from their bytes: every node's inputs are
//! defined before use, the input and output carry the dynamic batch, the weights are the
//! network's. (Their numbers against `selfsup embed` are checked by ONNX Runtime:
//! `scripts/check_onnx.py`, run by `tests/onnx.rs`.)

use super::*;
use crate::backbone::vit::{Pool, PosEmbed};
use crate::backbone::{BackboneConfig, ResNetConfig, Stem, VitConfig};
use std::collections::HashSet;

fn exported(
    config: &BackboneConfig,
    side: i64,
    with_normalisation: bool,
) -> (ModelProto, VarStore) {
    let vs = VarStore::new(tch::Device::Cpu);
    let net = Backbone::new(&(vs.root() / "backbone"), config).unwrap();
    let opts = Options {
        side,
        with_normalisation,
    };
    let m = model(&net, (&vs, "backbone."), opts).unwrap();
    // what a reader gets: the encoded bytes decoded
    (
        ModelProto::decode(m.encode_to_vec().as_slice()).unwrap(),
        vs,
    )
}

/// The dimensions of a graph input or output: `Err(name)` for a named (dynamic) one.
fn dims(v: &proto::ValueInfoProto) -> Vec<Result<i64, String>> {
    use proto::tensor_shape_proto::dimension::Value;
    let Some(proto::type_proto::Value::TensorType(t)) = &v.r#type.as_ref().unwrap().value else {
        panic!("a tensor")
    };
    t.shape
        .as_ref()
        .unwrap()
        .dim
        .iter()
        .map(|d| match d.value.as_ref().unwrap() {
            Value::DimValue(n) => Ok(*n),
            Value::DimParam(s) => Err(s.clone()),
        })
        .collect()
}

/// Every node reads only the graph's input, initializers and earlier nodes' outputs (ONNX's
/// topological order), and the graph's output is produced.
fn assert_well_formed(m: &ModelProto) {
    let g = m.graph.as_ref().unwrap();
    let mut known: HashSet<&str> = g.initializer.iter().map(|t| t.name()).collect();
    known.insert(INPUT);
    for n in &g.node {
        for i in &n.input {
            assert!(
                known.contains(i.as_str()),
                "{} reads {i} before it exists",
                n.name()
            );
        }
        known.extend(n.output.iter().map(String::as_str));
    }
    assert!(known.contains(OUTPUT));
    assert_eq!(m.opset_import[0].version(), OPSET);
    assert_eq!(m.ir_version(), IR_VERSION);
}

fn ops(m: &ModelProto) -> Vec<&str> {
    m.graph
        .as_ref()
        .unwrap()
        .node
        .iter()
        .map(|n| n.op_type())
        .collect()
}

#[test]
fn a_resnet_becomes_conv_batchnorm_relu_with_a_dynamic_batch_and_its_weights() {
    let cfg = BackboneConfig::ResNet(ResNetConfig {
        depth: 18,
        stem: Stem::Cifar,
        width: 0.125,
    });
    let (m, vs) = exported(&cfg, 16, false);
    assert_well_formed(&m);
    let g = m.graph.as_ref().unwrap();
    assert_eq!(dims(&g.input[0]), [Err("N".into()), Ok(3), Ok(16), Ok(16)]);
    assert_eq!(dims(&g.output[0]), [Err("N".into()), Ok(64)]);
    let ops = ops(&m);
    // 20 convolutions (17 + 3 shortcuts), each with its BatchNorm; no max-pool in the CIFAR stem
    assert_eq!(ops.iter().filter(|o| **o == "Conv").count(), 20);
    assert_eq!(
        ops.iter().filter(|o| **o == "BatchNormalization").count(),
        20
    );
    assert!(!ops.contains(&"MaxPool"));
    // every encoder variable is an initializer, with its values
    let inits: HashMap<&str, &proto::TensorProto> =
        g.initializer.iter().map(|t| (t.name(), t)).collect();
    let vars = vs.variables();
    assert_eq!(inits.len(), vars.len());
    let w = &vars["backbone.layer2.0.conv1.weight"];
    let t = inits["layer2.0.conv1.weight"];
    assert_eq!(t.dims, w.size());
    let first = f32::from_le_bytes(t.raw_data()[..4].try_into().unwrap());
    assert_eq!(first, w.flatten(0, -1).double_value(&[0]) as f32);
    let meta: HashMap<&str, &str> = m
        .metadata_props
        .iter()
        .map(|p| (p.key(), p.value()))
        .collect();
    assert_eq!(meta["input_size"], "16");
    assert_eq!(meta["mean"], "0.4914,0.4822,0.4465");
    assert!(
        meta["input"].starts_with("float32 [N, 3, 16, 16]"),
        "{}",
        meta["input"]
    );
}

#[test]
fn the_imagenet_stem_pools_and_normalisation_inside_takes_uint8_pixels() {
    let cfg = BackboneConfig::ResNet(ResNetConfig {
        depth: 50,
        stem: Stem::Imagenet,
        width: 0.125,
    });
    let (m, _) = exported(&cfg, 32, true);
    assert_well_formed(&m);
    let g = m.graph.as_ref().unwrap();
    let Some(proto::type_proto::Value::TensorType(t)) = &g.input[0].r#type.as_ref().unwrap().value
    else {
        panic!("a tensor")
    };
    assert_eq!(t.elem_type(), DataType::Uint8 as i32);
    assert_eq!(dims(&g.input[0]), [Err("N".into()), Ok(32), Ok(32), Ok(3)]);
    assert_eq!(dims(&g.output[0]), [Err("N".into()), Ok(256)]);
    let ops = ops(&m);
    assert_eq!(&ops[..5], ["Cast", "Div", "Sub", "Div", "Transpose"]);
    assert!(ops.contains(&"MaxPool"));
    assert_eq!(ops.iter().filter(|o| **o == "Conv").count(), 53);
}

/// Width 16, 2 blocks of 2 heads, 4-px patches of 16-px images.
fn small_vit(pool: Pool, pos_embed: PosEmbed) -> VitConfig {
    VitConfig {
        dim: 16,
        depth: 2,
        heads: 2,
        patch: 4,
        image: 16,
        mlp_ratio: 4.0,
        pos_embed,
        pool,
    }
}

#[test]
fn a_vit_exports_either_pooling_and_refuses_another_image_size() {
    for (pool, pos) in [
        (Pool::Cls, PosEmbed::Sincos),
        (Pool::Mean, PosEmbed::Learned),
    ] {
        let cfg = BackboneConfig::Vit(small_vit(pool, pos));
        let (m, _) = exported(&cfg, 16, false);
        assert_well_formed(&m);
        let ops = ops(&m);
        assert_eq!(
            ops.iter().filter(|o| **o == "LayerNormalization").count(),
            5
        );
        assert_eq!(ops.iter().filter(|o| **o == "Erf").count(), 2);
        assert_eq!(ops.contains(&"ReduceMean"), pool == Pool::Mean, "{pool:?}");
        assert_eq!(
            dims(&m.graph.as_ref().unwrap().output[0]),
            [Err("N".into()), Ok(16)]
        );
    }
    let vs = VarStore::new(tch::Device::Cpu);
    let cfg = BackboneConfig::Vit(small_vit(Pool::Cls, PosEmbed::Sincos));
    let net = Backbone::new(&(vs.root() / "backbone"), &cfg).unwrap();
    let opts = Options {
        side: 32,
        with_normalisation: false,
    };
    let e = model(&net, (&vs, "backbone."), opts)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("a ViT for 16 px images exported for 32 px"),
        "{e}"
    );
}
