//! Mixed precision: `train.precision` (`--precision`) = `auto | fp32 | bf16 | fp16`.
//!
//! ```text
//! trainer:  precision::training(p, device, || method.step(views))      (one step's forward)
//! modules:  y = precision::autocast(|| encoder or head forward)          → y in fp32
//!   inside: libtorch autocast (bf16 | fp16) for matmuls and convolutions, fp32 master weights
//!   outside: losses, normalisations, softmax, Sinkhorn, EMA updates, k-means: plain fp32
//! ```
//! Only the encoder and the heads run in the lower precision: they wrap their forward in
//! [`autocast`], which does nothing outside [`training`] or at fp32, and hands back fp32.
//! Everything the losses compute therefore sees fp32 inputs with autocast off. The weights,
//! gradients and optimiser state stay fp32. fp16 adds dynamic loss scaling ([`LossScaler`]).
//!
//! libtorch's autocast is per thread and per device type; `csrc/autocast.cpp` switches it (tch
//! 0.24 has only the CUDA fp16 switch, a no-op without CUDA).

use crate::error::SettingError;
use serde::{Deserialize, Serialize};
use std::cell::Cell;
use std::os::raw::c_int;
use tch::{Device, Kind, Tensor};

extern "C" {
    fn selfsup_autocast_enter(
        device: c_int,
        dtype: c_int,
        prev_enabled: *mut c_int,
        prev_dtype: *mut c_int,
    ) -> c_int;
    fn selfsup_autocast_exit(device: c_int, prev_enabled: c_int, prev_dtype: c_int) -> c_int;
    fn selfsup_cuda_bf16_native() -> c_int;
}

/// The precision of the encoder's and heads' forward (and so of their backward).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Precision {
    Fp32,
    Bf16,
    Fp16,
}

impl Precision {
    pub fn name(self) -> &'static str {
        match self {
            Precision::Fp32 => "fp32",
            Precision::Bf16 => "bf16",
            Precision::Fp16 => "fp16",
        }
    }

    /// The autocast dtype; None at fp32.
    pub fn lower_kind(self) -> Option<Kind> {
        match self {
            Precision::Fp32 => None,
            Precision::Bf16 => Some(Kind::BFloat16),
            Precision::Fp16 => Some(Kind::Half),
        }
    }

    /// `train.precision` on `device`: `auto` is bf16 on a GPU that computes in bf16 natively
    /// (compute capability 8.0 or later: A100, H100, RTX 30xx and later), fp32 elsewhere (on
    /// a CPU, bf16 is slower than fp32 unless it has AMX or AVX512-BF16).
    pub fn resolve(name: &str, device: Device) -> Result<Precision, SettingError> {
        let p = match name {
            "auto" => match device {
                Device::Cuda(_) if cuda_bf16_native() => Precision::Bf16,
                _ => Precision::Fp32,
            },
            "fp32" => Precision::Fp32,
            "bf16" => Precision::Bf16,
            "fp16" => Precision::Fp16,
            _ => {
                return Err(format!(
                    "train.precision is {name:?}: use auto, fp32, bf16 or fp16 (--precision)"
                )
                .into())
            }
        };
        if p != Precision::Fp32 && device_code(device).is_none() {
            return Err(format!(
                "train.precision {} needs a CPU or CUDA device, not {device:?}: use fp32",
                p.name()
            )
            .into());
        }
        Ok(p)
    }
}

/// Whether the current CUDA device computes in bf16 natively (false without CUDA).
pub fn cuda_bf16_native() -> bool {
    // SAFETY: no arguments; the C++ side catches every exception.
    unsafe { selfsup_cuda_bf16_native() == 1 }
}

fn device_code(device: Device) -> Option<c_int> {
    match device {
        Device::Cpu => Some(0),
        Device::Cuda(_) => Some(1),
        _ => None,
    }
}

fn kind_code(kind: Kind) -> c_int {
    match kind {
        Kind::Half => 5,
        Kind::BFloat16 => 15,
        _ => 6, // Float
    }
}

