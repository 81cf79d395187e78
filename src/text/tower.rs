//! Text towers: token ids [N, L] (0 = padding) → one feature row per text [N, W].
//!
//! - **transformer**: token + learned position embeddings, pre-norm transformer blocks
//!   ([`crate::backbone::vit::Block`]) whose attention skips the padding, a final LayerNorm,
//!   then the mean over the text's tokens. CLIP's text tower is this with a causal mask and the
//!   end token's feature; without a language-modelling head here, the mean of every token
//!   attending to every other is the simpler choice.
//! - **bag**: the mean of the tokens' embeddings (order ignored), LayerNorm, a GELU MLP layer.
//!   Cheaper, but "red circle, blue square" and "blue circle, red square" are the same bag.

use crate::backbone::vit::{layer_norm, xavier_linear, Block};
use serde::{Deserialize, Serialize};
use tch::{nn, Kind, Tensor};

/// Which text tower.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TextTowerKind {
    Transformer,
    Bag,
}

/// A text tower `text.*`.
#[derive(Debug)]
pub struct TextTower {
    kind: TextTowerKind,
    tokens: nn::Embedding,
    positions: Option<Tensor>,
    blocks: Vec<Block>,
    norm: nn::LayerNorm,
    fc: Option<nn::Linear>,
    width: i64,
}

impl TextTower {
    /// A tower over `vocab` ids with `width`-wide features; the transformer has `layers` blocks
    /// of `heads` heads over at most `context_length` tokens.
    pub fn new(
        p: &nn::Path,
        kind: TextTowerKind,
        vocab: i64,
        context_length: i64,
        width: i64,
        layers: usize,
        heads: i64,
    ) -> Self {
        let emb = nn::EmbeddingConfig {
            ws_init: nn::Init::Randn {
                mean: 0.0,
                stdev: 0.02,
            },
            ..Default::default()
        };
        let tokens = nn::embedding(p / "token_embedding", vocab, width, emb);
        let transformer = kind == TextTowerKind::Transformer;
        TextTower {
            kind,
            tokens,
            positions: transformer.then(|| {
                p.var(
                    "positional_embedding",
                    &[context_length, width],
                    nn::Init::Randn {
                        mean: 0.0,
                        stdev: 0.01,
                    },
                )
            }),
            blocks: match transformer {
                true => (0..layers)
                    .map(|i| Block::new(&(p / "blocks" / i), width, heads, 4.0))
                    .collect(),
                false => Vec::new(),
            },
            norm: layer_norm(p / "ln_final", width),
            fc: (!transformer).then(|| xavier_linear(p / "fc", width, width)),
            width,
        }
    }

    /// Feature width W.
    pub fn out_dim(&self) -> i64 {
        self.width
    }

    pub fn kind(&self) -> TextTowerKind {
        self.kind
    }

    /// ids [N, L] int64 → [N, W].
    /// In the training step's precision ([`crate::precision::autocast`]), fp32 out.
    pub fn forward(&self, ids: &Tensor) -> Tensor {
        crate::precision::autocast(|| self.forward_exact(ids))
    }

    fn forward_exact(&self, ids: &Tensor) -> Tensor {
        let (n, l) = ids.size2().expect("token ids are [N, L]");
        let keep = ids.ne(super::tokenizer::PAD); // [N, L]
        let weights = keep.to_kind(Kind::Float).unsqueeze(-1); // [N, L, 1]
        let count = weights
            .sum_dim_intlist([1i64].as_slice(), false, Kind::Float)
            .clamp_min(1.0); // [N, 1]
        let x = ids.apply(&self.tokens); // [N, L, W]
        match self.kind {
            TextTowerKind::Bag => {
                let mean =
                    (x * &weights).sum_dim_intlist([1i64].as_slice(), false, Kind::Float) / count; // [N, W]
                let h = mean.apply(&self.norm);
                &h + h.apply(self.fc.as_ref().expect("bag has fc")).gelu("none")
            }
            TextTowerKind::Transformer => {
                let pos = self.positions.as_ref().expect("transformer has positions");
                let mut h = x + pos.narrow(0, 0, l).unsqueeze(0); // [N, L, W]
                let mask = keep.view([n, 1, 1, l]);
                for b in &self.blocks {
                    h = b.forward_masked(&h, Some(&mask));
                }
                let h = h.apply(&self.norm);
                (h * &weights).sum_dim_intlist([1i64].as_slice(), false, Kind::Float) / count
                // [N, W]
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::Device;

    fn tower(kind: TextTowerKind) -> (nn::VarStore, TextTower) {
        tch::manual_seed(0);
        let vs = nn::VarStore::new(Device::Cpu);
        let t = TextTower::new(&(vs.root() / "text"), kind, 20, 6, 16, 2, 2);
        (vs, t)
    }

    #[test]
    fn padding_does_not_change_a_text_and_order_matters_to_the_transformer_only() {
        for kind in [TextTowerKind::Transformer, TextTowerKind::Bag] {
            let (_vs, t) = tower(kind);
            let a = Tensor::from_slice(&[3i64, 4, 5, 0, 0, 0]).view([1, 6]);
            let a_short = Tensor::from_slice(&[3i64, 4, 5, 0]).view([1, 4]);
            let swapped = Tensor::from_slice(&[5i64, 4, 3, 0, 0, 0]).view([1, 6]);
            let fa = t.forward(&a);
            assert_eq!(fa.size(), vec![1, 16]);
            let diff = |x: &Tensor, y: &Tensor| (x - y).abs().max().double_value(&[]);
            assert!(
                diff(&fa, &t.forward(&a_short)) < 1e-5,
                "{kind:?}: padding counted"
            );
            let d = diff(&fa, &t.forward(&swapped));
            match kind {
                TextTowerKind::Transformer => assert!(d > 1e-4, "order ignored: {d}"),
                TextTowerKind::Bag => assert!(d < 1e-5, "a bag has no order: {d}"),
            }
        }
    }

    #[test]
    fn gradients_reach_the_embeddings() {
        let (vs, t) = tower(TextTowerKind::Transformer);
        let ids = Tensor::from_slice(&[3i64, 4, 0, 7, 8, 9]).view([2, 3]);
        t.forward(&ids)
            .pow_tensor_scalar(2)
            .sum(Kind::Float)
            .backward();
        let g = vs.variables()["text.token_embedding.weight"].grad();
        assert!(g.get(3).abs().sum(Kind::Float).double_value(&[]) > 0.0);
        assert_eq!(
            g.get(0).abs().sum(Kind::Float).double_value(&[]),
            0.0,
            "padding trained"
        );
    }
}
