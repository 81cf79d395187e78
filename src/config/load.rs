//! Loading a config: defaults ← TOML file ← `section.key=value` overrides, with unknown keys
//! refused against the defaults; and the config as flat `section.key` settings.

use super::{ConfigError, MethodConfig, OptimConfig, TrainConfig};
use std::collections::BTreeMap;
use std::path::Path;

/// The section whose keys depend on the chosen method: merged freely here, then resolved and
/// checked by the method registry ([`MethodConfig::from_table`]).
const METHOD_SECTION: &str = "method";

/// Keys whose default is unset, so that they are absent from the serialised defaults.
const OPTIONAL_KEYS: &[&str] = &[
    "data.path",
    "data.image_size",
    "data.cache",
    "data.limit",
    "model.crop_size",
    "model.projection_hidden",
    "model.backbone",
    "optim.lr",
    "optim.name",
    "optim.betas",
    "optim.weight_decay",
    "train.minutes",
    "train.micro_batch",
];

impl TrainConfig {
    /// Defaults ← TOML file ← `section.key=value` overrides, then [`TrainConfig::validate`].
    pub fn load(file: Option<&Path>, overrides: &[String]) -> Result<Self, ConfigError> {
        Self::load_onto(TrainConfig::default(), file, overrides)
    }

    /// `start` (a command's own defaults, such as the demo's, or a run's saved config on
    /// resume) ← TOML file ← `section.key=value` overrides, then [`TrainConfig::validate`].
    /// An unset `optim.lr` becomes the method's own learning rate.
    pub fn load_onto(
        start: TrainConfig,
        file: Option<&Path>,
        overrides: &[String],
    ) -> Result<Self, ConfigError> {
        Self::load_onto_unnamed(start, file, overrides).map_err(|e| match (file, e) {
            (_, e @ (ConfigError::Read { .. } | ConfigError::Parse { .. })) => e,
            (_, e @ ConfigError::BadOverride(_)) => e,
            (Some(path), e) => ConfigError::InFile {
                path: path.into(),
                with_flags: !overrides.is_empty(),
                inner: Box::new(e),
            },
            (None, e) => e,
        })
    }

    /// [`Self::load_onto`], its errors not naming the file.
    fn load_onto_unnamed(
        start: TrainConfig,
        file: Option<&Path>,
        overrides: &[String],
    ) -> Result<Self, ConfigError> {
        let mut table = toml::Table::try_from(start).expect("configs serialise");
        if let Some(path) = file {
            let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
                path: path.into(),
                cause: source,
            })?;
            let user: toml::Table = toml::from_str(&text).map_err(|e| ConfigError::Parse {
                path: path.into(),
                message: e.to_string(),
            })?;
            merge(&mut table, user, "")?;
        }
        for o in overrides {
            apply_override(&mut table, o)?;
        }
        if let Some(toml::Value::Table(m)) = table.remove(METHOD_SECTION) {
            let method = MethodConfig::from_table(m)?;
            table.insert(METHOD_SECTION.into(), toml::Value::Table(method.to_table()));
        }
        let mut cfg: TrainConfig = toml::Value::Table(table)
            .try_into()
            .map_err(|e: toml::de::Error| ConfigError::Invalid(e.to_string()))?;
        cfg.validate()?;
        let spec = cfg.method.spec().ok();
        // the rate at batch 256 when a scaling rule is set: `lr()` applies the rule, once (it
        // stored the scaled rate here, and every use scaled it again: 76.8 for LARS at 4096)
        cfg.optim.lr = Some(lr_for(&cfg.optim, spec.as_deref()));
        let name = cfg.optim.optimizer(spec.as_deref());
        cfg.optim.name = Some(name);
        cfg.optim.weight_decay = Some(cfg.optim.weight_decay_for(name));
        if name == crate::optim::OptimizerName::Adamw {
            cfg.optim.betas = Some(cfg.optim.betas());
        }
        Ok(cfg)
    }

    /// The peak learning rate: `optim.lr`, else the method's own, else
    /// [`OptimConfig::DEFAULT_LR`]; times `optim.lr_scaling`'s factor of the batch size.
    pub fn lr(&self) -> f64 {
        lr_for(&self.optim, self.method.spec().ok().as_deref())
            * self.optim.lr_scaling.factor(self.train.batch_size)
    }

    /// Every setting as `section.key` (`method.<name>.key` for the method's) → its value as a
    /// person writes it (for naming differences).
    pub fn flat_settings(&self) -> BTreeMap<String, String> {
        let table = toml::Table::try_from(self).expect("configs serialise");
        let mut out = BTreeMap::new();
        flatten(&table, "", &mut out);
        out
    }

    /// The config as TOML text (saved in every run folder).
    pub fn to_toml(&self) -> String {
        toml::to_string_pretty(self).expect("config serialises")
    }
}

