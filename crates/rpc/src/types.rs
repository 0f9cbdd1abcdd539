//! The data types that travel in method params and results: upstreams, backends, HTTP requests
//! and responses as plugins see them.

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// A `body_base64` value that is not valid standard base64 (with padding).
pub type BodyDecodeError = base64::DecodeError;

/// Encodes a body for `body_base64`: standard base64 alphabet, with padding.
pub fn encode_body(bytes: &[u8]) -> String {
    STANDARD.encode(bytes)
}

/// Decodes a `body_base64` value (standard alphabet, with padding).
pub fn decode_body(encoded: &str) -> Result<Vec<u8>, BodyDecodeError> {
    STANDARD.decode(encoded)
}

/// A free-form JSON object (plugin config maps, `extra` fields, the request context).
pub type Object = Map<String, Value>;

/// A service that requests are routed to; it has backends.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
pub struct Upstream {
    /// Unique id, chosen by the upstream plugin that adds it.
    pub id: String,
    /// Human-readable name (defaults to the id).
    #[serde(default)]
    pub name: String,
    /// Total time allowed for the backend to answer with headers, in milliseconds. `None` uses
    /// the proxy's default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_ms: Option<u64>,
    /// Names of the listeners that may route to this upstream; empty means all.
    #[serde(default)]
    pub protocols: Vec<String>,
    /// Host names (without port) that route to this upstream.
    #[serde(default)]
    pub hostnames: Vec<String>,
    /// First path segments (no slashes) that route to this upstream; the segment is stripped
    /// before forwarding.
    #[serde(default)]
    pub prefixes: Vec<String>,
    /// The built-in load balancer for this upstream when no loadbalancer plugin runs: one of
    /// [`BALANCERS`] (`random`, `round_robin`, `least_outstanding`). `None` means `random`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub balancer: Option<String>,
    /// How the proxy talks to this upstream's backends: one of [`BACKEND_PROTOCOLS`] (`http1`,
    /// `h2c` for plaintext HTTP/2 with prior knowledge). `None` means `http1`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backend_protocol: Option<String>,
    /// Time allowed to open a connection to a backend, in milliseconds. `None` (or 0) uses the
    /// proxy's default (`connect_timeout`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connect_timeout_ms: Option<u64>,
    /// Requests in flight at once to each backend of this upstream (with HTTP/1.1, the
    /// connections in use); more wait for a free slot. `None` means no limit; 0 is invalid.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_connections_per_backend: Option<u32>,
    /// Passive health: how many forwarding failures in a row take a backend out of rotation, and
    /// for how long. `None` uses the proxy's `passive_health_failures` / `passive_health_cooldown`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub passive_health: Option<PassiveHealth>,
    /// Active HTTP health checks of every backend. `None`: no active checks.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health_check: Option<HealthCheck>,
    /// The `Host` header its backends receive: `None` or `"preserve"` for the client's,
    /// `"backend"` for the backend's `host:port`, any other value (a `host[:port]`) as it is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host_header: Option<String>,
    /// Anything else the plugin wants to attach.
    #[serde(default, skip_serializing_if = "Map::is_empty")]
    pub extra: Object,
}

/// Passive health settings of an upstream: a backend whose requests fail (cannot connect, time
/// out, connection broken) `failures` times in a row is skipped by the built-in balancers for
/// `cooldown_ms`, then tried again.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
pub struct PassiveHealth {
    /// Failures in a row that eject a backend; 0 disables passive health. `None`: the proxy's
    /// `passive_health_failures` (default 3).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failures: Option<u32>,
    /// How long an ejected backend is left out, in milliseconds (more than 0). `None`: the
    /// proxy's `passive_health_cooldown` (default 10 s).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cooldown_ms: Option<u64>,
}

/// Active health checks of an upstream's backends: an HTTP/1.1 `GET` of `path` on each backend
/// every `interval_ms`. Every field is optional.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
pub struct HealthCheck {
    /// Path (with optional query) to request, appended to the backend's base path. `None`:
    /// `/health`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// Time between two checks of a backend, in milliseconds. `None`: 5000.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interval_ms: Option<u64>,
    /// Time a check may take (connect and response headers), in milliseconds. `None`: 2000.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_ms: Option<u64>,
    /// Successful checks in a row that bring an unhealthy backend back. `None`: 2.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub healthy_threshold: Option<u32>,
    /// Failed checks in a row that take a backend out. `None`: 3.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unhealthy_threshold: Option<u32>,
    /// The statuses that count as healthy: comma-separated codes (`200`), ranges (`200-299`) or
    /// classes (`2xx`). `None`: `200-399`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expected_status: Option<String>,
}

