//! Typed errors for what a user sets: each variant is displayed as the message that names the
//! setting and says what to do; tests match the variant and its key, not the wording.

use std::fmt::Display;

/// A setting that cannot be used.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SettingError {
    /// A value outside what the setting accepts: `"{key} is {value}: {rule}"`
    /// (`method.moco.temperature is 0: it must be > 0`).
    #[error("{key} is {value}: {rule}")]
    OutOfRange {
        key: String,
        value: String,
        rule: String,
    },
    /// A key that no section has: `"unknown config key `{key}`: {hint}"`.
    #[error("unknown config key `{key}`: {hint}")]
    UnknownKey { key: String, hint: String },
    /// A name that is not one of the choices: `"{key} is {name:?}: the {what} are: {choices}"`.
    #[error("{key} is {name:?}: the {what} are: {}", choices.join(", "))]
    UnknownName {
        key: String,
        name: String,
        what: &'static str,
        choices: Vec<&'static str>,
    },
    /// Any other mistake in a setting, as its message.
    #[error("{0}")]
    Other(String),
}

impl SettingError {
    /// `key` is `value`, which breaks `rule` (`"it must be > 0"`).
    pub fn out_of_range(
        key: impl Into<String>,
        value: impl Display,
        rule: impl Into<String>,
    ) -> Self {
        SettingError::OutOfRange {
            key: key.into(),
            value: value.to_string(),
            rule: rule.into(),
        }
    }

    /// The setting an `OutOfRange` or `UnknownKey` names.
    pub fn key(&self) -> Option<&str> {
        match self {
            SettingError::OutOfRange { key, .. }
            | SettingError::UnknownKey { key, .. }
            | SettingError::UnknownName { key, .. } => Some(key),
            SettingError::Other(_) => None,
        }
    }
}

impl From<&str> for SettingError {
    fn from(message: &str) -> Self {
        SettingError::Other(message.to_string())
    }
}

impl From<String> for SettingError {
    fn from(message: String) -> Self {
        SettingError::Other(message)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_variant_reads_as_the_message_it_replaced() {
        let e = SettingError::out_of_range("method.moco.temperature", 0.0, "it must be > 0");
        assert_eq!(
            e.to_string(),
            "method.moco.temperature is 0: it must be > 0"
        );
        assert_eq!(e.key(), Some("method.moco.temperature"));
        let e = SettingError::UnknownName {
            key: "method.name".into(),
            name: "swav2".into(),
            what: "methods",
            choices: vec!["simclr", "swav"],
        };
        assert_eq!(
            e.to_string(),
            "method.name is \"swav2\": the methods are: simclr, swav"
        );
    }
}
