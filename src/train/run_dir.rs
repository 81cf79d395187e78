//! The run folder: `config.toml`, `checkpoint.safetensors` (model + optimiser + state),
//! `metrics.jsonl`, and `encoder.safetensors` (the backbone alone, torchvision names).

use super::RunState;
use crate::backbone::Backbone;
use crate::checkpoint::{self, write_atomic, STATE_KEY};
use crate::config::TrainConfig;
use crate::eval::FrozenEncoder;
use anyhow::{bail, Context};
use std::collections::HashMap;
use std::fs::File;
use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};
use tch::{nn::VarStore, Tensor};

pub struct RunDir {
    pub dir: PathBuf,
    /// The open `.lock` file whose exclusive `flock` this process holds while it writes the
    /// folder (None for a folder opened to read); the OS releases it when the process dies.
    _lock: Option<File>,
}

/// The lock file of a run folder: it holds the pid of the process writing the folder.
pub const LOCK_FILE: &str = ".lock";

impl RunDir {
    /// A run folder to read (eval, embed): no lock, nothing created.
    pub fn open(dir: &Path) -> Self {
        RunDir {
            dir: dir.to_path_buf(),
            _lock: None,
        }
    }

    /// Creates the folder, proves it writable now, not after an hour of training, and takes
    /// its lock: a second process that writes the same folder is refused, naming the first.
    pub fn create(dir: &Path) -> anyhow::Result<Self> {
        std::fs::create_dir_all(dir).map_err(|e| {
            anyhow::anyhow!(
                "cannot create the run folder {} ({e}): choose another --out",
                dir.display()
            )
        })?;
        let probe = dir.join(".write-test");
        write_atomic(&probe, b"ok").map_err(|e| {
            anyhow::anyhow!(
                "the run folder {} is not writable ({e}): choose another --out",
                dir.display()
            )
        })?;
        let _ = std::fs::remove_file(&probe);
        Ok(RunDir {
            dir: dir.to_path_buf(),
            _lock: lock(dir)?,
        })
    }

    pub fn checkpoint(&self) -> PathBuf {
        self.dir.join("checkpoint.safetensors")
    }
    pub fn config(&self) -> PathBuf {
        self.dir.join("config.toml")
    }
    pub fn metrics(&self) -> PathBuf {
        self.dir.join("metrics.jsonl")
    }
    pub fn encoder(&self) -> PathBuf {
        self.dir.join("encoder.safetensors")
    }

    /// Saves the model's variables (its method's state among them), the optimiser buffers and
    /// the state, atomically.
    pub fn save_checkpoint(
        &self,
        vs: &VarStore,
        optim: &[(String, Tensor)],
        state: &RunState,
    ) -> anyhow::Result<()> {
        let mut tensors: Vec<(String, Tensor)> = vs
            .variables()
            .into_iter()
            .map(|(n, t)| (format!("model.{n}"), t))
            .collect();
        tensors.extend(
            optim
                .iter()
                .map(|(n, t)| (format!("optim.{n}"), t.shallow_clone())),
        );
        let meta = HashMap::from([(STATE_KEY.to_string(), serde_json::to_string(state)?)]);
        checkpoint::save(&self.checkpoint(), &tensors, meta)?;
        write_atomic(&self.config(), state.config.to_toml().as_bytes())?;
        Ok(())
    }

    /// Writes the encoder's variables (those under `prefix`, with the prefix removed) under
    /// torchvision's names ([`crate::export::torchvision`]).
    pub fn export_encoder(&self, vs: &VarStore, prefix: &str) -> anyhow::Result<()> {
        crate::export::torchvision::save(vs, prefix, &self.encoder())?;
        Ok(())
    }

