//! Reading values from a plugin's config map. Values arrive as JSON: any TOML value from the
//! config file, or a string from a pass-through flag (`--modifier-rate 5` gives `"5"`), so each
//! reader accepts both. Errors are `invalid params` naming the key, ready to return from
//! `configure`.

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
