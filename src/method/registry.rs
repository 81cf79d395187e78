//! The method registry: the only list of method names. `--method`'s choices, `--help`,
//! validation and error hints are read from it.
//!
//! Config layout: `[method] name = "<name>"` and the method's own section `[method.<name>]`
//! (its keys are the fields of its config struct; unknown keys are errors). A key written
//! directly under `[method]` (`method.temperature=0.5`, what `--temperature` sets) means the
//! chosen method's key of that name; one the method does not have is an error. Older layouts
//! are made today's before this reads them (`config/migrate.rs`).

use super::{barlow_twins, byol, deepcluster, dino, moco, simclr, simsiam, supcon, swav, vicreg};
use super::{MethodSection, MethodSpec};
use crate::error::SettingError;

/// One method: its name, a line about it, and its config section's parser and defaults.
pub struct MethodEntry {
    pub name: &'static str,
    pub summary: &'static str,
    /// Reads `[method.<name>]` (defaults filled in) into the method's spec; unknown keys and
    /// bad values are errors naming the key.
    pub parse: fn(toml::Table) -> Result<Box<dyn MethodSpec>, SettingError>,
    /// The section with every default.
    pub defaults: fn() -> toml::Table,
    /// The files the method keeps in the run folder ([`MethodSection::RUN_FILES`]).
    pub run_files: &'static [&'static str],
}

const fn row<S: MethodSection>() -> MethodEntry {
    MethodEntry {
        name: S::NAME,
        summary: S::SUMMARY,
        parse: parse::<S>,
        defaults: defaults::<S>,
        run_files: S::RUN_FILES,
    }
}

/// Every method; the first is the default.
pub static REGISTRY: &[MethodEntry] = &[
    row::<simclr::SimClrConfig>(),
    row::<moco::MoCoConfig>(),
    row::<super::mocov3::MoCoV3Config>(),
    row::<byol::ByolConfig>(),
    row::<simsiam::SimSiamConfig>(),
    row::<super::fastsiam::FastSiamConfig>(),
    row::<barlow_twins::BarlowTwinsConfig>(),
    row::<vicreg::VicRegConfig>(),
    row::<swav::SwAVConfig>(),
    row::<dino::DinoConfig>(),
    row::<super::ibot::IbotConfig>(),
    row::<deepcluster::DeepClusterConfig>(),
    row::<supcon::SupConConfig>(),
    row::<super::nnclr::NnclrConfig>(),
    row::<super::rotation::RotationConfig>(),
    row::<super::relative_patch::RelativePatchConfig>(),
    row::<super::jigsaw::JigsawConfig>(),
    row::<super::temporal_order::TemporalOrderConfig>(),
    row::<super::mae::MaeConfig>(),
    row::<super::simmim::SimMimConfig>(),
    row::<super::ijepa::IJepaConfig>(),
    row::<super::denoising_ae::DenoisingAeConfig>(),
    row::<super::context_encoder::ContextEncoderConfig>(),
    row::<super::clip::ClipConfig>(),
    row::<super::distill::DistillConfig>(),
];

/// The method of `method.name` when none is given.
pub fn default_name() -> &'static str {
    REGISTRY[0].name
}

/// The names of every file some method keeps in its run folder.
pub fn run_files() -> impl Iterator<Item = &'static str> {
    REGISTRY.iter().flat_map(|e| e.run_files.iter().copied())
}

/// The method names, in registry order.
pub fn names() -> Vec<&'static str> {
    REGISTRY.iter().map(|e| e.name).collect()
}

/// The entry of `name`, or an error listing the methods.
pub fn entry(name: &str) -> Result<&'static MethodEntry, SettingError> {
    REGISTRY
        .iter()
        .find(|e| e.name == name)
        .ok_or_else(|| SettingError::UnknownName {
            key: "method.name".into(),
            name: name.into(),
            what: "methods",
            choices: names(),
        })
}

/// The names of the methods whose views satisfy `keep` (e.g. multi-crop ones).
pub fn names_where(keep: impl Fn(&dyn MethodSpec) -> bool) -> Vec<&'static str> {
    REGISTRY
        .iter()
        .filter(|e| (e.parse)((e.defaults)()).is_ok_and(|s| keep(s.as_ref())))
        .map(|e| e.name)
        .collect()
}

fn parse<S: MethodSection>(section: toml::Table) -> Result<Box<dyn MethodSpec>, SettingError> {
    let spec: S = toml::Value::Table(section)
        .try_into()
        .map_err(|e: toml::de::Error| format!("[method.{}]: {}", S::NAME, e.message()))?;
    spec.check()?;
    Ok(Box::new(spec))
}

fn defaults<S: MethodSection>() -> toml::Table {
    toml::Table::try_from(S::default()).expect("method sections serialise")
}