/// `optim.lr`, else the method's own learning rate, else [`OptimConfig::DEFAULT_LR`].
fn lr_for(optim: &OptimConfig, spec: Option<&dyn crate::method::MethodSpec>) -> f64 {
    optim
        .lr
        .or_else(|| spec.and_then(|s| s.plan().default_lr))
        .unwrap_or(OptimConfig::DEFAULT_LR)
}

fn flatten(table: &toml::Table, prefix: &str, out: &mut BTreeMap<String, String>) {
    for (k, v) in table {
        let key = join(prefix, k);
        match v {
            toml::Value::Table(t) => flatten(t, &key, out),
            v => {
                out.insert(key, setting_text(v));
            }
        }
    }
}

fn join(prefix: &str, k: &str) -> String {
    match prefix.is_empty() {
        true => k.to_string(),
        false => format!("{prefix}.{k}"),
    }
}

/// A setting's value as a person writes it: f32 fields (`data.crop_min_scale`) as `0.08`, not
/// as the f64 they widen to (`0.07999999821186066`).
fn setting_text(v: &toml::Value) -> String {
    match v {
        toml::Value::Float(f) if (*f as f32) as f64 == *f => format!("{}", *f as f32),
        toml::Value::Array(a) => format!(
            "[{}]",
            a.iter().map(setting_text).collect::<Vec<_>>().join(", ")
        ),
        v => v.to_string(),
    }
}

/// Merges `src` into `dst`, refusing keys that `dst` (the defaults) does not have; the
/// method section is merged as given (the registry checks it).
fn merge(dst: &mut toml::Table, src: toml::Table, prefix: &str) -> Result<(), ConfigError> {
    for (k, v) in src {
        let key = join(prefix, &k);
        match (dst.get_mut(&k), v) {
            (Some(toml::Value::Table(d)), toml::Value::Table(s)) if key == METHOD_SECTION => {
                merge_free(d, s)
            }
            (Some(toml::Value::Table(d)), toml::Value::Table(s)) => merge(d, s, &key)?,
            (Some(toml::Value::Table(_)), v) => {
                return Err(ConfigError::Invalid(format!(
                    "{key} is {v}: it is a section ([{key}]), not a value"
                )))
            }
            (Some(_), toml::Value::Table(_)) => {
                return Err(ConfigError::Invalid(format!(
                    "{key} is a value, not a section: write {key} = <value>"
                )))
            }
            (Some(slot), v) => *slot = v,
            (None, v) if OPTIONAL_KEYS.contains(&key.as_str()) => {
                dst.insert(k, v);
            }
            (None, _) => return Err(unknown_key(dst, &key, prefix)),
        }
    }
    Ok(())
}

/// Merges tables recursively, `src` winning, without checking keys.
fn merge_free(dst: &mut toml::Table, src: toml::Table) {
    for (k, v) in src {
        match (dst.get_mut(&k), v) {
            (Some(toml::Value::Table(d)), toml::Value::Table(s)) => merge_free(d, s),
            (_, v) => {
                dst.insert(k, v);
            }
        }
    }
}

fn unknown_key(section: &toml::Table, key: &str, prefix: &str) -> ConfigError {
    let mut known: Vec<String> = section.keys().cloned().collect();
    let optional = OPTIONAL_KEYS
        .iter()
        .filter_map(|k| k.strip_prefix(&format!("{prefix}.")).map(String::from))
        .filter(|k| !known.contains(k))
        .collect::<Vec<_>>();
    known.extend(optional);
    known.sort();
    ConfigError::UnknownKey {
        key: key.into(),
        section: if prefix.is_empty() {
            "top level".into()
        } else {
            prefix.into()
        },
        known: known.join(", "),
    }
}

