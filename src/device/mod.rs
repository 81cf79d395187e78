//! Where the model's tensors live: `train.device` (`--device`) = `auto | cpu | cuda | cuda:N`.
//!
//! `auto` is the first CUDA device when libtorch sees one, else the CPU; under MPI each rank
//! of a machine takes its own GPU (`cuda:(local rank mod GPUs)`). Augmentation stays on CPU
//! threads; batches are copied to the device once per step ([`to_device`]).

use crate::error::SettingError;
use tch::{Device, Tensor};

pub mod cuda_libs;

/// The libtorch selfsup was built against ("2.11.0"); the binary needs that version's libraries.
pub const LIBTORCH_VERSION: &str = env!("SELFSUP_LIBTORCH_VERSION");

/// A parsed `train.device`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DeviceChoice {
    Auto,
    Cpu,
    /// `cuda` is `Cuda(None)`: the first (or, under MPI, the rank's) device.
    Cuda(Option<usize>),
}

impl std::str::FromStr for DeviceChoice {
    type Err = SettingError;

    fn from_str(s: &str) -> Result<Self, SettingError> {
        let bad = || {
            format!("train.device is {s:?}: use auto, cpu, cuda or cuda:N (N a GPU index, 0 first)")
        };
        Ok(match s {
            "auto" => DeviceChoice::Auto,
            "cpu" => DeviceChoice::Cpu,
            "cuda" => DeviceChoice::Cuda(None),
            _ => match s.strip_prefix("cuda:").map(str::parse::<usize>) {
                Some(Ok(n)) => DeviceChoice::Cuda(Some(n)),
                _ => return Err(bad().into()),
            },
        })
    }
}

/// GPUs libtorch sees: 0 on a machine without one, without a driver, or where libtorch's CUDA
/// half does not load ([`cuda_libs::load`], called here first).
pub fn cuda_devices() -> usize {
    if cuda_libs::load().is_err() {
        return 0;
    }
    match tch::Cuda::is_available() {
        true => tch::Cuda::device_count().max(0) as usize,
        false => 0,
    }
}

/// This process's index among the MPI ranks of its machine (0 outside MPI).
fn local_rank() -> usize {
    [
        "OMPI_COMM_WORLD_LOCAL_RANK",
        "MPI_LOCALRANKID",
        "SLURM_LOCALID",
    ]
    .iter()
    .find_map(|k| std::env::var(k).ok()?.parse().ok())
    .unwrap_or(0)
}

/// The device `choice` names on a machine with `gpus` CUDA devices, for the process that is
/// `local_rank` on its machine; the message says what to pass instead.
pub fn resolve_with(
    choice: DeviceChoice,
    gpus: usize,
    local_rank: usize,
) -> Result<Device, SettingError> {
    match (choice, gpus) {
        (DeviceChoice::Cpu, _) | (DeviceChoice::Auto, 0) => Ok(Device::Cpu),
        (DeviceChoice::Auto | DeviceChoice::Cuda(None), g) if g > 0 => {
            Ok(Device::Cuda(local_rank % g))
        }
        (DeviceChoice::Cuda(Some(n)), g) if n < g => Ok(Device::Cuda(n)),
        (DeviceChoice::Auto, _) => Ok(Device::Cpu),
        (DeviceChoice::Cuda(n), _) => Err(SettingError::Other(match gpus {
            0 => format!(
                "train.device is cuda{}, but libtorch sees no CUDA device here (no GPU, no driver, or a \
                 CPU-only libtorch): use --device cpu, or --device auto to take a GPU only where there is one",
                n.map(|n| format!(":{n}")).unwrap_or_default()
            ),
            g => format!(
                "train.device is cuda:{}, but libtorch sees {g} CUDA device(s), cuda:0 to cuda:{}: choose one of them",
                n.unwrap_or(0),
                g - 1
            ),
        })),
    }
}

