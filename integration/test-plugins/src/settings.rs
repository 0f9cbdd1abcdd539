//! [`Settings`]: a test plugin's string settings, from its `configure` map and its command line.

use std::collections::BTreeMap;
use std::time::Duration;

use gatekeeper_plugin_sdk::{HookError, Object};
use serde_json::Value;

/// String settings by key. Keys are normalized: `-` reads as `_` (`delay-ms` is `delay_ms`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Settings {
    values: BTreeMap<String, String>,
}

fn normalize(key: &str) -> String {
    key.replace('-', "_")
}

impl Settings {
    /// Reads `--key VALUE`, `--key=VALUE` and bare `--key` (meaning `true`) words.
    pub fn from_args(args: impl IntoIterator<Item = String>) -> Result<Self, String> {
        let mut values = BTreeMap::new();
        let mut args = args.into_iter().peekable();
        while let Some(word) = args.next() {
            let Some(key) = word.strip_prefix("--").filter(|k| !k.is_empty()) else {
                return Err(format!(
                    "unexpected argument `{word}` (expected --key VALUE)"
                ));
            };
            let (key, value) = match key.split_once('=') {
                Some((key, value)) => (key, value.to_owned()),
                None => match args.next_if(|next| !next.starts_with("--")) {
                    Some(value) => (key, value),
                    None => (key, "true".to_owned()),
                },
            };
            values.insert(normalize(key), value);
        }
        Ok(Settings { values })
    }

    /// Reads a `configure` map: strings as they are, other values as JSON text (`5`, `true`).
    pub fn from_config(config: &Object) -> Self {
        let values = config
            .iter()
            .map(|(key, value)| {
                let text = match value {
                    Value::String(s) => s.clone(),
                    other => other.to_string(),
                };
                (normalize(key), text)
            })
            .collect();
        Settings { values }
    }

    /// These settings with `overrides` replacing the keys it has.
    #[must_use]
    pub fn overridden_by(mut self, overrides: &Settings) -> Self {
        self.values.extend(overrides.values.clone());
        self
    }

    /// The value of `key`, if set.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.values.get(&normalize(key)).map(String::as_str)
    }

    /// Whether `key` is set to `true` (or `1`, `yes`, `on`).
    pub fn flag(&self, key: &str) -> bool {
        self.get(key).is_some_and(|v| {
            ["true", "1", "yes", "on"]
                .iter()
                .any(|t| v.eq_ignore_ascii_case(t))
        })
    }

    /// `key` as milliseconds; zero when unset.
    pub fn millis(&self, key: &str) -> Result<Duration, HookError> {
        match self.get(key) {
            None => Ok(Duration::ZERO),
            Some(v) => v.trim().parse().map(Duration::from_millis).map_err(|_| {
                HookError::invalid_params(format!(
                    "`{key}` must be a number of milliseconds, not `{v}`"
                ))
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use serde_json::json;

    fn args(words: &[&str]) -> Result<Settings, String> {
        Settings::from_args(words.iter().map(|w| (*w).to_owned()))
    }

    #[test]
    fn command_line_forms() {
        let s = args(&["--hooks", "modify_request", "--delay-ms=20", "--fail"]).unwrap();
        assert_eq!(s.get("hooks"), Some("modify_request"));
        assert_eq!(s.millis("delay_ms").unwrap(), Duration::from_millis(20));
        assert!(s.flag("fail"));
        assert!(args(&["oops"]).is_err());
    }

    #[test]
    fn the_command_line_overrides_the_config_map() {
        let config = json!({"file": "/tmp/x", "delay_ms": 5, "fail": true, "header": "x-a"});
        let config = Settings::from_config(config.as_object().unwrap());
        assert_eq!(config.get("delay_ms"), Some("5"));
        let s = config.overridden_by(&args(&["--header", "x-b"]).unwrap());
        assert_eq!(s.get("header"), Some("x-b"));
        assert_eq!(s.get("file"), Some("/tmp/x"));
        assert!(s.flag("fail"));
        assert!(s.millis("header").is_err());
    }
}
