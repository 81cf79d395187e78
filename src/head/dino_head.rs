//! DINO's projection head (Caron et al. 2021, arXiv:2104.14294, §3.1 and appendix):
//! an MLP to a bottleneck, L2 normalisation, then a weight-normalised linear layer without
//! bias to the K output dimensions.

use super::{Block, Mlp};
use crate::error::SettingError;
use crate::loss::l2_normalize;
use tch::nn::{self, ModuleT};
use tch::Tensor;

#[derive(Debug)]
pub struct DinoHead {
    pub mlp: Mlp,
    /// V: [K, bottleneck]; rows are normalised in the forward pass (weight norm with g = 1,
    /// DINO's `norm_last_layer`), so only their directions are learnt.
    pub last: Tensor,
}

impl DinoHead {
    /// `Linear(in, hidden) → BN → ReLU → Linear(hidden, hidden) → BN → ReLU →
    /// Linear(hidden, bottleneck)`, then `last.weight` [out, bottleneck].
    pub fn new(
        p: &nn::Path,
        in_dim: i64,
        hidden: i64,
        bottleneck: i64,
        out: i64,
    ) -> Result<Self, SettingError> {
        let mlp = Mlp::new(
            &(p / "mlp"),
            &[
                Block::new(in_dim, hidden, true, true),
                Block::new(hidden, hidden, true, true),
                Block::new(hidden, bottleneck, false, false),
            ],
        )?;
        if out < 1 {
            return Err(format!("the DINO head needs ≥ 1 output dimensions, got {out}").into());
        }
        let last = (p / "last").var(
            "weight",
            &[out, bottleneck],
            nn::init::DEFAULT_KAIMING_UNIFORM,
        );
        Ok(DinoHead { mlp, last })
    }
}

impl ModuleT for DinoHead {
    /// [N, in] → [N, out]: `normalize(mlp(x)) · normalize_rows(V)ᵀ` (cosines, in [−1, 1]).
    fn forward_t(&self, x: &Tensor, train: bool) -> Tensor {
        l2_normalize(&self.mlp.forward_t(x, train)).matmul(&l2_normalize(&self.last).tr())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::{Device, Kind};

    #[test]
    fn outputs_are_cosines_and_ignore_the_scale_of_the_last_weights() {
        let vs = nn::VarStore::new(Device::Cpu);
        let h = DinoHead::new(&vs.root(), 6, 8, 4, 5).unwrap();
        let x = Tensor::randn([3, 6], (Kind::Float, Device::Cpu));
        let y = h.forward_t(&x, false);
        assert_eq!(y.size(), vec![3, 5]);
        assert!(y.abs().max().double_value(&[]) <= 1.0 + 1e-5);
        let _ = tch::no_grad(|| h.last.shallow_clone().g_mul_scalar_(7.0));
        let y2 = h.forward_t(&x, false);
        assert!((y - y2).abs().max().double_value(&[]) < 1e-5);
        assert!(DinoHead::new(&vs.root(), 6, 8, 4, 0).is_err());
    }
}
