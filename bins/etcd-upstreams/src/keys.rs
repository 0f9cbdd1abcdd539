//! The keys under the prefix and their values:
//!
//! - `PREFIX/upstreams/UPSTREAM_ID`: a JSON object, the upstream as `add_upstream` takes it
//!   (docs/protocol.md's Upstream); `id` is taken from the key when absent, and an `id` that
//!   differs from the key's makes the value bad;
//! - `PREFIX/backends/UPSTREAM_ID/BACKEND_ID`: a JSON object, the backend as `add_backend` takes
//!   it; `id` from the key when absent (a backend id may contain `/`, an upstream id may not).
//!
//! A value is bad when it is not a JSON object, has a field the type does not have (a typo
//! must not be silently dropped), or a field of the wrong type. The proxy checks the rest
//! (addresses, balancers, …) when the value is pushed.

use gatekeeper_plugin_sdk::{Backend, Upstream};
use serde::de::DeserializeOwned;
use serde_json::Value;

/// What a key under the prefix names.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Item {
    /// `PREFIX/upstreams/ID`.
    Upstream(String),
    /// `PREFIX/backends/UPSTREAM_ID/BACKEND_ID`.
    Backend(String, String),
}

impl Item {
    /// The item a key names, or `None` for a key under the prefix that is neither form.
    pub fn parse(prefix: &str, key: &str) -> Option<Item> {
        let rest = key.strip_prefix(prefix)?.strip_prefix('/')?;
        if let Some(id) = rest.strip_prefix("upstreams/") {
            return (!id.is_empty() && !id.contains('/')).then(|| Item::Upstream(id.to_owned()));
        }
        let (upstream, backend) = rest.strip_prefix("backends/")?.split_once('/')?;
        (!upstream.is_empty() && !backend.is_empty())
            .then(|| Item::Backend(upstream.to_owned(), backend.to_owned()))
    }

    /// The key of this item under `prefix`.
    pub fn key(&self, prefix: &str) -> String {
        match self {
            Item::Upstream(id) => format!("{prefix}/upstreams/{id}"),
            Item::Backend(upstream, id) => format!("{prefix}/backends/{upstream}/{id}"),
        }
    }
}

/// An upstream's value, for the upstream `id` of its key.
pub fn parse_upstream(id: &str, bytes: &[u8]) -> Result<Upstream, String> {
    strict(with_id(id, bytes)?)
}

/// A backend's value, for the backend `id` of its key.
pub fn parse_backend(id: &str, bytes: &[u8]) -> Result<Backend, String> {
    strict(with_id(id, bytes)?)
}

/// The value as a JSON object with `id` set to the key's (which an `id` in it must equal).
fn with_id(id: &str, bytes: &[u8]) -> Result<Value, String> {
    let mut value: Value = serde_json::from_slice(bytes).map_err(|e| format!("not JSON ({e})"))?;
    let Some(object) = value.as_object_mut() else {
        return Err("not a JSON object".into());
    };
    match object.get("id") {
        None => {
            object.insert("id".into(), Value::String(id.to_owned()));
        }
        Some(Value::String(given)) if given == id => {}
        Some(other) => {
            return Err(format!(
                "`id` {other} differs from the key's `{id}` (leave it out or make them equal)"
            ))
        }
    }
    Ok(value)
}

/// Deserializes `value`, refusing fields the type does not have.
fn strict<T: DeserializeOwned>(value: Value) -> Result<T, String> {
    let mut unknown = Vec::new();
    let parsed = serde_ignored::deserialize(value, |path| {
        // `?` marks an Option's inside: not part of the path the user wrote.
        unknown.push(format!("`{}`", path.to_string().replace(".?", "")))
    })
    .map_err(|e: serde_json::Error| e.to_string())?;
    if unknown.is_empty() {
        Ok(parsed)
    } else {
        Err(format!("unknown field {}", unknown.join(", ")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_name_upstreams_and_backends() {
        let p = "/gk";
        assert_eq!(
            Item::parse(p, "/gk/upstreams/api"),
            Some(Item::Upstream("api".into()))
        );
        assert_eq!(
            Item::parse(p, "/gk/backends/api/b1"),
            Some(Item::Backend("api".into(), "b1".into()))
        );
        assert_eq!(
            Item::parse(p, "/gk/backends/api/http:__a/x"),
            Some(Item::Backend("api".into(), "http:__a/x".into()))
        );
        for other in [
            "/gk/upstreams/",
            "/gk/upstreams/a/b",
            "/gk/backends/api",
            "/gk/backends/api/",
            "/gk/backends//b",
            "/gk/other/x",
            "/gk2/upstreams/a",
            "/gkupstreams/a",
        ] {
            assert_eq!(Item::parse(p, other), None, "{other}");
        }
        for item in [
            Item::Upstream("a".into()),
            Item::Backend("a".into(), "b/c".into()),
        ] {
            assert_eq!(Item::parse(p, &item.key(p)), Some(item));
        }
    }

    #[test]
    fn ids_come_from_the_key() {
        let up = parse_upstream("api", br#"{"prefixes":["api"]}"#).unwrap();
        assert_eq!(
            (up.id.as_str(), up.prefixes.as_slice()),
            ("api", &["api".to_owned()][..])
        );
        let up = parse_upstream("api", br#"{"id":"api","hostnames":["a.example"]}"#).unwrap();
        assert_eq!(up.hostnames, ["a.example"]);
        let be = parse_backend("b1", br#"{"address":"http://127.0.0.1:1","weight":3}"#).unwrap();
        assert_eq!((be.id.as_str(), be.weight), ("b1", Some(3)));
    }

    #[test]
    fn bad_values_say_why() {
        for (bytes, needle) in [
            (&b"not json"[..], "not JSON"),
            (b"[1]", "not a JSON object"),
            (br#"{"id":"web"}"#, "differs from the key"),
            (br#"{"id":3}"#, "differs from the key"),
            (br#"{"prefixs":["a"]}"#, "unknown field `prefixs`"),
            (br#"{"prefixes":"a"}"#, "invalid type"),
            (
                br#"{"passive_health":{"failurs":1}}"#,
                "unknown field `passive_health.failurs`",
            ),
        ] {
            let err = parse_upstream("api", bytes).unwrap_err();
            assert!(
                err.contains(needle),
                "{}: {err}",
                String::from_utf8_lossy(bytes)
            );
        }
        let err = parse_backend("b", br#"{"weight":1}"#).unwrap_err();
        assert!(err.contains("address"), "{err}");
        let err = parse_backend(
            "b",
            br#"{"address":"http://a","extra":{"zone":"x"},"port":1}"#,
        )
        .unwrap_err();
        assert!(err.contains("unknown field `port`"), "{err}");
    }
}