/// Applies one `section.key=value` override (`method.<name>.key=value` for a method's
/// section); the value is read as TOML, else as a string.
fn apply_override(table: &mut toml::Table, text: &str) -> Result<(), ConfigError> {
    let (key, raw) = text
        .split_once('=')
        .ok_or_else(|| ConfigError::BadOverride(text.into()))?;
    let key = key.trim();
    let parts: Vec<&str> = key.split('.').collect();
    if parts.len() < 2 || parts.iter().any(|p| p.is_empty()) {
        return Err(ConfigError::BadOverride(text.into()));
    }
    if !table.contains_key(parts[0]) {
        return Err(unknown_key(table, key, ""));
    }
    let value = toml::from_str::<toml::Table>(&format!("v = {raw}"))
        .ok()
        .and_then(|mut t| t.remove("v"))
        .unwrap_or_else(|| toml::Value::String(raw.trim().to_string()));
    let (last, outer) = parts.split_last().expect("at least two parts");
    let mut src = toml::Table::from_iter([(last.to_string(), value)]);
    for p in outer.iter().rev() {
        src = toml::Table::from_iter([(p.to_string(), toml::Value::Table(src))]);
    }
    merge(table, src, "")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::method::{BuildContext, Method, MethodSpec};

    #[derive(Debug)]
    struct OwnLr;

    impl MethodSpec for OwnLr {
        fn plan(&self) -> crate::method::MethodPlan {
            crate::method::MethodPlan {
                default_lr: Some(0.05),
                ..Default::default()
            }
        }
        fn build(
            &self,
            _: &tch::nn::VarStore,
            _: &BuildContext,
        ) -> anyhow::Result<Box<dyn Method>> {
            anyhow::bail!("not built in this test")
        }
    }

    #[test]
    fn the_learning_rate_is_the_flags_else_the_methods_else_the_global_default() {
        let unset = OptimConfig::default();
        assert_eq!(lr_for(&unset, Some(&OwnLr)), 0.05);
        assert_eq!(lr_for(&unset, None), OptimConfig::DEFAULT_LR);
        let given = OptimConfig {
            lr: Some(0.2),
            ..Default::default()
        };
        assert_eq!(lr_for(&given, Some(&OwnLr)), 0.2);
    }

    #[test]
    fn the_scaling_rule_multiplies_the_rate_by_the_batch_over_256() {
        let lr = |rule: &str, batch: usize| {
            let sets = [
                "optim.lr=0.3".to_string(),
                format!("optim.lr_scaling={rule}"),
                format!("train.batch_size={batch}"),
            ];
            TrainConfig::load(None, &sets).unwrap().lr()
        };
        // SimCLR's LARS recipe: 0.3 · 4096 / 256 = 4.8
        assert!((lr("linear", 4096) - 4.8).abs() < 1e-12);
        assert!((lr("sqrt", 4096) - 1.2).abs() < 1e-12);
        assert!((lr("none", 4096) - 0.3).abs() < 1e-12);
        assert!((lr("linear", 64) - 0.075).abs() < 1e-12);
        for rule in ["none", "linear", "sqrt"] {
            assert!((lr(rule, 256) - 0.3).abs() < 1e-12, "{rule}");
        }
        let e = TrainConfig::load(None, &["optim.lr_scaling=cubic".into()]).unwrap_err();
        assert!(e.to_string().contains("lr_scaling"), "{e}");
        // the saved config (what a resume loads) gives the same rate: the rule is applied once
        let sets = [
            "optim.lr=0.3",
            "optim.lr_scaling=linear",
            "train.batch_size=4096",
        ];
        let cfg = TrainConfig::load(None, &sets.map(String::from)).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let saved = dir.path().join("config.toml");
        std::fs::write(&saved, cfg.to_toml()).unwrap();
        let resumed = TrainConfig::load(Some(&saved), &[]).unwrap();
        assert!((resumed.lr() - 4.8).abs() < 1e-12, "{}", resumed.lr());
    }
}
