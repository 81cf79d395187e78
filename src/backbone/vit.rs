//! Vision Transformer (Dosovitskiy et al. 2020, arXiv:2010.11929) for small images: a patch
//! embedding (a p×p stride-p convolution), a class token, position embeddings (learned, or
//! MAE's fixed 2-D sin-cos), pre-norm blocks `x + Attn(LN(x))`, `x + MLP(LN(x))`, a final
//! LayerNorm; the representation is the class token (or the mean of the patch tokens).
//!
//! Parameter names follow timm's `VisionTransformer` (`patch_embed.proj.weight`, `cls_token`,
//! `pos_embed`, `blocks.0.norm1.weight`, `blocks.0.attn.qkv.weight`, `blocks.0.attn.proj.bias`,
//! `blocks.0.mlp.fc1.weight`, `norm.weight`, …), so weights open in timm with
//! `vit_tiny_patch16_224`-style models built at `img_size=32, patch_size=4`.

pub use super::transformer::{layer_norm, xavier_linear, Attention, Block};
use super::Layer;
use crate::error::SettingError;
use serde::{Deserialize, Serialize};
use tch::nn::{self, ModuleT};
use tch::{Kind, Tensor};

/// How the tokens learn where they are.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum PosEmbed {
    /// Fixed 2-D sin-cos embeddings (MAE, §A.1), stored as a non-trainable `pos_embed`.
    #[default]
    Sincos,
    /// Trained embeddings, initialised N(0, 0.02²) (ViT, DeiT, DINO).
    Learned,
}

/// Which tokens make the representation h.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Pool {
    /// The class token after the final norm (timm's `global_pool="token"`; DINO).
    #[default]
    Cls,
    /// The mean of the patch tokens after the final norm (MAE's fine-tuning head).
    Mean,
}

/// A ViT's shape.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct VitConfig {
    /// Token width D.
    pub dim: i64,
    /// Transformer blocks.
    pub depth: usize,
    /// Attention heads (D divisible by it).
    pub heads: i64,
    /// Patch side p in pixels (4 for 32 px images: 8×8 = 64 tokens).
    pub patch: i64,
    /// Side of the square input images S (a multiple of p).
    pub image: i64,
    /// Hidden width of each MLP as a multiple of D (4 in ViT).
    pub mlp_ratio: f64,
    pub pos_embed: PosEmbed,
    pub pool: Pool,
}

impl VitConfig {
    /// ViT-Tiny (DeiT-Ti): D 192, 12 blocks, 3 heads; 5.35 M parameters at p = 4, S = 32.
    pub fn tiny(patch: i64, image: i64) -> Self {
        Self::preset(192, 3, patch, image)
    }

    /// ViT-Small (DeiT-S): D 384, 12 blocks, 6 heads; 21.31 M parameters at p = 4, S = 32.
    pub fn small(patch: i64, image: i64) -> Self {
        Self::preset(384, 6, patch, image)
    }

    fn preset(dim: i64, heads: i64, patch: i64, image: i64) -> Self {
        VitConfig {
            dim,
            depth: 12,
            heads,
            patch,
            image,
            mlp_ratio: 4.0,
            pos_embed: PosEmbed::default(),
            pool: Pool::default(),
        }
    }

    /// Patches per side, S / p.
    pub fn grid(&self) -> i64 {
        self.image / self.patch.max(1)
    }

    /// Patch tokens L = (S / p)².
    pub fn patches(&self) -> i64 {
        self.grid() * self.grid()
    }

    /// Checks the shape; the message names the setting.
    pub fn validate(&self) -> Result<(), SettingError> {
        if self.patch < 1 || self.image < self.patch || self.image % self.patch != 0 {
            return Err(format!(
                "model.patch_size is {} but the crop size is {} px: the crop must be a multiple of the \
                 patch size (e.g. --crop-size 32 with patch size 4)",
                self.patch, self.image
            ).into());
        }
        if self.dim < 4 || self.dim % self.heads.max(1) != 0 || self.dim % 4 != 0 {
            return Err(format!(
                "a ViT of width {} with {} heads: the width must be a multiple of 4 and of the heads",
                self.dim, self.heads
            ).into());
        }
        if self.depth == 0 {
            return Err("a ViT needs at least one block".into());
        }
        Ok(())
    }

    /// Blocks run before the representation of `layer` is read: `layer4` all of them, `layerN`
    /// the first N/4 (rounded), so that `--layer` means "a quarter, half, three quarters of the
    /// way" as it does for the ResNet's stages.
    pub fn blocks_up_to(&self, layer: Layer) -> usize {
        ((self.depth * (layer.index() + 1)) as f64 / 4.0)
            .round()
            .max(1.0) as usize
    }
}

