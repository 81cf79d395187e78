//! Old layouts of `[method]` made today's, before the registry reads it. Run configs and
//! checkpoints of older versions load through here; so do the flags (`--loss`,
//! `--temperature`), which still write the flat keys `method.loss`, `method.temperature`.
//!
//! | layout (saved until)                        | example                                        |
//! |---------------------------------------------|------------------------------------------------|
//! | flat `[method]` (per-method sections)       | `[method] name = "simclr"  temperature = 0.5 loss = "dcl" margin = 0.5 …` |
//! | a loss by name beside its numbers (the loss tables) | `[method.simclr] loss = "dcl"  temperature = 0.5  barlow_lambda = 0.005 …` |
//! | today                                       | `[method.simclr.loss] kind = "dcl"  temperature = 0.5` |
//!
//! Two rules, neither naming a method:
//! 1. **A tagged loss.** Where the chosen method's section has a loss table (`loss.kind`), a
//!    `loss` given by name becomes `{ kind = name }`, and the loose numbers of the old layouts
//!    (flat, or in the section) move into it under their names of today
//!    ([`RENAMED`]: `barlow_lambda` → `lambda` …) when that loss takes them. One it does not
//!    take is dropped at the value every old config saved ([`OLD_DEFAULTS`]), or when it comes
//!    from a run config of the second layout (its run trained without it); otherwise it is
//!    refused: `--loss vicreg --margin 0.7` did nothing before, silently.
//! 2. **Flat keys of other methods.** The flat layout saved every method's keys; one the chosen
//!    method lacks is dropped at its saved value, and left for the registry to refuse otherwise.

use crate::error::SettingError;
use crate::loss::TwoViewLoss;
use crate::method::registry;

/// Loss parameters whose names changed when the loss became a table: (old, today).
pub const RENAMED: &[(&str, &str)] = &[
    ("barlow_lambda", "lambda"),
    ("n_pair_l2", "l2"),
    ("vicreg_weights", "weights"),
];

/// The keys of the old layouts with the value they saved for every run, whatever its method.
pub const OLD_DEFAULTS: &[(&str, OldValue)] = &[
    ("temperature", OldValue::Float(0.2)),
    ("loss", OldValue::Text("nt_xent")),
    ("margin", OldValue::Float(0.5)),
    ("barlow_lambda", OldValue::Float(5e-3)),
    ("vicreg_weights", OldValue::Floats(&[25.0, 25.0, 1.0])),
    ("n_pair_l2", OldValue::Float(0.002)),
    ("tile_rows", OldValue::Int(0)),
    ("ema_momentum", OldValue::Float(0.99)),
    ("queue_size", OldValue::Int(4096)),
    ("prototypes", OldValue::Int(3000)),
    ("prototype_temperature", OldValue::Float(0.1)),
    ("sinkhorn_epsilon", OldValue::Float(0.05)),
    ("teacher_temperature", OldValue::Float(0.04)),
    ("center_momentum", OldValue::Float(0.9)),
];

