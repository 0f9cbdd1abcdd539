//! The data types that travel in method params and results: upstreams, backends, HTTP requests
//! and responses as plugins see them.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// A free-form JSON object (plugin config maps, `extra` fields, the request context).
pub type Object = Map<String, Value>;

/// A service that requests are routed to; it has backends.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
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
    /// The `Host` header its backends receive: `None` or `"preserve"` for the client's,
    /// `"backend"` for the backend's `host:port`, any other value (a `host[:port]`) as it is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host_header: Option<String>,
    /// Anything else the plugin wants to attach.
    #[serde(default, skip_serializing_if = "Map::is_empty")]
    pub extra: Object,
}

/// One instance of an upstream.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Backend {
    /// Unique id within its upstream.
    pub id: String,
    /// Base URL, `http://host:port` (a path, if any, is prepended to forwarded paths).
    pub address: String,
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
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
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
}

/// An HTTP response: from a backend, from the proxy (errors), or from a plugin answering directly.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HttpResponse {
    /// Status code.
    pub status: u16,
    /// Response headers.
    #[serde(default)]
    pub headers: Headers,
    /// The body as UTF-8 text. Omitted on backend responses (bodies stream through the proxy);
    /// when a plugin sets it, it replaces the body.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body: Option<String>,
}

/// What went wrong, for `modify_error_response`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProxyError {
    /// One of `no_route`, `no_backend`, `backend_unreachable`, `timeout`, `plugin_failed`,
    /// `bad_request`, `internal`.
    pub kind: String,
    /// A human-readable description.
    pub message: String,
}

/// The built-in load balancers an upstream can choose with its `balancer` field.
pub const BALANCERS: [&str; 3] = ["random", "round_robin", "least_outstanding"];
