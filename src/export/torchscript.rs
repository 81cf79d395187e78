//! The encoder as a TorchScript module, traced with tch: `torch.jit.load(path)` in Python (or
//! `tch::CModule::load` in Rust) gives a module whose `forward(x)` maps normalised images
//! `x` [N, 3, S, S] (the eval view: the centred square resized to the run's crop size S,
//! normalised with the CIFAR-10 channel means and stds) to the encoder's features [N, D], the
//! same as `selfsup embed`.
//!
//! Traced in eval mode (BatchNorm running statistics): the weights are constants of the graph.

use crate::backbone::{Backbone, Layer};
use std::path::Path;
use tch::{nn::VarStore, CModule, Kind, Tensor};

/// A seeded, randomly initialised CIFAR-stem ResNet-18 at width 1/8 (64-d features), traced for
/// `side`-px views and saved to `path`: the teacher of `--method distill`'s tests and examples.
#[doc(hidden)]
pub fn save_random_resnet(path: &Path, side: usize, seed: i64) -> anyhow::Result<()> {
    use crate::backbone::{BackboneConfig, ResNetConfig, Stem};
    tch::manual_seed(seed);
    let mut vs = VarStore::new(tch::Device::Cpu);
    let config = BackboneConfig::ResNet(ResNetConfig {
        depth: 18,
        stem: Stem::Cifar,
        width: 0.125,
    });
    let net = Backbone::new(&vs.root(), &config)?;
    save(&mut vs, &net, side, path)
}

/// Traces `net` (whose variables `vs` holds) on a batch of two `side`×`side` images and saves the
/// module to `path` atomically ([`super::write_file`]). Freezes `vs`: a traced constant may not require
/// gradients.
///
/// libtorch never writes to `path`'s disk itself: when its file writer fails (a full disk), its
/// destructor throws during the unwinding and the process aborts (`terminate called … c10::Error`,
/// leaving the temporary file behind). It writes into a file in memory instead
/// ([`module_bytes`]), and our own writer, whose errors are ordinary ones, puts the bytes on disk.
pub fn save(vs: &mut VarStore, net: &Backbone, side: usize, path: &Path) -> anyhow::Result<()> {
    let module = trace(vs, net, side)?;
    let bytes = module_bytes(&module)?;
    super::write_file(path, &bytes)
}

/// The saved module's bytes (a zip archive), written by libtorch into an anonymous file in memory
/// (`memfd_create`, Linux) or, elsewhere, into a file of the system's temporary folder.
pub fn module_bytes(module: &CModule) -> anyhow::Result<Vec<u8>> {
    use std::io::{Read, Seek};
    let (mut file, name) = scratch_file()?;
    module
        .save(&name)
        .map_err(|e| anyhow::anyhow!("libtorch could not save the TorchScript module: {e}"))?;
    let mut bytes = Vec::new();
    file.rewind()?;
    file.read_to_end(&mut bytes)?;
    if !cfg!(all(target_os = "linux", target_env = "gnu")) {
        let _ = std::fs::remove_file(&name);
    }
    Ok(bytes)
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn scratch_file() -> anyhow::Result<(std::fs::File, std::path::PathBuf)> {
    use std::os::fd::FromRawFd;
    // SAFETY: a constant NUL-terminated name; the returned descriptor is owned by the File.
    let fd = unsafe { libc::memfd_create(c"selfsup-export".as_ptr(), libc::MFD_CLOEXEC) };
    if fd < 0 {
        anyhow::bail!(
            "cannot create a file in memory: {}",
            std::io::Error::last_os_error()
        );
    }
    let file = unsafe { std::fs::File::from_raw_fd(fd) };
    Ok((file, format!("/proc/self/fd/{fd}").into()))
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn scratch_file() -> anyhow::Result<(std::fs::File, std::path::PathBuf)> {
    let name = std::env::temp_dir().join(format!("selfsup-export-{}.pt", std::process::id()));
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(&name)?;
    Ok((file, name))
}

/// The traced module.
pub fn trace(vs: &mut VarStore, net: &Backbone, side: usize) -> anyhow::Result<CModule> {
    vs.freeze();
    let s = side as i64;
    let example = Tensor::zeros([2, 3, s, s], (Kind::Float, net.device()));
    let module = tch::no_grad(|| {
        CModule::create_by_tracing("SelfsupEncoder", "forward", &[example], &mut |x| {
            vec![net.features_at(&x[0], false, Layer::Layer4)]
        })
    })?;
    Ok(module)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backbone::vit::Pool;
    use crate::backbone::{BackboneConfig, ResNetConfig, Stem, VitConfig};

    /// Exports `cfg` traced on 2 images of `side` px and checks the loaded module against the
    /// network at batch sizes 1, 3 and 40 (a traced constant batch size fails at all three).
    fn export_matches_at_every_batch_size(cfg: BackboneConfig, side: i64) {
        tch::manual_seed(0);
        let mut vs = VarStore::new(tch::Device::Cpu);
        let net = Backbone::new(&(vs.root() / "backbone"), &cfg).unwrap();
        // BatchNorm statistics away from their init, so that eval mode matters
        tch::no_grad(|| {
            for (name, mut t) in vs.variables() {
                if name.ends_with("running_var") {
                    let _ = t.uniform_(0.5, 2.0);
                }
            }
        });
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("enc.pt");
        save(&mut vs, &net, side as usize, &path).unwrap();
        let loaded = CModule::load(&path).unwrap();
        for n in [1, 3, 40] {
            let x = Tensor::randn([n, 3, side, side], (Kind::Float, tch::Device::Cpu));
            let want = tch::no_grad(|| net.features_at(&x, false, Layer::Layer4));
            let got = loaded
                .forward_ts(&[&x])
                .unwrap_or_else(|e| panic!("batch {n}: {e}"));
            assert_eq!(got.size(), want.size());
            let diff = (&got - &want).abs().max().double_value(&[]);
            assert!(diff < 1e-4, "batch {n}: {diff}");
        }
        // nothing but the module in the folder
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from("enc.pt")]);
    }

    #[test]
    fn traced_resnet_gives_the_same_features_at_any_batch_size() {
        let cfg = BackboneConfig::ResNet(ResNetConfig {
            depth: 18,
            stem: Stem::Cifar,
            width: 0.125,
        });
        export_matches_at_every_batch_size(cfg, 16);
    }

    #[test]
    fn traced_vit_gives_the_same_features_at_any_batch_size() {
        // a small ViT (the batch size was a traced constant: only batches of 2 ran)
        for pool in [Pool::Cls, Pool::Mean] {
            let cfg = VitConfig {
                depth: 2,
                pool,
                ..VitConfig::tiny(4, 16)
            };
            export_matches_at_every_batch_size(BackboneConfig::Vit(cfg), 16);
        }
    }
}
