//! The pre-norm transformer block of timm's ViT (`blocks.N.{norm1, attn, norm2, mlp}`), shared
//! by the ViT encoder, MAE's decoder and CLIP's text tower, with timm's initialisations.

use tch::nn::{self};
use tch::Tensor;

/// A linear layer initialised as timm's ViT does: weights Xavier-uniform, biases 0.
pub fn xavier_linear(p: nn::Path, d_in: i64, d_out: i64) -> nn::Linear {
    let a = (6.0 / (d_in + d_out) as f64).sqrt();
    let c = nn::LinearConfig {
        ws_init: nn::Init::Uniform { lo: -a, up: a },
        bs_init: Some(nn::Init::Const(0.0)),
        bias: true,
    };
    nn::linear(p, d_in, d_out, c)
}

/// LayerNorm with timm's ε 1e-6.
pub fn layer_norm(p: nn::Path, dim: i64) -> nn::LayerNorm {
    let c = nn::LayerNormConfig {
        eps: 1e-6,
        ..Default::default()
    };
    nn::layer_norm(p, vec![dim], c)
}

/// Multi-head self-attention `attn.qkv`, `attn.proj`: [N, T, D] → [N, T, D].
#[derive(Debug)]
pub struct Attention {
    qkv: nn::Linear,
    proj: nn::Linear,
    heads: i64,
}

impl Attention {
    pub fn new(p: &nn::Path, dim: i64, heads: i64) -> Self {
        Attention {
            qkv: xavier_linear(p / "qkv", dim, 3 * dim),
            proj: xavier_linear(p / "proj", dim, dim),
            heads,
        }
    }

    /// `softmax(q kᵀ / √d_h) v` per head, then the output projection.
    pub fn forward(&self, x: &Tensor) -> Tensor {
        self.forward_masked(x, None)
    }

    /// [`forward`](Self::forward) where each token attends only to the keys `keep` allows:
    /// `keep` [N, 1, 1, T] bool, true for a key that may be attended to (a text's tokens, not
    /// its padding); None: every key.
    pub fn forward_masked(&self, x: &Tensor, keep: Option<&Tensor>) -> Tensor {
        // N is written -1, never the traced batch's size: a TorchScript export traced on 2 images
        // must run on any number (T and D are fixed by the image size and the model).
        let (_n, t, d) = x.size3().expect("tokens are [N, T, D]");
        let qkv = x
            .apply(&self.qkv) // [N, T, 3D]
            .view([-1, t, 3, self.heads, d / self.heads])
            .permute([2, 0, 3, 1, 4]); // [3, N, H, T, D/H]
        let (q, k, v) = (qkv.get(0), qkv.get(1), qkv.get(2));
        Tensor::scaled_dot_product_attention(&q, &k, &v, keep, 0.0, false, None, false) // [N, H, T, D/H]
            .transpose(1, 2)
            .reshape([-1, t, d])
            .apply(&self.proj)
    }
}

/// One pre-norm transformer block (`norm1`, `attn`, `norm2`, `mlp.fc1`, `mlp.fc2`).
#[derive(Debug)]
pub struct Block {
    norm1: nn::LayerNorm,
    attn: Attention,
    norm2: nn::LayerNorm,
    fc1: nn::Linear,
    fc2: nn::Linear,
}

impl Block {
    pub fn new(p: &nn::Path, dim: i64, heads: i64, mlp_ratio: f64) -> Self {
        let hidden = (dim as f64 * mlp_ratio).round() as i64;
        Block {
            norm1: layer_norm(p / "norm1", dim),
            attn: Attention::new(&(p / "attn"), dim, heads),
            norm2: layer_norm(p / "norm2", dim),
            fc1: xavier_linear(p / "mlp" / "fc1", dim, hidden),
            fc2: xavier_linear(p / "mlp" / "fc2", hidden, dim),
        }
    }

    /// [N, T, D] → [N, T, D]: `x + Attn(LN₁ x)`, then `x + fc₂ GELU(fc₁ LN₂ x)`.
    pub fn forward(&self, x: &Tensor) -> Tensor {
        self.forward_masked(x, None)
    }

    /// [`forward`](Self::forward) with the attention restricted by `keep` [N, 1, 1, T]
    /// ([`Attention::forward_masked`]).
    pub fn forward_masked(&self, x: &Tensor, keep: Option<&Tensor>) -> Tensor {
        let x = x + self.attn.forward_masked(&x.apply(&self.norm1), keep);
        let h = x.apply(&self.norm2).apply(&self.fc1).gelu("none");
        x + h.apply(&self.fc2)
    }
}
