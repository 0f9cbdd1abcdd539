//! Reading values from a plugin's config map. Values arrive as JSON: any TOML value from the
//! config file, or a string from a pass-through flag (`--modifier-rate 5` gives `"5"`), so each
//! reader accepts both. Errors are `invalid params` naming the key, ready to return from
//! `configure`.
//!
//! The typed readers [`int`], [`float`], [`boolean`], [`string`], [`list`] and [`duration_ms`]
//! follow the rules every SDK shares (`plugin-sdk/conformance/testhost.json`); each gives
//! `None` for a missing key, so a default is `.unwrap_or(..)` and a required key is
//! [`required`]:
//!
//! ```
//! use gatekeeper_plugin_sdk::config;
//! # fn main() -> Result<(), gatekeeper_plugin_sdk::HookError> {
//! let map = serde_json::json!({"burst": "5", "window": "2s"});
//! let map = map.as_object().cloned().unwrap_or_default();
//! assert_eq!(config::int(&map, "burst")?.unwrap_or(10), 5);
//! assert_eq!(config::required("window", config::duration_ms(&map, "window")?)?, 2000);
//! # Ok(()) }
//! ```

use serde_json::Value;

use crate::{HookError, Object};

/// A number: a JSON number, or a string holding one. `None` when the key is absent.
pub fn number(config: &Object, key: &str) -> Result<Option<f64>, HookError> {
    let Some(value) = config.get(key) else {
        return Ok(None);
    };
    let parsed = match value {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => s.trim().parse::<f64>().ok(),
        _ => None,
    };
    parsed.map(Some).ok_or_else(|| {
        HookError::invalid_params(format!("config key `{key}` must be a number, got {value}"))
    })
}

/// A whole number in `min..=max`: a JSON number, or a string holding one. `None` when absent.
pub fn integer(config: &Object, key: &str, min: u64, max: u64) -> Result<Option<u64>, HookError> {
    let Some(value) = config.get(key) else {
        return Ok(None);
    };
    let parsed = match value {
        Value::Number(n) => n.as_u64(),
        Value::String(s) => s.trim().parse::<u64>().ok(),
        _ => None,
    };
    match parsed {
        Some(n) if (min..=max).contains(&n) => Ok(Some(n)),
        _ => Err(HookError::invalid_params(format!(
            "config key `{key}` must be a whole number from {min} to {max}, got {value}"
        ))),
    }
}

/// The error for a value outside what `key` accepts: "config key `key` must be WHAT, got GOT".
pub fn invalid(key: &str, what: &str, got: impl std::fmt::Display) -> HookError {
    HookError::invalid_params(format!("config key `{key}` must be {what}, got {got}"))
}

/// A required key's value: the error "config key `key` is required" when it is `None`.
pub fn required<T>(key: &str, value: Option<T>) -> Result<T, HookError> {
    value.ok_or_else(|| HookError::invalid_params(format!("config key `{key}` is required")))
}

/// The value of `key` read by `read`, `None` when absent (or `null`); an error naming the key
/// and `what` it must be when `read` refuses it.
fn typed<T>(
    config: &Object,
    key: &str,
    what: &str,
    read: impl FnOnce(&Value) -> Option<T>,
) -> Result<Option<T>, HookError> {
    match config.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(value) => read(value)
            .map(Some)
            .ok_or_else(|| invalid(key, what, value)),
    }
}

/// A whole number: a JSON integer (or a float without a fraction), or a string holding one
/// (`"4.5"` and `"many"` are refused).
pub fn int(config: &Object, key: &str) -> Result<Option<i64>, HookError> {
    typed(config, key, "a whole number", |value| match value {
        Value::Number(n) => n.as_i64().or_else(|| {
            n.as_f64()
                .filter(|f| f.fract() == 0.0 && f.abs() < 9.0e15)
                .map(|f| f as i64)
        }),
        Value::String(s) => s.trim().parse::<i64>().ok(),
        _ => None,
    })
}

