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

/// Traces `net` (whose variables `vs` holds) on a batch of two `side`×`side` images and saves the
/// module to `path` atomically (a temporary file renamed into place). Freezes `vs`: a traced
/// constant may not require gradients.
pub fn save(vs: &mut VarStore, net: &Backbone, side: usize, path: &Path) -> anyhow::Result<()> {
    let module = trace(vs, net, side)?;
    let tmp = path.with_file_name(format!(
        ".{}.tmp-{}",
        path.file_name().unwrap_or_default().to_string_lossy(),
        std::process::id()
    ));
    let saved = module
        .save(&tmp)
        .map_err(anyhow::Error::from)
        .and_then(|()| std::fs::rename(&tmp, path).map_err(anyhow::Error::from));
    if let Err(e) = saved {
        let _ = std::fs::remove_file(&tmp);
        anyhow::bail!(
            "cannot write {} ({e}): choose another --out",
            path.display()
        );
    }
    Ok(())
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
    use crate::backbone::{BackboneConfig, ResNetConfig, Stem};

    #[test]
    fn traced_module_loads_back_and_gives_the_same_features_at_any_batch_size() {
        tch::manual_seed(0);
        let mut vs = VarStore::new(tch::Device::Cpu);
        let cfg = BackboneConfig::ResNet(ResNetConfig {
            depth: 18,
            stem: Stem::Cifar,
            width: 0.125,
        });
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
        save(&mut vs, &net, 16, &path).unwrap();
        let loaded = CModule::load(&path).unwrap();
        for n in [1, 5] {
            let x = Tensor::randn([n, 3, 16, 16], (Kind::Float, tch::Device::Cpu));
            let want = tch::no_grad(|| net.features_at(&x, false, Layer::Layer4));
            let got = loaded.forward_ts(&[&x]).unwrap();
            assert_eq!(got.size(), vec![n, 64]);
            let diff = (&got - &want).abs().max().double_value(&[]);
            assert!(diff < 1e-5, "batch {n}: {diff}");
        }
        // nothing but the module in the folder
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from("enc.pt")]);
    }
}