/// MAE's fixed 2-D sin-cos position embeddings for a `grid`×`grid` of tokens: [grid², dim],
/// row-major; the first half of each row encodes the token's column, the second its row, each
/// as `[sin(pos·ω_k), cos(pos·ω_k)]` with `ω_k = 10000^(−k/(dim/4))`, k < dim/4.
pub fn sincos_2d(dim: i64, grid: i64) -> Tensor {
    let quarter = dim / 4;
    let mut out = vec![0f32; (grid * grid * dim) as usize];
    for r in 0..grid {
        for c in 0..grid {
            let row = &mut out[((r * grid + c) * dim) as usize..][..dim as usize];
            for (half, pos) in [(0, c), (1, r)] {
                for k in 0..quarter {
                    let omega = 10000f64.powf(-(k as f64) / quarter as f64);
                    let a = pos as f64 * omega;
                    row[(half * 2 * quarter + k) as usize] = a.sin() as f32;
                    row[(half * 2 * quarter + quarter + k) as usize] = a.cos() as f32;
                }
            }
        }
    }
    Tensor::from_slice(&out).view([grid * grid, dim])
}

/// Patches of images as rows: [N, 3, S, S] → [N, L, p²·3] (row-major patches, each `(i, j, c)`
/// pixel-major as MAE's `patchify`).
pub fn patchify(x: &Tensor, p: i64) -> Tensor {
    let (n, c, h, w) = x.size4().expect("images are [N, C, H, W]");
    let (gh, gw) = (h / p, w / p);
    x.reshape([n, c, gh, p, gw, p])
        .permute([0, 2, 4, 3, 5, 1]) // [N, gh, gw, p, p, C]
        .reshape([n, gh * gw, p * p * c])
}

/// The inverse of [`patchify`]: [N, L, p²·3] → [N, 3, √L·p, √L·p].
pub fn unpatchify(x: &Tensor, p: i64) -> Tensor {
    let (n, l, e) = x.size3().expect("patches are [N, L, p²C]");
    let g = (l as f64).sqrt().round() as i64;
    let c = e / (p * p);
    x.reshape([n, g, g, p, p, c])
        .permute([0, 5, 1, 3, 2, 4]) // [N, C, g, p, g, p]
        .reshape([n, c, g * p, g * p])
}

/// A ViT encoder: `forward_t` maps [N, 3, S, S] → [N, D].
#[derive(Debug)]
pub struct Vit {
    pub config: VitConfig,
    patch_proj: nn::Conv2D,
    cls_token: Tensor,
    /// [1, 1 + L, D]: the class token's position first.
    pos_embed: Tensor,
    blocks: Vec<Block>,
    norm: nn::LayerNorm,
}

impl Vit {
    /// Where the weights live.
    pub fn device(&self) -> tch::Device {
        self.cls_token.device()
    }

    /// The class token and the position embeddings: not weight-decayed.
    pub fn no_decay(&self) -> Vec<Tensor> {
        vec![
            self.cls_token.shallow_clone(),
            self.pos_embed.shallow_clone(),
        ]
    }

    /// Creates the variables under `p` (timm's names).
    pub fn new(p: &nn::Path, config: &VitConfig) -> Result<Self, SettingError> {
        config.validate()?;
        let (d, patch, l) = (config.dim, config.patch, config.patches());
        let fan = 3 * patch * patch;
        let a = (6.0 / (fan + d) as f64).sqrt(); // MAE: Xavier on the flattened kernel
        let conv = nn::ConvConfig {
            stride: patch,
            ws_init: nn::Init::Uniform { lo: -a, up: a },
            bs_init: nn::Init::Const(0.0),
            ..Default::default()
        };
        let patch_proj = nn::conv2d(p / "patch_embed" / "proj", 3, d, patch, conv);
        let normal = nn::Init::Randn {
            mean: 0.0,
            stdev: 0.02,
        };
        let cls_token = p.var("cls_token", &[1, 1, d], normal);
        let pos_embed = match config.pos_embed {
            PosEmbed::Learned => p.var("pos_embed", &[1, 1 + l, d], normal),
            PosEmbed::Sincos => {
                let mut t = p.zeros_no_train("pos_embed", &[1, 1 + l, d]);
                let table = Tensor::cat(
                    &[
                        Tensor::zeros([1, d], (Kind::Float, p.device())),
                        sincos_2d(d, config.grid()).to_device(p.device()),
                    ],
                    0,
                );
                tch::no_grad(|| t.copy_(&table.unsqueeze(0)));
                t
            }
        };
        let blocks = (0..config.depth)
            .map(|i| Block::new(&(p / "blocks" / i), d, config.heads, config.mlp_ratio))
            .collect();
        Ok(Vit {
            config: config.clone(),
            patch_proj,
            cls_token,
            pos_embed,
            blocks,
            norm: layer_norm(p / "norm", d),
        })
    }