/// `[method]` as written (name, sections, flat keys; merged from defaults, file and
/// overrides) → the chosen method's name and its complete section. Sections of other methods
/// must hold their defaults (a setting for a method that does not run is a mistake).
pub fn resolve(mut table: toml::Table) -> Result<(String, toml::Table), SettingError> {
    let name = match table.remove("name") {
        None => default_name().to_string(),
        Some(toml::Value::String(s)) => s,
        Some(v) => {
            return Err(SettingError::out_of_range(
                "method.name",
                v,
                "it must be a method's name",
            ))
        }
    };
    let chosen = entry(&name)?;
    let mut section = (chosen.defaults)();
    let mut flat = Vec::new();
    for (key, value) in table {
        match (REGISTRY.iter().find(|e| e.name == key), value) {
            (Some(e), toml::Value::Table(given)) if e.name == name => {
                for (k, v) in given {
                    if !section.contains_key(&k) {
                        return Err(unknown(&name, &format!("method.{name}.{k}"), &section));
                    }
                    section.insert(k, v);
                }
            }
            (Some(e), toml::Value::Table(given)) => {
                let defaults = (e.defaults)();
                if let Some((k, v)) = given.iter().find(|(k, v)| defaults.get(*k) != Some(v)) {
                    return Err(format!(
                        "method.{}.{k} is {v} but method.name is {name:?}: settings of another method \
                         do nothing; remove them or choose --method {}",
                        e.name, e.name
                    )
                    .into());
                }
            }
            (Some(e), v) => {
                return Err(SettingError::out_of_range(
                    format!("method.{}", e.name),
                    v,
                    format!("it must be a section of settings ([method.{}])", e.name),
                ))
            }
            (None, v) => flat.push((key, v)),
        }
    }
    for (key, v) in flat {
        if !section.contains_key(&key) {
            return Err(unknown(&name, &format!("method.{key}"), &section));
        }
        section.insert(key, v);
    }
    Ok((name, section))
}

fn unknown(name: &str, key: &str, section: &toml::Table) -> SettingError {
    let keys: Vec<&str> = section.keys().map(String::as_str).collect();
    let last = key.rsplit('.').next().unwrap_or(key);
    let owners: Vec<&str> = REGISTRY
        .iter()
        .filter(|e| (e.defaults)().contains_key(last))
        .map(|e| e.name)
        .collect();
    let hint = format!(
        "method {name:?} has {}{}",
        match keys.is_empty() {
            true => "no settings of its own".to_string(),
            false => format!("the settings {} (under [method.{name}])", keys.join(", ")),
        },
        match owners.is_empty() {
            true => String::new(),
            false => format!("; `{last}` is a setting of {}", owners.join(", ")),
        }
    );
    SettingError::UnknownKey {
        key: key.into(),
        hint,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(text: &str) -> toml::Table {
        toml::from_str(text).unwrap()
    }

    #[test]
    fn every_section_parses_its_defaults_and_names_are_unique() {
        let mut seen = std::collections::HashSet::new();
        for e in REGISTRY {
            assert!(seen.insert(e.name), "{} twice", e.name);
            let mut section = (e.defaults)();
            if e.name == "distill" {
                // the one setting without a default: refused until given
                let e = (e.parse)(section.clone()).err().unwrap().to_string();
                assert!(e.contains("--teacher FILE"), "{e}");
                section.insert("teacher".into(), "teacher.pt".into());
            }
            let spec = (e.parse)(section).unwrap();
            assert!(spec.check().is_ok(), "{}", e.name);
        }
    }

    #[test]
    fn sections_flat_keys_and_other_methods_settings() {
        let def = default_name();
        let (name, s) = resolve(table("")).unwrap();
        assert_eq!((name.as_str(), &s), (def, &(REGISTRY[0].defaults)()));
        // a flat key is the chosen method's key of that name
        let (_, s) = resolve(table("name = \"moco\"\nqueue_size = 64")).unwrap();
        assert_eq!(s["queue_size"].as_integer(), Some(64));
        let (_, s) = resolve(table("name = \"moco\"\n[moco]\nqueue_size = 32")).unwrap();
        assert_eq!(s["queue_size"].as_integer(), Some(32));
        // a flat key the method lacks (config/migrate.rs drops the old layout's defaults)
        let e = resolve(table("name = \"byol\"\nqueue_size = 64")).unwrap_err();
        assert!(
            matches!(&e, SettingError::UnknownKey { key, hint }
                if key == "method.queue_size" && hint.contains("ema_momentum")),
            "{e}"
        );
        let e = resolve(table("name = \"byol\"\n[byol]\nqueue = 1")).unwrap_err();
        assert_eq!(e.key(), Some("method.byol.queue"), "{e}");
        // another method's section: fine at its defaults, an error otherwise
        assert!(resolve(table("name = \"byol\"\n[moco]\nqueue_size = 4096")).is_ok());
        let e = resolve(table("name = \"byol\"\n[moco]\nqueue_size = 64")).unwrap_err();
        let t = e.to_string();
        assert!(
            t.contains("method.moco.queue_size") && t.contains("byol"),
            "{t}"
        );
        let e = resolve(table("name = \"nope\"")).unwrap_err();
        assert!(
            matches!(&e, SettingError::UnknownName { name, choices, .. }
                if name == "nope" && *choices == names()),
            "{e}"
        );
        assert!(e.to_string().contains(&names().join(", ")));
    }
}
