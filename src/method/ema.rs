//! A momentum (EMA) copy of a network: BYOL's target and MoCo's key encoder.

use crate::error::SettingError;
use tch::{nn::VarStore, Tensor};

/// The variables of a target network that follow their online counterparts by
/// exponential moving average (BYOL eq. 1; MoCo eq. 2):
/// ```text
/// θ_target ← m · θ_target + (1 − m) · θ_online
/// ```
/// Target variable `"<prefix>X"` follows online variable `"X"` for every trainable `X`; the
/// target's BatchNorm statistics are its own (updated by its forward passes).
pub struct Ema {
    /// (target, online) pairs, in name order.
    pairs: Vec<(Tensor, Tensor)>,
}

impl Ema {
    /// Pairs every `"<target_prefix>X"` with `"X"`, freezes the target (no gradients, so the
    /// optimiser never sees it) and copies the online weights into it.
    ///
    /// Errors if a trainable online variable has no target counterpart of the same shape.
    pub fn new(vs: &VarStore, target_prefix: &str) -> Result<Self, SettingError> {
        let vars = vs.variables();
        let mut names: Vec<&String> = vars
            .keys()
            .filter(|n| !n.starts_with(target_prefix))
            .collect();
        names.sort();
        let mut pairs = Vec::new();
        for name in names {
            let online = &vars[name];
            if !online.requires_grad() {
                continue; // BatchNorm running statistics
            }
            let target_name = format!("{target_prefix}{name}");
            let Some(target) = vars.get(&target_name) else {
                continue; // online-only parts (e.g. BYOL's predictor)
            };
            if target.size() != online.size() {
                return Err(format!(
                    "{target_name} is {:?} but {name} is {:?}",
                    target.size(),
                    online.size()
                )
                .into());
            }
            let mut target = target.shallow_clone();
            let _ = target.set_requires_grad(false);
            tch::no_grad(|| target.copy_(online));
            pairs.push((target, online.shallow_clone()));
        }
        if pairs.is_empty() {
            return Err(
                format!("no variable under {target_prefix:?} follows an online variable").into(),
            );
        }
        Ok(Ema { pairs })
    }

    /// One EMA step with momentum `m` ∈ [0, 1] (1 keeps the target, 0 copies the online net).
    pub fn update(&self, m: f64) {
        tch::no_grad(|| {
            for (t, o) in &self.pairs {
                let mut t = t.shallow_clone();
                let _ = t.g_mul_scalar_(m).g_add_(&(o * (1.0 - m)));
            }
        });
    }

    /// Number of followed variables.
    pub fn len(&self) -> usize {
        self.pairs.len()
    }

    pub fn is_empty(&self) -> bool {
        self.pairs.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::{Device, Kind};

    #[test]
    fn the_target_starts_as_a_copy_is_frozen_and_moves_by_m() {
        let vs = VarStore::new(Device::Cpu);
        let root = vs.root();
        let w = root.var_copy("w", &Tensor::from_slice(&[1.0f32, 2.0]));
        let _t = (&root / "target").var_copy("w", &Tensor::from_slice(&[9.0f32, 9.0]));
        let _stat = root.zeros_no_train("running_mean", &[2]);
        let ema = Ema::new(&vs, "target.").unwrap();
        assert_eq!(ema.len(), 1);
        let target = vs.variables()["target.w"].shallow_clone();
        assert!(!target.requires_grad());
        assert_eq!(Vec::<f32>::try_from(&target).unwrap(), vec![1.0, 2.0]);
        // online moves to (3, 6); m = 0.9: target = 0.9·(1, 2) + 0.1·(3, 6) = (1.2, 2.4)
        tch::no_grad(|| w.shallow_clone().copy_(&Tensor::from_slice(&[3.0f32, 6.0])));
        ema.update(0.9);
        let got = Vec::<f32>::try_from(&target).unwrap();
        assert!(
            (got[0] - 1.2).abs() < 1e-6 && (got[1] - 2.4).abs() < 1e-6,
            "{got:?}"
        );
        ema.update(1.0); // m = 1 keeps it
        assert!((Vec::<f32>::try_from(&target).unwrap()[0] - 1.2).abs() < 1e-6);
        ema.update(0.0); // m = 0 copies
        assert_eq!(Vec::<f32>::try_from(&target).unwrap(), vec![3.0, 6.0]);
        let _ = Kind::Float;
    }

    #[test]
    fn a_target_of_another_shape_is_refused() {
        let vs = VarStore::new(Device::Cpu);
        let _w = vs.root().var_copy("w", &Tensor::from_slice(&[1.0f32, 2.0]));
        let _t = (vs.root() / "target").var_copy("w", &Tensor::from_slice(&[1.0f32]));
        let e = Ema::new(&vs, "target.").err().unwrap().to_string();
        assert!(
            e.contains("target.w") && e.contains("[1]") && e.contains("[2]"),
            "{e}"
        );
    }
}