/// Reads a [`HealthCheck::expected_status`]: comma-separated codes (`204`), ranges (`200-299`)
/// and classes (`2xx`), statuses from 100 to 599. The one reading of the format: the proxy
/// checks with it, and an upstream plugin can check its input with it before pushing.
pub fn parse_expected_status(text: &str) -> Result<Vec<std::ops::RangeInclusive<u16>>, String> {
    let status = |s: &str| {
        s.trim()
            .parse::<u16>()
            .ok()
            .filter(|n| (100..=599).contains(n))
            .ok_or_else(|| format!("`{}` is not a status from 100 to 599", s.trim()))
    };
    let mut ranges = Vec::new();
    for part in text.split(',').map(str::trim) {
        let range = if let Some(class) = part.strip_suffix("xx").or(part.strip_suffix("XX")) {
            let first = status(&format!("{class}00"))?;
            first..=first + 99
        } else if let Some((low, high)) = part.split_once('-') {
            let (low, high) = (status(low)?, status(high)?);
            if low > high {
                return Err(format!("empty status range `{part}`"));
            }
            low..=high
        } else {
            let n = status(part)?;
            n..=n
        };
        ranges.push(range);
    }
    Ok(ranges)
}

/// One instance of an upstream.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Backend {
    /// Unique id within its upstream.
    pub id: String,
    /// Base URL, `http://host:port` (a path, if any, is prepended to forwarded paths).
    pub address: String,
    /// Relative share of the upstream's requests for the built-in balancers (at least 1).
    /// `None` means 1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub weight: Option<u32>,
    /// Anything else the plugin wants to attach.
    #[serde(default, skip_serializing_if = "Map::is_empty")]
    pub extra: Object,
}

/// HTTP headers as a list of `[name, value]` pairs: order and duplicates are kept. Names are
/// lower-case. Values that are not UTF-8 are passed with invalid bytes replaced by U+FFFD.
pub type Headers = Vec<(String, String)>;

/// Finds the first value of a header (names compare case-insensitively).
pub fn header<'a>(headers: &'a Headers, name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

/// Sets a header, replacing every earlier value of it.
pub fn set_header(headers: &mut Headers, name: &str, value: impl Into<String>) {
    headers.retain(|(n, _)| !n.eq_ignore_ascii_case(name));
    headers.push((name.to_ascii_lowercase(), value.into()));
}

/// A client's request as plugins see it.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
pub struct HttpRequest {
    /// Name of the listener it arrived on (e.g. `http-public`).
    #[serde(default)]
    pub listener: String,
    /// The client's address, `ip:port`.
    #[serde(default)]
    pub remote_addr: String,
    /// The method, e.g. `GET`.
    pub method: String,
    /// The Host header (or the URI's authority), port included if the client sent one.
    #[serde(default)]
    pub host: String,
    /// The path as the client sent it, e.g. `/api/users`.
    pub path: String,
    /// The matched prefix segment (`api`), when routing matched by prefix.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prefix: Option<String>,
    /// The path the backend receives: `path` without the matched prefix, e.g. `/users`.
    #[serde(default)]
    pub prefixless_path: String,
    /// The query string without `?`, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub query: Option<String>,
    /// Request headers.
    #[serde(default)]
    pub headers: Headers,
    /// Id of the upstream chosen for the request, once routing has happened.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upstream: Option<String>,
    /// Values plugins attach to the request; later hooks of the same request see them.
    #[serde(default)]
    pub context: Object,
    /// The request body, base64 (standard alphabet, with padding). Sent only in
    /// `modify_request`, only to a plugin that declared it wants the body of that hook (see
    /// [`crate::methods::HandshakeParams::bodies`]). On the way back, absent means "unchanged"
    /// and a value replaces the body (`""`: empty).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body_base64: Option<String>,
}