    /// On resume from the checkpoint of step `step`: drops the metrics lines of later steps
    /// (logged before an interruption, they will be logged again) and any line cut short by
    /// the interruption, so that every step appears once. Rewritten atomically.
    pub fn truncate_log_after(&self, step: u64) -> anyhow::Result<()> {
        let path = self.metrics();
        let Ok(text) = std::fs::read_to_string(&path) else {
            return Ok(()); // no log yet
        };
        let kept: String = text
            .lines()
            .filter(|l| {
                serde_json::from_str::<serde_json::Value>(l)
                    .ok()
                    .and_then(|v| v.get("step").and_then(|s| s.as_u64()))
                    .is_some_and(|s| s <= step)
            })
            .map(|l| format!("{l}\n"))
            .collect();
        write_atomic(&path, kept.as_bytes())?; // the error names the file
        Ok(())
    }

    /// Appends one JSON line to `metrics.jsonl`.
    pub fn log(&self, line: &serde_json::Value) -> anyhow::Result<()> {
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.metrics())
            .with_context(|| format!("cannot append to {}", self.metrics().display()))?;
        writeln!(f, "{line}")?;
        Ok(())
    }
}

/// A loaded checkpoint: its state and its tensors by group.
pub struct LoadedCheckpoint {
    pub state: RunState,
    /// The model's variables, the method's state among them.
    pub model: HashMap<String, Tensor>,
    pub optim: Vec<(String, Tensor)>,
}

/// Reads a checkpoint written by [`RunDir::save_checkpoint`].
pub fn load_checkpoint(path: &Path) -> anyhow::Result<LoadedCheckpoint> {
    let (tensors, meta) = checkpoint::load(path)?;
    let Some(state) = meta.get(STATE_KEY) else {
        bail!(
            "{} has no selfsup run state: it is not a selfsup checkpoint",
            path.display()
        );
    };
    let state: RunState = serde_json::from_str(state).with_context(|| {
        format!(
            "the run state in {} cannot be read (from another selfsup version?)",
            path.display()
        )
    })?;
    let mut model = HashMap::new();
    let mut optim = Vec::new();
    for (name, t) in tensors {
        if let Some(n) = name.strip_prefix("model.") {
            model.insert(n.to_string(), t);
        } else if let Some(n) = name.strip_prefix("optim.") {
            // SGD's `momentum.<param>`, AdamW's `exp_avg.<param>`, `exp_avg_sq.<param>`, `step`
            optim.push((n.to_string(), t));
        }
    }
    Ok(LoadedCheckpoint {
        state,
        model,
        optim,
    })
}

/// Copies checkpoint tensors into the store's variables; every variable must be present with
/// its shape, and every tensor must be a variable, else the error names it (e.g. a checkpoint
/// of another backbone).
pub fn restore_variables(
    vs: &VarStore,
    model: &HashMap<String, Tensor>,
    origin: &Path,
) -> anyhow::Result<()> {
    restore_under(vs, model, origin, "")
}

/// [`restore_variables`] for the tensors named `<prefix>…` alone (the store's variables carry
/// the prefix too).
fn restore_under(
    vs: &VarStore,
    model: &HashMap<String, Tensor>,
    origin: &Path,
    prefix: &str,
) -> anyhow::Result<()> {
    let mut vars: Vec<(String, Tensor)> = vs.variables().into_iter().collect();
    vars.sort_by(|a, b| a.0.cmp(&b.0));
    for (name, mut var) in vars {
        let src = model.get(&name).with_context(|| {
            format!(
                "{} has no tensor {name}: it was written for another model",
                origin.display()
            )
        })?;
        if src.size() != var.size() {
            bail!(
                "{}: {name} is {:?} there but this model needs {:?}: it was written for another model (depth/width/stem)",
                origin.display(),
                src.size(),
                var.size()
            );
        }
        tch::no_grad(|| var.copy_(src));
    }
    let known = vs.variables();
    let extra = model
        .keys()
        .filter(|n| n.starts_with(prefix) && !known.contains_key(*n))
        .min();
    if let Some(extra) = extra {
        bail!(
            "{} holds a tensor this model does not have ({extra}): it was written for another model \
             (depth/width/stem/method) than its config.toml says",
            origin.display()
        );
    }
    Ok(())
}

