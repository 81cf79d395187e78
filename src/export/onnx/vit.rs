//! A ViT encoder as ONNX nodes, from its config and its weights under timm's names; it mirrors
//! `crate::backbone::vit` and `transformer`:
//!
//! ```text
//! x [N,3,S,S] → Conv(p×p, stride p) [N,D,g,g] → Reshape [N,D,L] → Transpose [N,L,D] + pos[1:]
//! cls + pos[0] [1,1,D] → Expand [N,1,D];  Concat → t [N,1+L,D]
//! per block: t += proj(softmax(q kᵀ/√d_h) v) of LayerNorm₁ t  (heads via Reshape/Transpose)
//!            t += fc₂ GELU(fc₁ LayerNorm₂ t),  GELU(x) = x·(1 + erf(x/√2))/2 (exact, as torch)
//! LayerNorm → the class token (Gather) or the mean of the patch tokens (Slice, ReduceMean)
//! ```

use super::graph::{self, Graph};
use super::Weights;
use crate::backbone::vit::{Pool, VitConfig};

/// timm's LayerNorm ε.
const LN_EPS: f32 = 1e-6;

fn layer_norm(g: &mut Graph, w: &Weights, x: &str, name: &str) -> anyhow::Result<String> {
    let scale = g.weight(&format!("{name}.weight"), w.get(&format!("{name}.weight"))?);
    let bias = g.weight(&format!("{name}.bias"), w.get(&format!("{name}.bias"))?);
    let attrs = vec![graph::int("axis", -1), graph::float("epsilon", LN_EPS)];
    Ok(g.op("LayerNormalization", &[x, &scale, &bias], attrs))
}

fn linear(g: &mut Graph, w: &Weights, x: &str, name: &str) -> anyhow::Result<String> {
    let (wt, b) = (
        w.get(&format!("{name}.weight"))?,
        w.get(&format!("{name}.bias"))?,
    );
    Ok(g.linear(x, wt, b, name))
}

/// Multi-head self-attention of block `p` on `h` [N, T, D] → [N, T, D].
fn attention(
    g: &mut Graph,
    w: &Weights,
    h: &str,
    p: &str,
    cfg: &VitConfig,
) -> anyhow::Result<String> {
    let (t, d, heads) = (1 + cfg.patches(), cfg.dim, cfg.heads);
    let qkv = linear(g, w, h, &format!("{p}.attn.qkv"))?; // [N, T, 3D]
    let shape = g.ints("qkv_shape", &[0, t, 3, heads, d / heads], &[5]);
    let qkv = g.op("Reshape", &[&qkv, &shape], vec![]); // [N, T, 3, H, Dh]
    let qkv = g.op(
        "Transpose",
        &[&qkv],
        vec![graph::ints("perm", &[2, 0, 3, 1, 4])],
    ); // [3, N, H, T, Dh]
    let mut part = |i: i64| {
        let index = g.ints("qkv_index", &[i], &[]);
        g.op("Gather", &[&qkv, &index], vec![graph::int("axis", 0)]) // [N, H, T, Dh]
    };
    let (q, k, v) = (part(0), part(1), part(2));
    let kt = g.op("Transpose", &[&k], vec![graph::ints("perm", &[0, 1, 3, 2])]); // [N, H, Dh, T]
    let scores = g.op("MatMul", &[&q, &kt], vec![]); // [N, H, T, T]
    let scale = g.floats("scale", &[1.0 / ((d / heads) as f32).sqrt()], &[]);
    let scores = g.op("Mul", &[&scores, &scale], vec![]);
    let attn = g.op("Softmax", &[&scores], vec![graph::int("axis", -1)]);
    let out = g.op("MatMul", &[&attn, &v], vec![]); // [N, H, T, Dh]
    let out = g.op(
        "Transpose",
        &[&out],
        vec![graph::ints("perm", &[0, 2, 1, 3])],
    ); // [N, T, H, Dh]
    let shape = g.ints("tokens_shape", &[0, t, d], &[3]);
    let out = g.op("Reshape", &[&out, &shape], vec![]); // [N, T, D]
    linear(g, w, &out, &format!("{p}.attn.proj"))
}

