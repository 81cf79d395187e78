//! The classifier of a pretext task on the encoder's features of an image's `C` crops: the
//! siamese shape of Doersch et al. (2015, Fig. 3: "fc6" per patch, concatenated, "fc7",
//! "fc8") and Noroozi & Favaro (2016, Fig. 3: the tiles' fc6 outputs concatenated into fc7
//! and an N-way fc8); with `C = 1` it is RotNet's classifier on one input.
//! ```text
//! h [K·C, D] ── per_crop: Linear(D, E) → BN → ReLU ── view [K, C·E]
//!            ── classifier: Linear(C·E, H) → BN → ReLU → Linear(H, classes) ── logits [K, classes]
//! ```

use super::mlp::{Block, Mlp};
use crate::error::SettingError;
use tch::nn::{self, ModuleT};
use tch::Tensor;

/// The per-crop embedding and the classifier over the concatenated crops.
#[derive(Debug)]
pub struct PretextHead {
    per_crop: Mlp,
    classifier: Mlp,
    crops: i64,
}

impl PretextHead {
    /// Variables `per_crop.*` and `classifier.*` under `p`: features of dimension `in_dim`,
    /// `crops` crops per example, per-crop embedding `embed`, hidden width `hidden`.
    pub fn new(
        p: &nn::Path,
        in_dim: i64,
        crops: i64,
        embed: i64,
        hidden: i64,
        classes: i64,
    ) -> Result<Self, SettingError> {
        let per_crop = Mlp::new(&(p / "per_crop"), &[Block::new(in_dim, embed, true, true)])?;
        let classifier = Mlp::new(
            &(p / "classifier"),
            &[
                Block::new(crops * embed, hidden, true, true),
                Block::new(hidden, classes, false, false),
            ],
        )?;
        Ok(PretextHead {
            per_crop,
            classifier,
            crops,
        })
    }

    /// [K·C, D] (the crops of example k at rows `k·C ..`, in their order) → logits [K, classes].
    pub fn forward_t(&self, h: &Tensor, train: bool) -> Tensor {
        let e = self.per_crop.forward_t(h, train); // [K·C, E]
        let k = e.size()[0] / self.crops;
        let joined = e.view([k, -1]); // [K, C·E]
        self.classifier.forward_t(&joined, train) // [K, classes]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::{Device, Kind};

    #[test]
    fn crops_of_one_example_are_joined_in_order() {
        let vs = nn::VarStore::new(Device::Cpu);
        let head = PretextHead::new(&(vs.root() / "head"), 8, 3, 4, 16, 5).unwrap();
        let h = Tensor::randn([6, 8], (Kind::Float, Device::Cpu)); // 2 examples × 3 crops
        assert_eq!(head.forward_t(&h, true).size(), vec![2, 5]);
        let v = vs.variables();
        assert_eq!(v["head.per_crop.layers.0.linear.weight"].size(), vec![4, 8]);
        assert_eq!(
            v["head.classifier.layers.0.linear.weight"].size(),
            vec![16, 12]
        );
        // swapping two crops of an example changes its logits (the order is the task)
        let swapped = Tensor::cat(
            &[h.narrow(0, 1, 1), h.narrow(0, 0, 1), h.narrow(0, 2, 4)],
            0,
        );
        let (a, b) = (head.forward_t(&h, false), head.forward_t(&swapped, false));
        assert!(!a
            .narrow(0, 0, 1)
            .allclose(&b.narrow(0, 0, 1), 1e-5, 1e-6, false));
        assert!(a
            .narrow(0, 1, 1)
            .allclose(&b.narrow(0, 1, 1), 1e-5, 1e-6, false));
    }
}
