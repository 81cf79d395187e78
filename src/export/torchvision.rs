//! The encoder's weights as a safetensors file under torchvision's names: a ResNet's keys are
//! those of `torchvision.models.resnet{18,34,50}` (`conv1.weight`, `layer1.0.bn1.running_mean`,
//! …) with each BatchNorm's `num_batches_tracked` added, so that
//! `model.load_state_dict(load_file(path), strict=True)` takes it once the model has the run's
//! stem (`conv1` 3×3 stride 1 and no max-pool for the CIFAR stem) and `fc = nn.Identity()`.
//! `scripts/check_exports.py` checks this against `selfsup embed`, to 1e-4.

use crate::checkpoint::{self, CheckpointError};
use std::collections::HashMap;
use std::path::Path;
use tch::{nn::VarStore, Tensor};

/// The variables of `vs` under `prefix` (removed), plus `*.num_batches_tracked` (int64 0, a
/// scalar) beside every BatchNorm's running mean, sorted by name.
pub fn tensors(vs: &VarStore, prefix: &str) -> Vec<(String, Tensor)> {
    let mut t: Vec<(String, Tensor)> = vs
        .variables()
        .into_iter()
        .filter_map(|(n, t)| n.strip_prefix(prefix).map(|s| (s.to_string(), t)))
        .collect();
    let tracked: Vec<String> = t
        .iter()
        .filter_map(|(n, _)| n.strip_suffix(".running_mean"))
        .map(|layer| format!("{layer}.num_batches_tracked"))
        .collect();
    for name in tracked {
        t.push((name, Tensor::from_slice(&[0i64]).reshape(Vec::<i64>::new())));
    }
    t.sort_by(|a, b| a.0.cmp(&b.0));
    t
}

/// Writes [`tensors`] to `path`, atomically.
pub fn save(vs: &VarStore, prefix: &str, path: &Path) -> Result<(), CheckpointError> {
    checkpoint::save(path, &tensors(vs, prefix), HashMap::new())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backbone::{ResNet, ResNetConfig, Stem};

    #[test]
    fn resnet_names_are_torchvisions_with_num_batches_tracked() {
        let vs = VarStore::new(tch::Device::Cpu);
        ResNet::new(
            &(vs.root() / "backbone"),
            &ResNetConfig {
                depth: 18,
                stem: Stem::Cifar,
                width: 0.25,
            },
        )
        .unwrap();
        let t = tensors(&vs, "backbone.");
        let names: Vec<&str> = t.iter().map(|(n, _)| n.as_str()).collect();
        // torchvision resnet18 minus fc: 20 BatchNorms × 5 entries + 20 convs
        assert_eq!(names.len(), 122 - 2, "{names:?}");
        for n in [
            "conv1.weight",
            "bn1.num_batches_tracked",
            "layer2.0.downsample.1.num_batches_tracked",
        ] {
            assert!(names.contains(&n), "{n}");
        }
        assert!(names.windows(2).all(|w| w[0] < w[1]));
        let (_, nbt) = t
            .iter()
            .find(|(n, _)| n == "bn1.num_batches_tracked")
            .unwrap();
        assert_eq!((nbt.kind(), nbt.dim()), (tch::Kind::Int64, 0));
        // the file holds them with their types
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("enc.safetensors");
        save(&vs, "backbone.", &path).unwrap();
        let bytes = std::fs::read(&path).unwrap();
        let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
        assert_eq!(st.len(), 120);
        let v = st.tensor("bn1.num_batches_tracked").unwrap();
        assert_eq!((v.dtype(), v.shape()), (safetensors::Dtype::I64, &[][..]));
        assert_eq!(st.tensor("conv1.weight").unwrap().shape(), &[16, 3, 3, 3]);
    }
}