/// Exact GELU, `x · (1 + erf(x / √2)) / 2`.
fn gelu(g: &mut Graph, x: &str) -> String {
    let root2 = g.floats("sqrt2", &[std::f32::consts::SQRT_2], &[]);
    let (one, half) = (g.floats("one", &[1.0], &[]), g.floats("half", &[0.5], &[]));
    let e = g.op("Div", &[x, &root2], vec![]);
    let e = g.op("Erf", &[&e], vec![]);
    let e = g.op("Add", &[&e, &one], vec![]);
    let y = g.op("Mul", &[x, &e], vec![]);
    g.op("Mul", &[&y, &half], vec![])
}

/// The encoder's nodes on input `x` [N, 3, S, S]; returns the features' name ([N, D]).
pub fn encoder(g: &mut Graph, cfg: &VitConfig, w: &Weights, x: &str) -> anyhow::Result<String> {
    let (d, l, p) = (cfg.dim, cfg.patches(), cfg.patch);
    let kernel = g.weight("patch_embed.proj.weight", w.get("patch_embed.proj.weight")?);
    let bias = g.weight("patch_embed.proj.bias", w.get("patch_embed.proj.bias")?);
    let attrs = vec![
        graph::ints("kernel_shape", &[p, p]),
        graph::ints("strides", &[p, p]),
    ];
    let map = g.op("Conv", &[x, &kernel, &bias], attrs); // [N, D, g, g]
    let shape = g.ints("patches_shape", &[0, d, l], &[3]);
    let patches = g.op("Reshape", &[&map, &shape], vec![]); // [N, D, L]
    let patches = g.op(
        "Transpose",
        &[&patches],
        vec![graph::ints("perm", &[0, 2, 1])],
    ); // [N, L, D]
    let pos = w.get("pos_embed")?; // [1, 1 + L, D]
    let pos_patches = g.weight("pos_embed.patches", &pos.narrow(1, 1, l));
    let patches = g.op("Add", &[&patches, &pos_patches], vec![]);
    // the class token with its position, expanded to the batch: shape [N, 1, D] from x's N
    let cls = g.weight(
        "cls_token.with_pos",
        &(w.get("cls_token")? + pos.narrow(1, 0, 1)),
    );
    let x_shape = g.op("Shape", &[x], vec![]);
    let (zero, one) = (g.ints("start", &[0], &[1]), g.ints("end", &[1], &[1]));
    let n = g.op("Slice", &[&x_shape, &zero, &one], vec![]); // [1]: N
    let rest = g.ints("cls_rest", &[1, d], &[2]);
    let cls_shape = g.op("Concat", &[&n, &rest], vec![graph::int("axis", 0)]); // [N, 1, D]
    let cls = g.op("Expand", &[&cls, &cls_shape], vec![]);
    let mut t = g.op("Concat", &[&cls, &patches], vec![graph::int("axis", 1)]); // [N, 1+L, D]
    for i in 0..cfg.depth {
        let b = format!("blocks.{i}");
        let h = layer_norm(g, w, &t, &format!("{b}.norm1"))?;
        let a = attention(g, w, &h, &b, cfg)?;
        t = g.op("Add", &[&t, &a], vec![]);
        let h = layer_norm(g, w, &t, &format!("{b}.norm2"))?;
        let h = linear(g, w, &h, &format!("{b}.mlp.fc1"))?;
        let h = gelu(g, &h);
        let h = linear(g, w, &h, &format!("{b}.mlp.fc2"))?;
        t = g.op("Add", &[&t, &h], vec![]);
    }
    let t = layer_norm(g, w, &t, "norm")?; // [N, 1+L, D]
    Ok(match cfg.pool {
        Pool::Cls => {
            let first = g.ints("cls_index", &[0], &[]);
            g.op("Gather", &[&t, &first], vec![graph::int("axis", 1)]) // [N, D]
        }
        Pool::Mean => {
            let (from, to, axis) = (
                g.ints("from", &[1], &[1]),
                g.ints("to", &[1 + l], &[1]),
                g.ints("axis", &[1], &[1]),
            );
            let patches = g.op("Slice", &[&t, &from, &to, &axis], vec![]); // [N, L, D]
            let attrs = vec![graph::ints("axes", &[1]), graph::int("keepdims", 0)];
            g.op("ReduceMean", &[&patches], attrs) // [N, D]
        }
    })
}
