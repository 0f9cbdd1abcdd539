//! The checked values of the upstreams file: each is parsed and checked in its serde visitor, so
//! that serde_yaml marks a bad value's error with the value's own line, and the error names the
//! key through its path ([`crate::file`]). What the proxy would refuse in `add_upstream` (an
//! unknown balancer, a backend that is not an http(s) URL, a bad `host_header`, a zero limit…)
//! is refused here, before anything is pushed.

use std::fmt;
use std::time::Duration;

use serde::de::{Error, Visitor};
use serde::{Deserialize, Deserializer};

/// The built-in balancers (`balancer`), as the proxy names them.
pub const BALANCERS: &[&str] = &["random", "round_robin", "least_outstanding"];

/// The protocols to the backends (`backend_protocol`), as the proxy names them.
pub const BACKEND_PROTOCOLS: &[&str] = &["http1", "h2c"];

/// Implements `Deserialize` for a newtype over `String` checked by `$check` (a `fn(&str) ->
/// Result<String, String>`), with `$expecting` as the description of a good value.
macro_rules! checked_string {
    ($(#[$doc:meta])* $name:ident, $expecting:literal, $check:expr) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq)]
        pub struct $name(pub String);

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                struct Checked;
                impl Visitor<'_> for Checked {
                    type Value = $name;
                    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                        f.write_str($expecting)
                    }
                    fn visit_str<E: Error>(self, text: &str) -> Result<$name, E> {
                        let check: fn(&str) -> Result<String, String> = $check;
                        check(text).map($name).map_err(E::custom)
                    }
                }
                deserializer.deserialize_str(Checked)
            }
        }
    };
}

fn one_of(what: &str, names: &[&str], text: &str) -> Result<String, String> {
    if names.contains(&text) {
        Ok(text.to_owned())
    } else {
        let expected: Vec<String> = names.iter().map(|n| format!("`{n}`")).collect();
        Err(format!(
            "unknown {what} `{text}`, expected one of {}",
            expected.join(", ")
        ))
    }
}

checked_string!(
    /// `balancer`: one of [`BALANCERS`].
    Balancer,
    "a balancer name",
    |text| one_of("balancer", BALANCERS, text)
);

checked_string!(
    /// `backend_protocol`: one of [`BACKEND_PROTOCOLS`].
    BackendProtocol,
    "a backend protocol",
    |text| one_of("backend protocol", BACKEND_PROTOCOLS, text)
);

checked_string!(
    /// A `prefixes` entry: one path segment, slashes around it removed (`/api/` is `api`).
    Prefix,
    "a path segment such as `api`",
    |text| {
        let segment = text.trim().trim_matches('/');
        if segment.is_empty() || segment.contains('/') {
            Err(format!(
                "prefix `{text}` is not a single path segment (e.g. `api`)"
            ))
        } else {
            Ok(segment.to_owned())
        }
    }
);

checked_string!(
    /// A backend's URL: `http://` or `https://` with a host (and an optional port), trimmed.
    BackendUrl,
    "an http:// or https:// URL",
    |text| check_backend_url(text.trim()).map(|()| text.trim().to_owned())
);

checked_string!(
    /// `host_header`: `preserve`, `backend`, or a `host[:port]`.
    HostHeader,
    "`preserve`, `backend` or a host[:port]",
    |text| match text {
        "preserve" | "backend" => Ok(text.to_owned()),
        literal => {
            let invalid = || {
                format!(
                    "host_header `{}` is not `preserve`, `backend` or a host[:port]",
                    literal.escape_debug()
                )
            };
            let authority: http::uri::Authority = literal.parse().map_err(|_| invalid())?;
            if authority.host().is_empty()
                || literal.contains('@')
                || http::HeaderValue::from_str(literal).is_err()
            {
                return Err(invalid());
            }
            Ok(literal.to_owned())
        }
    }
);

checked_string!(
    /// `health_check.path`: a path starting with `/`.
    HealthPath,
    "a path starting with `/`",
    |text| {
        if text.starts_with('/') && text.parse::<http::uri::PathAndQuery>().is_ok() {
            Ok(text.to_owned())
        } else {
            Err(format!(
                "`{}` is not a path starting with `/`",
                text.escape_debug()
            ))
        }
    }
);