    pub fn out_dim(&self) -> i64 {
        self.config.dim
    }

    /// Patch tokens with their position embeddings: [N, 3, S', S'] → [N, L', D]. Inputs of
    /// another size than the configured S (multi-crop's small views) get the position table
    /// resized bilinearly to their grid (DINO's `interpolate_pos_encoding`).
    pub fn embed_patches(&self, x: &Tensor) -> Tensor {
        let map = x.apply(&self.patch_proj); // [N, D, g', g']
        let (gh, gw) = (map.size()[2], map.size()[3]);
        let t = map.flatten(2, 3).transpose(1, 2); // [N, L', D]
        let (g, d) = (self.config.grid(), self.config.dim);
        let pos = self.pos_embed.narrow(1, 1, self.config.patches()); // [1, L, D]
        if (gh, gw) == (g, g) {
            return t + pos;
        }
        let grid = pos.transpose(1, 2).reshape([1, d, g, g]);
        let resized = grid.upsample_bilinear2d([gh, gw], false, None, None); // [1, D, g', g']
        t + resized.flatten(2, 3).transpose(1, 2)
    }

    /// Patch tokens of images at the configured size with the patches under `mask` [N, L]
    /// (1 = hidden) replaced by `token` [1, 1, D] before the position embeddings are added
    /// (masked image modelling: SimMIM's and BEiT's / iBOT's `mask_token`): [N, L, D].
    /// `(t + pos)(1 − m) + (token + pos)·m = t(1 − m) + token·m + pos`.
    pub fn embed_patches_masked(&self, x: &Tensor, mask: &Tensor, token: &Tensor) -> Tensor {
        let w = mask.unsqueeze(-1).to_kind(Kind::Float); // [N, L, 1]
        let pos = self.pos_embed.narrow(1, 1, self.config.patches()); // [1, L, D]
        self.embed_patches(x) * (1.0 - &w) + (token + pos) * w
    }

    /// The class token with its position embedding, for `n` images: [n, 1, D].
    pub fn class_token(&self, n: i64) -> Tensor {
        (&self.cls_token + self.pos_embed.narrow(1, 0, 1)).expand([n, 1, self.config.dim], false)
    }

    /// The first `blocks` blocks and the final norm over tokens [N, T, D] → [N, T, D].
    /// In the training step's precision ([`crate::precision::autocast`]).
    pub fn encode_tokens(&self, tokens: &Tensor, blocks: usize) -> Tensor {
        crate::precision::autocast(|| {
            let mut x = tokens.shallow_clone();
            for b in &self.blocks[..blocks.min(self.blocks.len())] {
                x = b.forward(&x);
            }
            x.apply(&self.norm)
        })
    }

    /// The class token put before patch tokens [N, L', D] → [N, 1 + L', D]. The token is
    /// expanded to the patches' batch (`expand_as`), not to a number: a traced module then keeps
    /// N free instead of the example's batch size.
    pub fn prepend_class_token(&self, patches: &Tensor) -> Tensor {
        let cls = &self.cls_token + self.pos_embed.narrow(1, 0, 1); // [1, 1, D]
        Tensor::cat(
            &[
                cls.expand_as(&patches.narrow(1, 0, 1)),
                patches.shallow_clone(),
            ],
            1,
        )
    }

    /// Class token and every patch token after all blocks: [N, 3, S, S] → [N, 1 + L, D].
    pub fn tokens(&self, x: &Tensor) -> Tensor {
        let t = self.prepend_class_token(&self.embed_patches(x));
        self.encode_tokens(&t, self.blocks.len())
    }

    /// The representation read `layer` of the way through (see [`VitConfig::blocks_up_to`]):
    /// [N, 3, S, S] → [N, D].
    pub fn features_at(&self, x: &Tensor, layer: Layer) -> Tensor {
        let t = self.prepend_class_token(&self.embed_patches(x));
        let t = self.encode_tokens(&t, self.config.blocks_up_to(layer)); // [N, 1 + L, D]
        self.pool(&t)
    }

    /// h from the encoded tokens [N, 1 + L, D] → [N, D].
    pub fn pool(&self, tokens: &Tensor) -> Tensor {
        match self.config.pool {
            Pool::Cls => tokens.select(1, 0),
            Pool::Mean => tokens
                .narrow(1, 1, tokens.size()[1] - 1)
                .mean_dim(1, false, None),
        }
    }
}