/// A trained run's encoder, opened for evaluation or export.
pub struct TrainedEncoder {
    /// The run's config (from its checkpoint).
    pub config: TrainConfig,
    /// Holds the encoder's variables (under no prefix).
    pub vs: VarStore,
    pub net: Backbone,
}

impl TrainedEncoder {
    /// The encoder with its memory order and training resolution (the run's, or for a run
    /// from before `model.crop_size` was saved, the one the config gives for `images`), for
    /// [`crate::eval`].
    pub fn frozen(&self, images: &crate::data::ImageStore) -> FrozenEncoder<'_> {
        FrozenEncoder {
            net: &self.net,
            channels_last: self.config.model.uses_channels_last(),
            input_side: self.config.crop_size(images),
            layer: Default::default(),
        }
    }
}

/// Opens the encoder of the run in `dir`: its checkpoint's config and `backbone.*` weights
/// (every encoder variable must be there with its shape). With `random_init`, only the
/// architecture is read (from `config.toml`) and the encoder is initialised as the run's was.
pub fn open_encoder(
    dir: &Path,
    random_init: bool,
    device: tch::Device,
) -> anyhow::Result<TrainedEncoder> {
    let run = RunDir::open(dir);
    if !dir.is_dir() {
        bail!(
            "run folder {} does not exist: pass the --out folder of a `selfsup pretrain` run",
            dir.display()
        );
    }
    let build = |config: TrainConfig| -> anyhow::Result<TrainedEncoder> {
        tch::manual_seed(config.train.seed as i64);
        let vs = VarStore::new(device);
        let side = config.planned_crop_size();
        let net = Backbone::new(
            &(vs.root() / "backbone"),
            &config.model.backbone_config(side),
        )
        .map_err(anyhow::Error::msg)?;
        if config.model.uses_channels_last() {
            crate::backbone::to_channels_last(&vs);
        }
        Ok(TrainedEncoder { config, vs, net })
    };
    if random_init {
        let path = run.config();
        if !path.is_file() {
            bail!(
                "{} has no config.toml: pass the --out folder of a `selfsup pretrain` run",
                dir.display()
            );
        }
        let mut config = TrainConfig::load(Some(&path), &[])?;
        config.data.path = config
            .data
            .path
            .map(|p| super::run_paths::resolve_data_path(dir, p));
        return build(config);
    }
    let ckpt = run.checkpoint();
    if !ckpt.exists() {
        bail!(
            "{} has no checkpoint.safetensors: is it a `selfsup pretrain` run folder?",
            dir.display()
        );
    }
    let loaded = load_checkpoint(&ckpt)?;
    let mut config = loaded.state.config;
    config.data.path = config
        .data
        .path
        .map(|p| super::run_paths::resolve_data_path(dir, p));
    let enc = build(config)?;
    restore_under(&enc.vs, &loaded.model, &ckpt, crate::method::ENCODER_PREFIX)
        .context("loading the run's weights")?;
    Ok(enc)
}

/// Takes the exclusive lock of `dir` (see [`LOCK_FILE`]) and writes this process's pid into
/// it. None when this process already holds it (the demo's folder, then its pretraining).
fn lock(dir: &Path) -> anyhow::Result<Option<File>> {
    let path = dir.join(LOCK_FILE);
    let mut f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .map_err(|e| {
            anyhow::anyhow!("cannot open {} ({e}): choose another --out", path.display())
        })?;
    match f.try_lock() {
        Ok(()) => {
            f.set_len(0)?;
            f.rewind()?;
            write!(f, "{}", std::process::id())?;
            Ok(Some(f))
        }
        Err(std::fs::TryLockError::WouldBlock) => {
            let mut pid = String::new();
            let _ = f.read_to_string(&mut pid);
            let pid = pid.trim();
            if pid == std::process::id().to_string() {
                return Ok(None);
            }
            bail!(
                "{} is in use by process {pid} (another selfsup run writes it): wait for it to end, \
                 or choose another --out",
                dir.display()
            )
        }
        Err(std::fs::TryLockError::Error(e)) => {
            bail!("cannot lock {} ({e}): choose another --out", path.display())
        }
    }
}