/// An HTTP response: from a backend, from the proxy (errors), or from a plugin answering directly.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct HttpResponse {
    /// Status code.
    pub status: u16,
    /// Response headers.
    #[serde(default)]
    pub headers: Headers,
    /// The body as UTF-8 text. Omitted on backend responses (bodies stream through the proxy);
    /// when a plugin sets it, it replaces the body (and wins over `body_base64`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body: Option<String>,
    /// The body, base64 (standard alphabet, with padding): sent to a plugin that declared it
    /// wants the body of the hook (the proxy then sends no `body`). On the way back, absent
    /// (with `body` absent too) means "unchanged"; a value replaces the body (`""`: empty).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body_base64: Option<String>,
    /// Set by the proxy when a plugin wants the body but the backend's body is larger than
    /// `max_plugin_body`: the body is then not sent and streams to the client unchanged unless
    /// the plugin replaces it.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub body_omitted: bool,
}

impl HttpRequest {
    /// The body, decoded from `body_base64`: `None` when absent (not sent, or unchanged).
    pub fn body_bytes(&self) -> Option<Result<Vec<u8>, BodyDecodeError>> {
        self.body_base64.as_deref().map(decode_body)
    }

    /// Replaces the body (sets `body_base64`).
    pub fn set_body_bytes(&mut self, bytes: &[u8]) {
        self.body_base64 = Some(encode_body(bytes));
    }
}

impl HttpResponse {
    /// The body: `body` as UTF-8 bytes if set, else decoded from `body_base64`; `None` when
    /// neither is present (not sent, omitted, or unchanged).
    pub fn body_bytes(&self) -> Option<Result<Vec<u8>, BodyDecodeError>> {
        match (&self.body, &self.body_base64) {
            (Some(text), _) => Some(Ok(text.as_bytes().to_vec())),
            (None, Some(encoded)) => Some(decode_body(encoded)),
            (None, None) => None,
        }
    }

    /// Replaces the body: sets `body_base64` and clears `body` (which would win).
    pub fn set_body_bytes(&mut self, bytes: &[u8]) {
        self.body = None;
        self.body_base64 = Some(encode_body(bytes));
    }

    /// A response with this status and headers and no body fields.
    pub fn new(status: u16, headers: Headers) -> Self {
        HttpResponse {
            status,
            headers,
            body: None,
            body_base64: None,
            body_omitted: false,
        }
    }
}

/// What went wrong, for `modify_error_response`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ProxyError {
    /// One of `no_route`, `no_backend`, `backend_unreachable`, `timeout`, `plugin_failed`,
    /// `bad_request`, `internal`, `body_too_large`.
    pub kind: String,
    /// A human-readable description.
    pub message: String,
}

/// The built-in load balancers an upstream can choose with its `balancer` field.
pub const BALANCERS: [&str; 3] = ["random", "round_robin", "least_outstanding"];

/// The protocols an upstream can choose with its `backend_protocol` field: `http1` (HTTP/1.1,
/// the default) and `h2c` (plaintext HTTP/2 with prior knowledge).
pub const BACKEND_PROTOCOLS: [&str; 2] = ["http1", "h2c"];
#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodies_round_trip_binary_data_through_json() {
        let bytes: Vec<u8> = (0..=255).collect();
        let mut request = HttpRequest::default();
        request.set_body_bytes(&bytes);
        let json = serde_json::to_string(&request).unwrap();
        let back: HttpRequest = serde_json::from_str(&json).unwrap();
        assert_eq!(back.body_bytes().unwrap().unwrap(), bytes);
        assert_eq!(encode_body(b"hi"), "aGk=");
    }

    #[test]
    fn response_text_body_wins_and_absent_fields_are_not_sent() {
        let mut response = HttpResponse::new(200, Vec::new());
        assert_eq!(
            serde_json::to_string(&response).unwrap(),
            r#"{"status":200,"headers":[]}"#
        );
        response.body_base64 = Some(encode_body(b"binary"));
        response.body = Some("text".into());
        assert_eq!(response.body_bytes().unwrap().unwrap(), b"text");
        response.set_body_bytes(b"new");
        assert_eq!(response.body, None);
        assert_eq!(response.body_bytes().unwrap().unwrap(), b"new");
        response.body_base64 = Some("not base64!".into());
        assert!(response.body_bytes().unwrap().is_err());
    }
}