fn check_backend_url(address: &str) -> Result<(), String> {
    let not_a_url = || format!("backend `{address}` is not an http:// or https:// URL");
    if !(address.starts_with("http://") || address.starts_with("https://")) {
        return Err(not_a_url());
    }
    let uri: http::Uri = address.parse().map_err(|_| not_a_url())?;
    match uri.authority() {
        Some(authority) if !authority.host().is_empty() => Ok(()),
        _ => Err(format!("backend `{address}` has no host")),
    }
}

/// A count that must be at least 1 (`weight`, thresholds, `max_connections_per_backend`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AtLeastOne(pub u32);

impl<'de> Deserialize<'de> for AtLeastOne {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        match u32::deserialize(deserializer)? {
            0 => Err(D::Error::custom("must be at least 1")),
            n => Ok(AtLeastOne(n)),
        }
    }
}

/// `health_check.expected_status`: a status (`200`), a class (`2xx`), a range (`200-399`), or
/// a comma-separated list of those; statuses from 100 to 599.
#[derive(Debug, Clone, PartialEq)]
pub struct ExpectedStatus(pub String);

impl<'de> Deserialize<'de> for ExpectedStatus {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(ExpectedStatusVisitor)
    }
}

struct ExpectedStatusVisitor;

impl Visitor<'_> for ExpectedStatusVisitor {
    type Value = ExpectedStatus;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a status such as 200, 2xx or 200-399")
    }

    fn visit_u64<E: Error>(self, n: u64) -> Result<ExpectedStatus, E> {
        self.visit_str(&n.to_string())
    }

    fn visit_i64<E: Error>(self, n: i64) -> Result<ExpectedStatus, E> {
        self.visit_str(&n.to_string())
    }

    fn visit_str<E: Error>(self, text: &str) -> Result<ExpectedStatus, E> {
        check_expected_status(text).map_err(E::custom)?;
        Ok(ExpectedStatus(text.to_owned()))
    }
}

fn check_expected_status(text: &str) -> Result<(), String> {
    gatekeeper_plugin_sdk::rpc::types::parse_expected_status(text).map(drop)
}

/// A duration in humantime syntax, more than 0. Parsed in the visitor so a bad value's error
/// carries the value's own line (serde_yaml marks errors raised while visiting a scalar with its
/// position).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Timeout(pub Duration);

impl Timeout {
    /// In whole milliseconds (saturating).
    pub fn millis(self) -> u64 {
        u64::try_from(self.0.as_millis()).unwrap_or(u64::MAX)
    }
}

impl<'de> Deserialize<'de> for Timeout {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_str(TimeoutVisitor)
    }
}

struct TimeoutVisitor;

impl Visitor<'_> for TimeoutVisitor {
    type Value = Timeout;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a duration such as `10ms`, `5s` or `1m 30s`")
    }

    fn visit_str<E: Error>(self, text: &str) -> Result<Timeout, E> {
        let duration = humantime::parse_duration(text.trim()).map_err(|e| {
            E::custom(format!(
                "invalid duration `{text}` ({e}); expected e.g. `10ms`, `5s` or `1m 30s`"
            ))
        })?;
        if duration.is_zero() {
            return Err(E::custom("a duration must be more than 0"));
        }
        Ok(Timeout(duration))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expected_statuses() {
        for good in ["200", "2xx", "200-399", "200, 204", "5xx,404"] {
            assert!(check_expected_status(good).is_ok(), "{good}");
        }
        for bad in ["20", "700", "9xx", "399-200", "ok", ""] {
            assert!(check_expected_status(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn backend_urls() {
        assert!(check_backend_url("http://10.0.0.1:80").is_ok());
        assert!(check_backend_url("https://example.org/base").is_ok());
        assert!(check_backend_url("10.0.0.1:80").is_err());
        assert!(check_backend_url("http://").is_err());
        assert!(check_backend_url("http://a b").is_err());
    }
}