thread_local! {
    /// The precision of the training step running on this thread, and its device.
    static TRAINING: Cell<Option<(Precision, Device)>> = const { Cell::new(None) };
}

/// Restores the thread's training precision when dropped (also on a panic).
struct TrainingScope(Option<(Precision, Device)>);

impl Drop for TrainingScope {
    fn drop(&mut self) {
        TRAINING.with(|t| t.set(self.0));
    }
}

/// Runs `f` (a method's training step on `device`) with the encoder and heads in `precision`.
pub fn training<T>(precision: Precision, device: Device, f: impl FnOnce() -> T) -> T {
    let prev = TRAINING.with(|t| t.replace(Some((precision, device))));
    let _scope = TrainingScope(prev);
    f()
}

/// The precision [`autocast`] would use on this thread now.
pub fn current() -> Precision {
    TRAINING
        .with(|t| t.get())
        .map_or(Precision::Fp32, |(p, _)| p)
}

/// libtorch's autocast switched on for one device type; restores the previous state on drop.
struct AutocastGuard {
    device: c_int,
    prev_enabled: c_int,
    prev_dtype: c_int,
}

impl AutocastGuard {
    fn enter(device: c_int, kind: Kind) -> AutocastGuard {
        let (mut prev_enabled, mut prev_dtype) = (0, 0);
        // SAFETY: plain integers in, two out-pointers to live locals; exceptions are caught.
        let rc = unsafe {
            selfsup_autocast_enter(device, kind_code(kind), &mut prev_enabled, &mut prev_dtype)
        };
        assert_eq!(rc, 0, "libtorch refused autocast to {kind:?}");
        AutocastGuard {
            device,
            prev_enabled,
            prev_dtype,
        }
    }
}

impl Drop for AutocastGuard {
    fn drop(&mut self) {
        // SAFETY: as in enter.
        unsafe { selfsup_autocast_exit(self.device, self.prev_enabled, self.prev_dtype) };
    }
}

/// A module's forward `f`: under autocast in a lower-precision [`training`] step, plain
/// elsewhere. Floating-point outputs come back as fp32, so whatever follows (a loss, a
/// normalisation) computes in fp32.
pub fn autocast(f: impl FnOnce() -> Tensor) -> Tensor {
    let active = TRAINING.with(|t| t.get());
    let Some((kind, device)) = active.and_then(|(p, d)| Some((p.lower_kind()?, device_code(d)?)))
    else {
        return f();
    };
    let y = {
        let _on = AutocastGuard::enter(device, kind);
        f()
    };
    match y.kind() {
        Kind::BFloat16 | Kind::Half => y.to_kind(Kind::Float),
        _ => y,
    }
}

/// Dynamic loss scaling for fp16 (as PyTorch's `GradScaler`): the loss is multiplied by
/// `scale` before the backward pass so that small gradients survive fp16, and the gradients
/// divided by it after. A step whose loss or gradient is not finite is skipped and halves the
/// scale; [`GROWTH_INTERVAL`](LossScaler::GROWTH_INTERVAL) good steps in a row double it.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct LossScaler {
    pub scale: f64,
    /// Finite steps since the last change of scale.
    pub good_steps: u64,
}

impl Default for LossScaler {
    fn default() -> Self {
        LossScaler {
            scale: 65536.0,
            good_steps: 0,
        }
    }
}

impl LossScaler {
    pub const GROWTH_INTERVAL: u64 = 2000;
    /// Below this scale the overflow is not a matter of scaling: the run stops.
    pub const MIN_SCALE: f64 = 1.0;

    /// Records a finite step.
    pub fn good(&mut self) {
        self.good_steps += 1;
        if self.good_steps == Self::GROWTH_INTERVAL {
            self.scale *= 2.0;
            self.good_steps = 0;
        }
    }

    /// Records an overflow (the step is skipped); false once the scale fell below
    /// [`MIN_SCALE`](LossScaler::MIN_SCALE).
    pub fn overflow(&mut self) -> bool {
        self.scale *= 0.5;
        self.good_steps = 0;
        self.scale >= Self::MIN_SCALE
    }