/// The device of `train.device` on this machine; asking for CUDA on an install without its
/// libraries says how to add them.
pub fn resolve(setting: &str) -> anyhow::Result<Device> {
    let choice: DeviceChoice = setting.parse().map_err(anyhow::Error::msg)?;
    if let (DeviceChoice::Cuda(_), Err(why)) = (choice, cuda_libs::load()) {
        anyhow::bail!(
            "train.device is {setting}, but {}",
            cuda_libs::missing_advice(why)
        );
    }
    resolve_with(choice, cuda_devices(), local_rank()).map_err(anyhow::Error::msg)
}

/// `cpu` or `cuda:N (of G)`, for the run header.
pub fn describe(d: Device) -> String {
    match d {
        Device::Cuda(n) => format!("cuda:{n} (of {} CUDA devices)", cuda_devices()),
        Device::Cpu => "cpu".into(),
        other => format!("{other:?}"),
    }
}

/// Waits for the device's queued kernels (timing on a GPU; nothing on the CPU).
pub fn synchronize(d: Device) {
    if let Device::Cuda(i) = d {
        tch::Cuda::synchronize(i as i64);
    }
}

/// `t` on `device`: a no-op on the CPU; to a GPU through pinned (page-locked) host memory and
/// a non-blocking copy, the path that overlaps the copy with the step's kernels.
pub fn to_device(t: &Tensor, device: Device) -> Tensor {
    match device {
        Device::Cpu => t.shallow_clone(),
        d => t.pin_memory(d).to_device_(d, t.kind(), true, false),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_spelling_parses_and_a_wrong_one_names_the_key() {
        assert_eq!("auto".parse(), Ok(DeviceChoice::Auto));
        assert_eq!("cpu".parse(), Ok(DeviceChoice::Cpu));
        assert_eq!("cuda".parse(), Ok(DeviceChoice::Cuda(None)));
        assert_eq!("cuda:3".parse(), Ok(DeviceChoice::Cuda(Some(3))));
        for bad in ["gpu", "cuda:", "cuda:x", "CUDA", ""] {
            let e = bad.parse::<DeviceChoice>().unwrap_err().to_string();
            assert!(e.contains("train.device") && e.contains("cuda:N"), "{e}");
        }
    }

    #[test]
    fn auto_takes_a_gpu_only_where_there_is_one_and_ranks_spread_over_them() {
        use DeviceChoice::*;
        assert_eq!(resolve_with(Auto, 0, 3), Ok(Device::Cpu));
        assert_eq!(resolve_with(Auto, 2, 0), Ok(Device::Cuda(0)));
        assert_eq!(resolve_with(Auto, 2, 3), Ok(Device::Cuda(1)));
        assert_eq!(resolve_with(Cuda(None), 4, 2), Ok(Device::Cuda(2)));
        assert_eq!(resolve_with(Cuda(Some(1)), 2, 0), Ok(Device::Cuda(1)));
        assert_eq!(resolve_with(Cpu, 8, 0), Ok(Device::Cpu));
    }

    #[test]
    fn asking_for_a_gpu_that_is_not_there_says_what_to_pass() {
        let none = resolve_with(DeviceChoice::Cuda(None), 0, 0)
            .unwrap_err()
            .to_string();
        assert!(
            none.contains("no CUDA device") && none.contains("--device cpu"),
            "{none}"
        );
        let past = resolve_with(DeviceChoice::Cuda(Some(2)), 2, 0)
            .unwrap_err()
            .to_string();
        assert!(past.contains("cuda:0 to cuda:1"), "{past}");
    }

    #[test]
    fn on_this_machine_the_setting_resolves_to_what_libtorch_sees() {
        let d = resolve("auto").unwrap();
        assert_eq!(d == Device::Cpu, cuda_devices() == 0);
        let x = Tensor::ones([2, 3], (tch::Kind::Float, Device::Cpu));
        assert_eq!(to_device(&x, Device::Cpu).device(), Device::Cpu);
    }
}
