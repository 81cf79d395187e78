//! Crash-safe files: every file selfsup writes goes to a temporary file in the same folder,
//! is fsynced, then renamed over the target, so a reader sees the old file or the new one,
//! never half of one. Checkpoints are one safetensors file (model, optimiser buffers) whose
//! header metadata carries the run state as JSON.

use std::collections::HashMap;
use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use tch::{Kind, Tensor};
use thiserror::Error;

/// Metadata key under which the run state (JSON) is stored.
pub const STATE_KEY: &str = "selfsup_state";

#[derive(Debug, Error)]
pub enum CheckpointError {
    #[error("cannot write {path}: {cause}")]
    Write {
        path: PathBuf,
        cause: std::io::Error,
    },
    #[error("cannot read checkpoint {path}: {cause}")]
    Read {
        path: PathBuf,
        cause: std::io::Error,
    },
    #[error("{path} is not a readable checkpoint ({reason}); it may be truncated or from another program: delete it or point to another one")]
    Corrupt { path: PathBuf, reason: String },
}

/// Writes `bytes` to `path` atomically: `path.tmp` → fsync → rename → fsync the folder.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), CheckpointError> {
    let err = |source| CheckpointError::Write {
        path: path.into(),
        cause: source,
    };
    let tmp = tmp_path(path);
    let written = File::create(&tmp).and_then(|mut f| {
        f.write_all(bytes)?;
        f.sync_all()
    });
    if let Err(e) = written.and_then(|()| std::fs::rename(&tmp, path)) {
        // a full disk must not also be left holding a half-written temporary file
        let _ = std::fs::remove_file(&tmp);
        return Err(err(e));
    }
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        // Make the rename itself durable.
        if let Ok(d) = File::open(dir) {
            let _ = d.sync_all();
        }
    }
    Ok(())
}

fn tmp_path(path: &Path) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(".tmp");
    path.with_file_name(name)
}

/// A float32 tensor (or an int64 one: a BatchNorm's `num_batches_tracked` under torchvision's
/// names) as bytes, for the safetensors writer.
struct Raw {
    dtype: safetensors::Dtype,
    shape: Vec<usize>,
    bytes: Vec<u8>,
}

impl safetensors::View for &Raw {
    fn dtype(&self) -> safetensors::Dtype {
        self.dtype
    }
    fn shape(&self) -> &[usize] {
        &self.shape
    }
    fn data(&self) -> std::borrow::Cow<'_, [u8]> {
        std::borrow::Cow::Borrowed(&self.bytes)
    }
    fn data_len(&self) -> usize {
        self.bytes.len()
    }
}

fn to_raw(t: &Tensor) -> Raw {
    if t.kind() == Kind::Int64 {
        let t = t.detach().to_device(tch::Device::Cpu).contiguous();
        let values = Vec::<i64>::try_from(t.flatten(0, -1)).expect("int64");
        return Raw {
            dtype: safetensors::Dtype::I64,
            shape: t.size().iter().map(|&d| d as usize).collect(),
            bytes: values.iter().flat_map(|v| v.to_le_bytes()).collect(),
        };
    }
    // on the CPU, in standard layout, whatever the device and strides: a GPU run's checkpoint loads anywhere
    let t = t
        .detach()
        .to_device(tch::Device::Cpu)
        .to_kind(Kind::Float)
        .contiguous();
    let numel = t.numel();
    let mut values = vec![0f32; numel];
    t.copy_data(&mut values, numel);
    Raw {
        dtype: safetensors::Dtype::F32,
        shape: t.size().iter().map(|&d| d as usize).collect(),
        bytes: values.iter().flat_map(|v| v.to_le_bytes()).collect(),
    }
}

/// Serialises named tensors (as float32; int64 ones as int64) and string metadata to safetensors bytes.
pub fn to_bytes(tensors: &[(String, Tensor)], metadata: HashMap<String, String>) -> Vec<u8> {
    let raws: Vec<(String, Raw)> = tensors
        .iter()
        .map(|(n, t)| (n.clone(), to_raw(t)))
        .collect();
    let views = raws.iter().map(|(n, r)| (n.as_str(), r));
    safetensors::tensor::serialize(views, &Some(metadata)).expect("float32 tensors serialise")
}

/// Saves named tensors and metadata to `path` atomically.
pub fn save(
    path: &Path,
    tensors: &[(String, Tensor)],
    metadata: HashMap<String, String>,
) -> Result<(), CheckpointError> {
    write_atomic(path, &to_bytes(tensors, metadata))
}

/// Named tensors and the string metadata of a safetensors file.
pub type TensorsAndMetadata = (Vec<(String, Tensor)>, HashMap<String, String>);

/// Reads a safetensors file written by [`save`]: its tensors (float32) and metadata.
pub fn load(path: &Path) -> Result<TensorsAndMetadata, CheckpointError> {
    let bytes = std::fs::read(path).map_err(|source| CheckpointError::Read {
        path: path.into(),
        cause: source,
    })?;
    from_bytes(&bytes).map_err(|Malformed(reason)| CheckpointError::Corrupt {
        path: path.into(),
        reason,
    })
}

/// Why bytes are not a checkpoint (the reason, without a path).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{0}")]
pub struct Malformed(pub String);

impl From<String> for Malformed {
    fn from(reason: String) -> Self {
        Malformed(reason)
    }
}