/// A number: a JSON number, or a string holding a finite one.
pub fn float(config: &Object, key: &str) -> Result<Option<f64>, HookError> {
    typed(config, key, "a number", |value| match value {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => s.trim().parse::<f64>().ok().filter(|f| f.is_finite()),
        _ => None,
    })
}

/// `true` or `false`: a JSON boolean, or the string `"true"` or `"false"` (any case).
pub fn boolean(config: &Object, key: &str) -> Result<Option<bool>, HookError> {
    typed(config, key, "true or false", |value| match value {
        Value::Bool(b) => Some(*b),
        Value::String(s) if s.trim().eq_ignore_ascii_case("true") => Some(true),
        Value::String(s) if s.trim().eq_ignore_ascii_case("false") => Some(false),
        _ => None,
    })
}

/// A string, or a number's text (`5` gives `"5"`).
pub fn string(config: &Object, key: &str) -> Result<Option<String>, HookError> {
    typed(config, key, "a string", |value| match value {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    })
}

/// A list of strings: a JSON array of strings, or a comma-separated string (items trimmed,
/// empty ones dropped).
pub fn list(config: &Object, key: &str) -> Result<Option<Vec<String>>, HookError> {
    typed(
        config,
        key,
        "a list of strings or a comma-separated string",
        |value| match value {
            Value::String(s) => Some(
                s.split(',')
                    .map(str::trim)
                    .filter(|item| !item.is_empty())
                    .map(str::to_owned)
                    .collect(),
            ),
            Value::Array(items) => items
                .iter()
                .map(|item| item.as_str().map(str::to_owned))
                .collect(),
            _ => None,
        },
    )
}

/// A duration in milliseconds: a JSON number (milliseconds), or a string with a unit `ms`,
/// `s`, `m` or `h` (`"250ms"`, `"2s"`, `"1m"`; no unit: milliseconds).
pub fn duration_ms(config: &Object, key: &str) -> Result<Option<u64>, HookError> {
    typed(
        config,
        key,
        "a duration such as 250ms, 2s or 1m",
        |value| match value {
            Value::Number(n) => n.as_u64().or_else(|| {
                n.as_f64()
                    .filter(|f| f.is_finite() && *f >= 0.0)
                    .map(|f| f.round() as u64)
            }),
            Value::String(s) => parse_duration_ms(s.trim()),
            _ => None,
        },
    )
}

/// `"250ms"`, `"2s"`, `"1.5m"`, `"1h"`, `"40"` (milliseconds) in milliseconds.
fn parse_duration_ms(text: &str) -> Option<u64> {
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    if number.is_empty() || number.starts_with('.') || number.ends_with('.') {
        return None;
    }
    let number: f64 = number.parse().ok()?;
    let scale = match unit.trim() {
        "" | "ms" => 1.0,
        "s" => 1_000.0,
        "m" => 60_000.0,
        "h" => 3_600_000.0,
        _ => return None,
    };
    Some((number * scale).round() as u64)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn config(value: Value) -> Object {
        value.as_object().cloned().unwrap_or_default()
    }

    #[test]
    fn numbers_come_from_json_or_strings() {
        let c = config(json!({"a": 1.5, "b": " 2 ", "c": true}));
        assert_eq!(number(&c, "a").unwrap(), Some(1.5));
        assert_eq!(number(&c, "b").unwrap(), Some(2.0));
        assert_eq!(number(&c, "missing").unwrap(), None);
        assert!(number(&c, "c").unwrap_err().message().contains("`c`"));
    }

    #[test]
    fn integers_are_range_checked() {
        let c = config(json!({"a": 5, "b": "7", "c": 0, "d": -1}));
        assert_eq!(integer(&c, "a", 1, 10).unwrap(), Some(5));
        assert_eq!(integer(&c, "b", 1, 10).unwrap(), Some(7));
        assert!(integer(&c, "c", 1, 10).is_err());
        assert!(integer(&c, "d", 0, 10).is_err());
    }
}