    /// As tensors, for the checkpoint beside the optimiser's state.
    pub fn state(&self) -> Vec<(String, Tensor)> {
        let t = Tensor::from_slice(&[self.scale, self.good_steps as f64]);
        vec![(Self::STATE_KEY.to_string(), t)]
    }

    pub const STATE_KEY: &'static str = "loss_scaler";

    /// From a checkpoint's state (None when it has none: a run that did not use fp16).
    pub fn from_state(state: &[(String, Tensor)]) -> Option<LossScaler> {
        let (_, t) = state.iter().find(|(k, _)| k == Self::STATE_KEY)?;
        let v = Vec::<f64>::try_from(t.to_kind(Kind::Double)).ok()?;
        Some(LossScaler {
            scale: *v.first()?,
            good_steps: *v.get(1)? as u64,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn autocast_runs_a_matmul_in_bf16_inside_a_training_step_only() {
        let a = Tensor::randn([4, 8], (Kind::Float, Device::Cpu));
        let b = Tensor::randn([8, 3], (Kind::Float, Device::Cpu));
        let exact = a.matmul(&b);
        // outside a training step: plain fp32
        assert!(autocast(|| a.matmul(&b)).equal(&exact));
        let inner = training(Precision::Bf16, Device::Cpu, || {
            let kind_inside = std::cell::Cell::new(Kind::Float);
            let y = autocast(|| {
                let y = a.matmul(&b);
                kind_inside.set(y.kind());
                y
            });
            (kind_inside.get(), y)
        });
        assert_eq!(inner.0, Kind::BFloat16, "the matmul ran in bf16");
        assert_eq!(inner.1.kind(), Kind::Float, "and came back as fp32");
        let err = (&inner.1 - &exact).abs().max().double_value(&[]);
        assert!(err > 0.0 && err < 0.1, "bf16 rounding, not garbage: {err}");
        // after the step: fp32 again, and autocast off (a plain matmul stays fp32)
        assert_eq!(current(), Precision::Fp32);
        assert_eq!(a.matmul(&b).kind(), Kind::Float);
    }

    #[test]
    fn fp32_training_leaves_every_op_in_fp32() {
        let a = Tensor::randn([4, 8], (Kind::Float, Device::Cpu));
        let y = training(Precision::Fp32, Device::Cpu, || {
            autocast(|| a.matmul(&a.tr()))
        });
        assert!(y.equal(&a.matmul(&a.tr())));
    }

    #[test]
    fn fp16_autocast_runs_on_the_cpu() {
        let a = Tensor::randn([4, 8], (Kind::Float, Device::Cpu));
        let y = training(Precision::Fp16, Device::Cpu, || {
            autocast(|| {
                let y = a.matmul(&a.tr());
                assert_eq!(y.kind(), Kind::Half);
                y
            })
        });
        assert_eq!(y.kind(), Kind::Float);
    }

    #[test]
    fn auto_is_fp32_on_the_cpu_and_names_are_checked() {
        assert_eq!(
            Precision::resolve("auto", Device::Cpu).unwrap(),
            Precision::Fp32
        );
        assert_eq!(
            Precision::resolve("bf16", Device::Cpu).unwrap(),
            Precision::Bf16
        );
        let e = Precision::resolve("half", Device::Cpu)
            .unwrap_err()
            .to_string();
        assert!(e.contains("train.precision") && e.contains("bf16"), "{e}");
        assert!(Precision::resolve("bf16", Device::Mps).is_err());
    }

    #[test]
    fn the_loss_scale_halves_on_overflow_doubles_after_good_steps_and_round_trips() {
        let mut s = LossScaler::default();
        assert!(s.overflow());
        assert_eq!(s.scale, 32768.0);
        for _ in 0..LossScaler::GROWTH_INTERVAL {
            s.good();
        }
        assert_eq!((s.scale, s.good_steps), (65536.0, 0));
        s.good();
        assert_eq!(LossScaler::from_state(&s.state()), Some(s));
        let mut tiny = LossScaler {
            scale: 1.0,
            good_steps: 0,
        };
        assert!(!tiny.overflow(), "below 1 the run stops");
    }
}