/// Parses safetensors bytes; any malformed input is an error, never a panic.
pub fn from_bytes(bytes: &[u8]) -> Result<TensorsAndMetadata, Malformed> {
    let (_, meta) =
        safetensors::SafeTensors::read_metadata(bytes).map_err(|e| Malformed(format!("{e:?}")))?;
    let metadata = meta.metadata().clone().unwrap_or_default();
    let st =
        safetensors::SafeTensors::deserialize(bytes).map_err(|e| Malformed(format!("{e:?}")))?;
    let mut out = Vec::new();
    for (name, view) in st.tensors() {
        if view.dtype() != safetensors::Dtype::F32 {
            return Err(Malformed(format!(
                "tensor {name} is {:?}, expected F32",
                view.dtype()
            )));
        }
        let values: Vec<f32> = view
            .data()
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect();
        let shape: Vec<i64> = view
            .shape()
            .iter()
            .map(|&d| i64::try_from(d))
            .collect::<Result<_, _>>()
            .map_err(|_| {
                format!(
                    "tensor {name} has a dimension too large: {:?}",
                    view.shape()
                )
            })?;
        if let Some(i) = values.iter().position(|v| !v.is_finite()) {
            return Err(Malformed(format!(
                "tensor {name} holds a non-finite value ({}) at element {i}: its data is corrupt",
                values[i]
            )));
        }
        let t = Tensor::from_slice(&values)
            .f_view(shape.as_slice())
            .map_err(|e| format!("tensor {name} of shape {:?}: {e}", view.shape()))?;
        out.push((name, t));
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    Ok((out, metadata))
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::Device;

    #[test]
    fn a_failed_write_leaves_no_temporary_file() {
        let dir = tempfile::tempdir().unwrap();
        // the rename fails: the target is a folder that holds a file
        let target = dir.path().join("checkpoint.safetensors");
        std::fs::create_dir(&target).unwrap();
        std::fs::write(target.join("x"), b"x").unwrap();
        let e = write_atomic(&target, b"data").unwrap_err().to_string();
        assert!(e.contains("checkpoint.safetensors"), "{e}");
        assert!(!tmp_path(&target).exists());
    }

    #[test]
    fn non_finite_tensor_data_is_corrupt() {
        let t = Tensor::from_slice(&[1f32, f32::NAN, 3.0]);
        let bytes = to_bytes(&[("w".to_string(), t)], HashMap::new());
        let e = from_bytes(&bytes).unwrap_err().0;
        assert!(e.contains("tensor w") && e.contains("non-finite"), "{e}");
    }

    #[test]
    fn a_zero_size_tensor_with_a_huge_dimension_is_an_error_not_a_panic() {
        // safetensors accepts shape [0, 2^64 − 1] (zero elements); it must not reach view().
        let header =
            r#"{"w":{"dtype":"F32","shape":[0,18446744073709551615],"data_offsets":[0,0]}}"#;
        let mut bytes = (header.len() as u64).to_le_bytes().to_vec();
        bytes.extend(header.as_bytes());
        // a safetensors version that rejects it earlier is fine too
        if let Err(Malformed(e)) = from_bytes(&bytes) {
            assert!(e.contains("w"), "{e}");
        }
    }

    /// Tensors of the training device (a GPU where libtorch sees one, else the CPU) are written
    /// from host copies and load as CPU tensors: checkpoints cross devices both ways.
    #[test]
    fn tensors_of_the_training_device_load_on_the_cpu() {
        let device = crate::device::resolve("auto").unwrap();
        let t = Tensor::arange(6, (Kind::Float, device)).view([2, 3]);
        let bytes = to_bytes(&[("w".into(), t.shallow_clone())], HashMap::new());
        let (back, _) = from_bytes(&bytes).unwrap();
        assert_eq!(back[0].1.device(), Device::Cpu);
        assert!(back[0].1.equal(&t.to_device(Device::Cpu)));
    }

    #[test]
    fn round_trip_keeps_values_shapes_and_metadata() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("c.safetensors");
        let a = Tensor::arange(24, (Kind::Float, Device::Cpu)).view([2, 3, 2, 2]);
        // A channels-last tensor is saved in its logical (NCHW) order.
        let cl = crate::backbone::channels_last(&a);
        let meta = HashMap::from([(STATE_KEY.to_string(), "{\"step\":3}".to_string())]);
        save(
            &p,
            &[("a".into(), a.shallow_clone()), ("cl".into(), cl)],
            meta,
        )
        .unwrap();
        assert!(!tmp_path(&p).exists());
        let (t, m) = load(&p).unwrap();
        assert_eq!(m[STATE_KEY], "{\"step\":3}");
        assert_eq!(t[0].0, "a");
        assert!(t[0].1.equal(&a) && t[1].1.equal(&a));
    }

    #[test]
    fn truncated_or_garbage_files_are_errors_not_panics() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("c.safetensors");
        let t = Tensor::ones([100], (Kind::Float, Device::Cpu));
        save(&p, &[("w".into(), t)], HashMap::new()).unwrap();
        let bytes = std::fs::read(&p).unwrap();
        for cut in [0, 7, 8, 20, bytes.len() / 2, bytes.len() - 1] {
            std::fs::write(&p, &bytes[..cut]).unwrap();
            let e = load(&p).unwrap_err().to_string();
            assert!(
                e.contains("c.safetensors") && e.contains("truncated"),
                "{cut}: {e}"
            );
        }
        assert!(matches!(
            load(&dir.path().join("missing")),
            Err(CheckpointError::Read { .. })
        ));
    }

    #[test]
    fn atomic_write_replaces_whole_files() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("f.txt");
        write_atomic(&p, b"old").unwrap();
        write_atomic(&p, b"new contents").unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"new contents");
        let e = write_atomic(&dir.path().join("no/such/dir/f"), b"x")
            .unwrap_err()
            .to_string();
        assert!(e.contains("no/such/dir"), "{e}");
    }
}