impl ModuleT for Vit {
    /// [N, 3, S, S] → [N, D] (no dropout: `train` changes nothing).
    fn forward_t(&self, x: &Tensor, _train: bool) -> Tensor {
        self.features_at(x, Layer::Layer4)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::Device;

    fn params(vs: &nn::VarStore) -> i64 {
        vs.trainable_variables()
            .iter()
            .map(|t| t.numel() as i64)
            .sum()
    }

    #[test]
    fn presets_have_timm_names_shapes_and_parameter_counts() {
        for (cfg, count) in [
            (VitConfig::tiny(4, 32), 5_348_352),
            (VitConfig::small(4, 32), 21_313_536),
        ] {
            let vs = nn::VarStore::new(Device::Cpu);
            let net = Vit::new(&vs.root(), &cfg).unwrap();
            let x = Tensor::randn([2, 3, 32, 32], (Kind::Float, Device::Cpu));
            assert_eq!(net.forward_t(&x, false).size(), vec![2, cfg.dim]);
            assert_eq!(net.tokens(&x).size(), vec![2, 65, cfg.dim]);
            let v = vs.variables();
            for name in [
                "patch_embed.proj.weight",
                "patch_embed.proj.bias",
                "cls_token",
                "pos_embed",
                "blocks.0.norm1.weight",
                "blocks.0.attn.qkv.weight",
                "blocks.0.attn.qkv.bias",
                "blocks.11.attn.proj.weight",
                "blocks.11.mlp.fc1.weight",
                "blocks.11.mlp.fc2.bias",
                "blocks.5.norm2.bias",
                "norm.weight",
                "norm.bias",
            ] {
                assert!(v.contains_key(name), "{name}");
            }
            assert_eq!(
                v["blocks.0.attn.qkv.weight"].size(),
                vec![3 * cfg.dim, cfg.dim]
            );
            assert_eq!(v["pos_embed"].size(), vec![1, 65, cfg.dim]);
            // sin-cos position embeddings are fixed: not counted, not trained
            assert!(!v["pos_embed"].requires_grad());
            assert_eq!(params(&vs), count);
        }
    }

    #[test]
    fn learned_position_embeddings_train_and_mean_pooling_differs() {
        let mut cfg = VitConfig::tiny(8, 32);
        cfg.depth = 2;
        cfg.pos_embed = PosEmbed::Learned;
        let vs = nn::VarStore::new(Device::Cpu);
        let net = Vit::new(&vs.root(), &cfg).unwrap();
        assert!(vs.variables()["pos_embed"].requires_grad());
        let x = Tensor::randn([3, 3, 32, 32], (Kind::Float, Device::Cpu));
        let cls = net.forward_t(&x, true);
        cfg.pool = Pool::Mean;
        let mean_net = Vit { config: cfg, ..net };
        let mean = mean_net.forward_t(&x, true);
        assert_eq!(mean.size(), cls.size());
        assert!(!mean.allclose(&cls, 1e-4, 1e-4, false));
        // a smaller input (a multi-crop view) gets the position table resized to its grid
        let small = Tensor::randn([3, 3, 16, 16], (Kind::Float, Device::Cpu));
        assert_eq!(mean_net.forward_t(&small, true).size(), vec![3, 192]);
        // a quarter of the way is the first block of two (rounded, at least one)
        assert_eq!(mean_net.config.blocks_up_to(Layer::Layer1), 1);
        assert_eq!(VitConfig::tiny(4, 32).blocks_up_to(Layer::Layer2), 6);
    }

    #[test]
    fn patchify_round_trips_and_orders_pixels_like_mae() {
        let x = Tensor::randn([2, 3, 8, 8], (Kind::Float, Device::Cpu));
        let p = patchify(&x, 4);
        assert_eq!(p.size(), vec![2, 4, 48]);
        assert!(unpatchify(&p, 4).equal(&x));
        // patch 1 (row 0, column 1), its pixel (0, 1), channel 2
        let want = x.double_value(&[0, 2, 0, 5]);
        assert_eq!(p.double_value(&[0, 1, 3 + 2]), want);
    }

    #[test]
    fn sincos_rows_differ_and_bad_shapes_are_named() {
        let t = sincos_2d(8, 3);
        assert_eq!(t.size(), vec![9, 8]);
        // position (0, 0): sin 0 = 0 and cos 0 = 1 in both halves
        assert_eq!(
            Vec::<f32>::try_from(t.get(0)).unwrap(),
            vec![0., 0., 1., 1., 0., 0., 1., 1.]
        );
        assert!(!t.get(1).allclose(&t.get(3), 1e-6, 1e-6, false));
        let e = VitConfig::tiny(5, 32).validate().unwrap_err().to_string();
        assert!(e.contains("patch_size is 5") && e.contains("32"), "{e}");
    }
}
