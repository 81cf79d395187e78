//! An MLP built from a list of blocks, each `Linear → [BatchNorm1d] → [ReLU]`
//! (the shape of lightly's `ProjectionHead`; LayerNorm for BatchNorm with
//! `model.head_norm = "layer"`, [`super::norm`]).

use super::HeadNorm;
use crate::error::SettingError;
use tch::nn::{self, Module, ModuleT};
use tch::Tensor;

/// One `Linear(in_dim, out_dim) → [BatchNorm1d] → [ReLU]` block.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Block {
    pub in_dim: i64,
    pub out_dim: i64,
    pub batch_norm: bool,
    pub relu: bool,
}

impl Block {
    pub fn new(in_dim: i64, out_dim: i64, batch_norm: bool, relu: bool) -> Self {
        Block {
            in_dim,
            out_dim,
            batch_norm,
            relu,
        }
    }
}

/// The normalisation of a block.
#[derive(Debug)]
enum Norm {
    Batch(nn::BatchNorm),
    Layer(nn::LayerNorm),
}

/// A stack of [`Block`]s; variables are named `layers.<i>.linear.*` and `layers.<i>.bn.*`
/// (`layers.<i>.ln.*` for LayerNorm).
#[derive(Debug)]
pub struct Mlp {
    layers: Vec<(nn::Linear, Option<Norm>, bool)>,
    out_dim: i64,
}

impl Mlp {
    /// Builds the blocks under `p`; consecutive blocks must chain (`out_dim` → next `in_dim`).
    /// A block's `batch_norm` is the normalisation of the build ([`super::norm::current`]).
    pub fn new(p: &nn::Path, blocks: &[Block]) -> Result<Self, SettingError> {
        if blocks.is_empty() {
            return Err("an MLP needs at least one block".into());
        }
        for (i, w) in blocks.windows(2).enumerate() {
            if w[0].out_dim != w[1].in_dim {
                return Err(format!(
                    "MLP block {i} outputs {} features but block {} expects {}",
                    w[0].out_dim,
                    i + 1,
                    w[1].in_dim
                )
                .into());
            }
        }
        if let Some(b) = blocks.iter().find(|b| b.in_dim < 1 || b.out_dim < 1) {
            return Err(format!(
                "MLP block dimensions must be ≥ 1, got {} → {}",
                b.in_dim, b.out_dim
            )
            .into());
        }
        let layers = blocks
            .iter()
            .enumerate()
            .map(|(i, b)| {
                let lp = p / "layers" / i;
                // A bias before BatchNorm is redundant; SimCLR's head keeps it, so we do too.
                let lin = nn::linear(&lp / "linear", b.in_dim, b.out_dim, Default::default());
                let bn = b.batch_norm.then(|| match super::norm::current() {
                    HeadNorm::Batch => {
                        Norm::Batch(nn::batch_norm1d(&lp / "bn", b.out_dim, Default::default()))
                    }
                    HeadNorm::Layer => Norm::Layer(nn::layer_norm(
                        &lp / "ln",
                        vec![b.out_dim],
                        Default::default(),
                    )),
                });
                (lin, bn, b.relu)
            })
            .collect();
        Ok(Mlp {
            layers,
            out_dim: blocks.last().unwrap().out_dim,
        })
    }

    /// SimCLR's projection head g: "a MLP with one hidden layer … W(2)σ(W(1)h)" (Chen et al.
    /// 2020, §2.1), with BatchNorm after the hidden layer as in SimCLR v2 / lightly:
    /// `Linear(in, hidden) → BN → ReLU → Linear(hidden, out)`.
    pub fn simclr_projection(
        p: &nn::Path,
        in_dim: i64,
        hidden: i64,
        out: i64,
    ) -> Result<Self, SettingError> {
        Mlp::new(
            p,
            &[
                Block::new(in_dim, hidden, true, true),
                Block::new(hidden, out, false, false),
            ],
        )
    }

    /// Barlow Twins' (§4, Table 14) and VICReg's (§4.3) wide 3-layer projector:
    /// `Linear(in, h) → BN → ReLU → Linear(h, h) → BN → ReLU → Linear(h, h)`.
    pub fn wide_projector(p: &nn::Path, in_dim: i64, h: i64) -> Result<Self, SettingError> {
        Mlp::new(
            p,
            &[
                Block::new(in_dim, h, true, true),
                Block::new(h, h, true, true),
                Block::new(h, h, false, false),
            ],
        )
    }

    pub fn out_dim(&self) -> i64 {
        self.out_dim
    }
}

impl ModuleT for Mlp {
    /// [N, in_dim] → [N, out_dim]
    /// In the training step's precision ([`crate::precision::autocast`]), fp32 out.
    fn forward_t(&self, x: &Tensor, train: bool) -> Tensor {
        crate::precision::autocast(|| {
            let mut y = x.shallow_clone();
            for (lin, bn, relu) in &self.layers {
                y = lin.forward(&y);
                match bn {
                    Some(Norm::Batch(bn)) => y = y.apply_t(bn, train),
                    Some(Norm::Layer(ln)) => y = y.apply(ln),
                    None => {}
                }
                if *relu {
                    y = y.relu();
                }
            }
            y
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::{Device, Kind};

    #[test]
    fn simclr_projection_shapes_and_names() {
        let vs = nn::VarStore::new(Device::Cpu);
        let head = Mlp::simclr_projection(&(vs.root() / "projection"), 32, 16, 8).unwrap();
        let y = head.forward_t(&Tensor::randn([4, 32], (Kind::Float, Device::Cpu)), true);
        assert_eq!(y.size(), vec![4, 8]);
        let v = vs.variables();
        assert_eq!(v["projection.layers.0.linear.weight"].size(), vec![16, 32]);
        assert!(v.contains_key("projection.layers.0.bn.running_mean"));
        assert!(!v.contains_key("projection.layers.1.bn.weight"));
    }

    #[test]
    fn relu_only_where_asked() {
        let vs = nn::VarStore::new(Device::Cpu);
        let relu = Mlp::new(&vs.root(), &[Block::new(3, 5, false, true)]).unwrap();
        let y = relu.forward_t(&Tensor::randn([64, 3], (Kind::Float, Device::Cpu)), false);
        assert!(y.min().double_value(&[]) >= 0.0);
        let lin = Mlp::new(&(vs.root() / "b"), &[Block::new(3, 5, false, false)]).unwrap();
        let y = lin.forward_t(&Tensor::randn([64, 3], (Kind::Float, Device::Cpu)), false);
        assert!(y.min().double_value(&[]) < 0.0);
    }

    #[test]
    fn blocks_must_chain() {
        let vs = nn::VarStore::new(Device::Cpu);
        let e = Mlp::new(
            &vs.root(),
            &[Block::new(3, 5, true, true), Block::new(4, 2, false, false)],
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("5") && e.contains("4"), "{e}");
        assert!(Mlp::new(&vs.root(), &[]).is_err());
    }
}