/// A value of [`OLD_DEFAULTS`].
#[derive(Debug)]
pub enum OldValue {
    Float(f64),
    Int(i64),
    Text(&'static str),
    Floats(&'static [f64]),
}

impl OldValue {
    fn matches(&self, v: &toml::Value) -> bool {
        let num = |v: &toml::Value| match v {
            toml::Value::Float(f) => Some(*f),
            toml::Value::Integer(i) => Some(*i as f64),
            _ => None,
        };
        match self {
            OldValue::Float(f) => num(v) == Some(*f),
            OldValue::Int(i) => num(v) == Some(*i as f64),
            OldValue::Text(s) => v.as_str() == Some(s),
            OldValue::Floats(fs) => v.as_array().is_some_and(|a| {
                a.len() == fs.len() && a.iter().zip(fs.iter()).all(|(x, f)| num(x) == Some(*f))
            }),
        }
    }
}

/// Whether `key = v` is what every old config saved.
fn old_default(key: &str, v: &toml::Value) -> bool {
    OLD_DEFAULTS.iter().any(|(k, d)| *k == key && d.matches(v))
}

/// `[method]` as written (any layout) → today's layout; errors name the key.
pub fn method_table(table: &mut toml::Table) -> Result<(), SettingError> {
    let name = match table.get("name") {
        None => registry::default_name().to_string(),
        Some(toml::Value::String(s)) => s.clone(),
        Some(_) => return Ok(()), // the registry names the mistake
    };
    let Ok(entry) = registry::entry(&name) else {
        return Ok(());
    };
    let defaults = (entry.defaults)();
    if let Some(toml::Value::Table(default_loss)) = defaults.get("loss") {
        tagged_loss(table, &name, &defaults, default_loss)?;
    }
    // rule 2: flat keys the chosen method lacks, at their saved value
    table.retain(|k, v| {
        k == "name"
            || matches!(v, toml::Value::Table(_))
            || defaults.contains_key(k)
            || !old_default(k, v)
    });
    Ok(())
}

/// Rule 1 for the chosen method `name`, whose default section `defaults` holds the loss table
/// `default_loss`.
fn tagged_loss(
    table: &mut toml::Table,
    name: &str,
    defaults: &toml::Table,
    default_loss: &toml::Table,
) -> Result<(), SettingError> {
    let mut section = match table.remove(name) {
        Some(toml::Value::Table(t)) => t,
        Some(other) => {
            table.insert(name.into(), other); // not a section: the registry says so
            return Ok(());
        }
        None => toml::Table::new(),
    };
    // the loss as given: the section's, then the flags' (flat) over it
    // a loss by name in the section: a run config of the second layout, whose run trained
    // without the numbers its loss does not take (they are dropped, whatever their value)
    let saved_run = matches!(section.get("loss"), Some(toml::Value::String(_)));
    let mut loss = match section.remove("loss") {
        Some(toml::Value::Table(t)) => t,
        Some(toml::Value::String(kind)) => kind_table(kind),
        Some(other) => {
            return Err(format!("method.{name}.loss is {other}: give a loss table").into())
        }
        None => toml::Table::new(),
    };
    match table.remove("loss") {
        Some(toml::Value::String(kind)) => {
            // the flag chose the loss: the numbers of another loss (the defaults', a file's)
            // do not apply to it
            if loss.get("kind").and_then(toml::Value::as_str) != Some(kind.as_str()) {
                loss.retain(|k, v| k != "kind" && TwoViewLoss::takes(&kind, k, v));
            }
            loss.insert("kind".into(), toml::Value::String(kind));
        }
        Some(other) => return Err(format!("method.loss is {other}: give a loss's name").into()),
        None => {}
    }
    let kind = match loss.get("kind") {
        Some(toml::Value::String(k)) => k.clone(),
        Some(other) => {
            return Err(format!("method.{name}.loss.kind is {other}: give a loss's name").into())
        }
        None => default_loss["kind"]
            .as_str()
            .unwrap_or_default()
            .to_string(),
    };
    // unknown kinds: the same message as the flag's (it lists the choices)
    TwoViewLoss::of_kind(&kind)
        .map_err(|e| SettingError::Other(format!("method.{name}.loss: {e}")))?;
    if !loss.contains_key("kind") {
        // only numbers given: they join the default loss's own
        loss = default_loss.clone().into_iter().chain(loss).collect();
    }
    loss.insert("kind".into(), toml::Value::String(kind.clone()));
    // loose numbers of the old layouts: the section's, then the flat ones
    let loose: Vec<(String, toml::Value, String)> = {
        let mut v = Vec::new();
        for (k, val) in section.clone() {
            if !defaults.contains_key(&k) {
                section.remove(&k);
                v.push((k.clone(), val, format!("method.{name}.{k}")));
            }
        }
        for (k, val) in table.clone() {
            if k != "name" && !matches!(val, toml::Value::Table(_)) && !defaults.contains_key(&k) {
                table.remove(&k);
                v.push((k.clone(), val, format!("method.{k}")));
            }
        }
        v
    };
    for (key, value, path) in loose {
        let today = RENAMED
            .iter()
            .find(|(old, _)| *old == key)
            .map_or(key.as_str(), |(_, new)| new);
        let in_section = path.matches('.').count() == 2;
        if TwoViewLoss::takes(&kind, today, &value) {
            loss.insert(today.into(), value);
        } else if !(old_default(&key, &value) || saved_run && in_section) {
            let takers: Vec<&str> = crate::loss::two_view::NAMES
                .iter()
                .copied()
                .filter(|k| TwoViewLoss::takes(k, today, &value))
                .collect();
            if takers.is_empty() {
                // not a loss's setting: back where it was, for the registry to name
                match in_section {
                    false => table.insert(key, value),
                    true => section.insert(key, value),
                };
                continue;
            }
            return Err(format!(
                "{path} is {value} but method.{name}.loss is {kind:?}, which takes no `{today}`: \
                 remove it, or choose a loss that takes it ({})",
                takers.join(", ")
            )
            .into());
        }
    }
    section.insert("loss".into(), toml::Value::Table(loss));
    table.insert(name.into(), toml::Value::Table(section));
    Ok(())
}

fn kind_table(kind: String) -> toml::Table {
    let mut t = toml::Table::new();
    t.insert("kind".into(), toml::Value::String(kind));
    t
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::MethodConfig;

    fn load(text: &str) -> Result<MethodConfig, String> {
        MethodConfig::from_table(toml::from_str(text).unwrap()).map_err(|e| e.to_string())
    }

    fn loss_of(text: &str) -> TwoViewLoss {
        let cfg = load(text).unwrap();
        toml::Value::Table(cfg.settings["loss"].as_table().unwrap().clone())
            .try_into()
            .unwrap()
    }

    #[test]
    fn the_flat_layout_loads() {
        // config.toml as runs saved it before the per-method sections
        let old = "name = \"simclr\"\ntemperature = 0.5\nloss = \"nt_xent\"\nmargin = 0.5\n\
                   barlow_lambda = 0.005\nvicreg_weights = [25.0, 25.0, 1.0]\nn_pair_l2 = 0.002\n\
                   tile_rows = 0\nema_momentum = 0.99\nqueue_size = 4096\nprototypes = 3000\n\
                   prototype_temperature = 0.1\nsinkhorn_epsilon = 0.05\nteacher_temperature = 0.04\n\
                   center_momentum = 0.9\n";
        assert_eq!(loss_of(old), TwoViewLoss::NtXent { temperature: 0.5 });
        let dino = load(
            &old.replace("\"simclr\"", "\"dino\"")
                .replace("temperature = 0.5", "temperature = 0.2"),
        )
        .unwrap();
        assert_eq!(dino.name, "dino");
        assert!(dino.settings.contains_key("teacher_temperature"));
    }

    #[test]
    fn the_section_layout_with_a_loss_by_name_loads() {
        // [method.simclr] as runs saved it before the loss tables
        let old = "name = \"simclr\"\n[simclr]\ntemperature = 0.3\nloss = \"barlow_twins\"\n\
                   margin = 0.5\nbarlow_lambda = 0.01\nvicreg_weights = [25.0, 25.0, 1.0]\n\
                   n_pair_l2 = 0.002\ntile_rows = 0\n";
        // its τ did nothing in that run (Barlow Twins has none): dropped, not refused
        assert_eq!(loss_of(old), TwoViewLoss::BarlowTwins { lambda: 0.01 });
        let tiled = old
            .replace("barlow_twins", "nt_xent_tiled")
            .replace("tile_rows = 0", "tile_rows = 64");
        assert_eq!(
            loss_of(&tiled),
            TwoViewLoss::NtXentTiled {
                temperature: 0.3,
                tile_rows: 64
            }
        );
    }

    #[test]
    fn flags_choose_the_kind_and_set_its_numbers() {
        assert_eq!(
            loss_of("name = \"simclr\"\nloss = \"dcl\"\ntemperature = 0.4"),
            TwoViewLoss::Dcl { temperature: 0.4 }
        );
        assert_eq!(
            loss_of("temperature = 0.4"),
            TwoViewLoss::NtXent { temperature: 0.4 },
            "the default method and loss"
        );
        // a flag over a file's loss table: the kind changes, its numbers stay where they fit
        assert_eq!(
            loss_of("loss = \"info_nce\"\n[simclr.loss]\nkind = \"dcl\"\ntemperature = 0.3"),
            TwoViewLoss::InfoNce { temperature: 0.3 }
        );
        assert_eq!(
            loss_of("loss = \"n_pair\"\n[simclr.loss]\nkind = \"dcl\"\ntemperature = 0.3"),
            TwoViewLoss::NPair { l2: 0.002 },
            "a τ of the file's loss does not follow the flag to a loss without one"
        );
        assert_eq!(
            loss_of("name = \"simclr\"\n[simclr.loss]\nkind = \"margin\"\nmargin = 0.7"),
            TwoViewLoss::Margin { margin: 0.7 }
        );
    }

    #[test]
    fn another_losss_number_is_refused_unless_it_is_the_saved_default() {
        let e = load("loss = \"vicreg\"\nmargin = 0.7").unwrap_err();
        assert!(
            e.contains("method.margin is 0.7")
                && e.contains("\"vicreg\"")
                && e.contains("triplet, margin"),
            "{e}"
        );
        let e = load("loss = \"vicreg\"\ntemperature = 0.5").unwrap_err();
        assert!(e.contains("takes no `temperature`"), "{e}");
        assert!(
            load("loss = \"vicreg\"\nmargin = 0.5").is_ok(),
            "saved default"
        );
        let e = load("loss = \"ntxent\"").unwrap_err();
        assert!(
            e.contains("ntxent") && e.contains("nt_xent, nt_xent_tiled"),
            "{e}"
        );
        // not a loss's setting at all: the registry's message
        let e = load("name = \"simclr\"\nqueue_size = 64").unwrap_err();
        assert!(e.contains("method.queue_size"), "{e}");
        // another method's flat key: dropped at its saved value, refused otherwise
        let byol = load("name = \"byol\"\nqueue_size = 4096").unwrap();
        assert!(!byol.settings.contains_key("queue_size"));
        let e = load("name = \"byol\"\nqueue_size = 64").unwrap_err();
        assert!(
            e.contains("method.queue_size") && e.contains("ema_momentum"),
            "{e}"
        );
    }
}
