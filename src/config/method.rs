//! `[method]`: the method's name and its own section `[method.<name>]`.

use crate::error::SettingError;
use crate::method::{registry, MethodSpec};
use serde::{Deserialize, Serialize};

/// `[method]`: the method's name and its own section `[method.<name>]` (see
/// [`crate::method::registry`] for the layout; the section's keys and defaults are documented
/// in the method's file). Written as TOML: `[method] name = "<name>"` and
/// `[method.<name>] key = value`.
#[derive(Clone, Debug, PartialEq)]
pub struct MethodConfig {
    /// The method, by name (`--method`). Default the registry's first.
    pub name: String,
    /// The method's section with every key (defaults filled in).
    pub settings: toml::Table,
}

impl Default for MethodConfig {
    fn default() -> Self {
        let name = registry::default_name();
        let settings = (registry::entry(name)
            .expect("the default is registered")
            .defaults)();
        MethodConfig {
            name: name.to_string(),
            settings,
        }
    }
}

impl MethodConfig {
    /// The method's typed section, parsed and checked (errors name the key).
    pub fn spec(&self) -> Result<Box<dyn MethodSpec>, SettingError> {
        (registry::entry(&self.name)?.parse)(self.settings.clone())
    }

    /// As written in TOML: `{ name, <name> = section }`.
    pub(crate) fn to_table(&self) -> toml::Table {
        let mut t = toml::Table::new();
        t.insert("name".into(), toml::Value::String(self.name.clone()));
        t.insert(self.name.clone(), toml::Value::Table(self.settings.clone()));
        t
    }

    /// From `[method]` as written (any layout: [`super::migrate`] makes it today's, then
    /// [`registry::resolve`] reads it).
    pub fn from_table(mut table: toml::Table) -> Result<Self, SettingError> {
        super::migrate::method_table(&mut table)?;
        let (name, settings) = registry::resolve(table)?;
        Ok(MethodConfig { name, settings })
    }
}

impl Serialize for MethodConfig {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.to_table().serialize(s)
    }
}

impl<'de> Deserialize<'de> for MethodConfig {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let table = toml::Table::deserialize(d)?;
        MethodConfig::from_table(table).map_err(serde::de::Error::custom)
    }
}
