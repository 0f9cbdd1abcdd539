//! The metric records gatekeeper sends to metric plugins (and upstream metrics to loadbalancer
//! and upstream plugins), always in batches.
//!
//! Times are Unix time in milliseconds (`time_ms`); durations are microseconds (`*_us`).

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::types::Object;

/// Names of the events gatekeeper emits in `event_metric`.
pub mod events {
    /// gatekeeper started serving.
    pub const APP_STARTED: &str = "app_started";
    /// gatekeeper is stopping.
    pub const APP_STOPPED: &str = "app_stopped";
    /// A listener accepts connections (attributes: `listener`, `address`).
    pub const LISTENER_STARTED: &str = "listener_started";
    /// A listener stopped accepting (attributes: `listener`, `address`).
    pub const LISTENER_STOPPED: &str = "listener_stopped";
    /// A request arrived (attributes: `method`, `path`).
    pub const REQUEST_ACCEPTED: &str = "request_accepted";
    /// A request was answered by a backend (or a plugin) with a status below 500 (attributes:
    /// `status`, `upstream`).
    pub const REQUEST_SUCCEEDED: &str = "request_succeeded";
    /// A request got an error of the proxy's own (no route, no backend, timeout, a plugin failing
    /// closed, ...) or a 5xx status (attributes: `status`, `error`).
    pub const REQUEST_FAILED: &str = "request_failed";
    /// An upstream was added (attributes: `upstream`).
    pub const UPSTREAM_ADDED: &str = "upstream_added";
    /// An upstream was removed (attributes: `upstream`).
    pub const UPSTREAM_REMOVED: &str = "upstream_removed";
    /// A backend was added (attributes: `upstream`, `backend`, `address`).
    pub const BACKEND_ADDED: &str = "backend_added";
    /// A backend was removed (attributes: `upstream`, `backend`).
    pub const BACKEND_REMOVED: &str = "backend_removed";
    /// A backend was taken out of rotation: ejected by passive health (again after a failed try
    /// at the end of a cool-down) or failed by active health checks (attributes: `upstream`,
    /// `backend`, `check` (`passive` or `active`), `reason`).
    pub const BACKEND_UNHEALTHY: &str = "backend_unhealthy";
    /// A backend is back in rotation: a request succeeded after its cool-down, or active checks
    /// passed again (attributes: `upstream`, `backend`, `check`).
    pub const BACKEND_HEALTHY: &str = "backend_healthy";
    /// A plugin process is ready (attributes: `plugin`, `pid`).
    pub const PLUGIN_STARTED: &str = "plugin_started";
    /// A plugin process was started again after a failure (attributes: `plugin`, `restarts`).
    pub const PLUGIN_RESTARTED: &str = "plugin_restarted";
    /// A plugin process failed: exited, closed its connection, broke the protocol (attributes:
    /// `plugin`, `reason`).
    pub const PLUGIN_FAILED: &str = "plugin_failed";
    /// A plugin was stopped at shutdown (attributes: `plugin`).
    pub const PLUGIN_STOPPED: &str = "plugin_stopped";
    /// A plugin did not answer a heartbeat in time (attributes: `plugin`, `missed`).
    pub const HEARTBEAT_MISSED: &str = "heartbeat_missed";
}

/// Something that happened.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct EventMetric {
    /// When, Unix milliseconds.
    pub time_ms: u64,
    /// One of [`events`].
    pub name: String,
    /// Details, per event.
    #[serde(default)]
    pub attributes: Object,
}

/// How long an internal operation took (plugin start, registry update, shutdown).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ProfilingMetric {
    /// When it ended, Unix milliseconds.
    pub time_ms: u64,
    /// What was timed, e.g. `plugin_start`.
    pub name: String,
    /// How long it took.
    pub duration_us: u64,
    /// Details (e.g. `plugin`).
    #[serde(default)]
    pub attributes: Object,
}

/// One call gatekeeper made to a plugin.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct PluginMetric {
    /// When the call ended, Unix milliseconds.
    pub time_ms: u64,
    /// The plugin's name.
    pub plugin: String,
    /// The method called.
    pub method: String,
    /// How long the call took.
    pub latency_us: u64,
    /// Why it failed (timeout, error, unavailable), if it did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// Time spent in one modifier hook during a request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ModifierPhase {
    /// The plugin's name.
    pub plugin: String,
    /// The hook (`modify_request`, `modify_response`, `modify_error_response`).
    pub hook: String,
    /// How long it took.
    pub latency_us: u64,
}

/// Where a request's time went.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
pub struct Phases {
    /// Routing (built-in or router plugin).
    pub router_us: u64,
    /// Picking the backend (built-in or loadbalancer plugin).
    pub loadbalancer_us: u64,
    /// Every modifier hook called, in order.
    #[serde(default)]
    pub modifiers: Vec<ModifierPhase>,
    /// Opening a new connection to the backend (0 when a pooled connection was reused).
    pub upstream_connect_us: u64,
    /// From sending the request to the backend to its response headers (connect included).
    pub upstream_response_us: u64,
    /// From the request's arrival until the response body was sent.
    pub total_us: u64,
}

/// One request, recorded when its response body has been sent (or the client went away).
///
/// Requests the proxy refused before routing are recorded too: a malformed request hyper
/// answered itself (method and path `-`, `error` `malformed_request`, `headers_too_large` or
/// `uri_too_long`), a request the request checks refused, and a request cut before it was
/// answered (status 499, `error` `client_closed` or `grace_cut`).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
pub struct RequestMetric {
    /// When the request arrived, Unix milliseconds.
    pub time_ms: u64,
    /// The listener's name.
    pub listener: String,
    /// The method.
    pub method: String,
    /// The Host.
    pub host: String,
    /// The path as received.
    pub path: String,
    /// The status sent to the client.
    pub status: u16,
    /// The upstream's id, if the request was routed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upstream: Option<String>,
    /// The backend's id, if one was picked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backend: Option<String>,
    /// Request body bytes received from the client.
    pub bytes_in: u64,
    /// Response body bytes sent to the client.
    pub bytes_out: u64,
    /// The proxy error kind (`no_route`, `timeout`, …), if the proxy answered with an error.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Latency of every phase.
    pub phases: Phases,
    /// The client's IP address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client: Option<String>,
    /// The query string as received (without `?`), if the request had one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub query: Option<String>,
    /// The request's HTTP version (`HTTP/1.1`, `HTTP/2.0`, …).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// The request's `X-Request-Id` (the client's, or the one a plugin gave it), if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
    /// The request's `User-Agent`, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_agent: Option<String>,
    /// The request's `Referer`, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub referer: Option<String>,
    /// The server name the client asked for in the TLS handshake (SNI), if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sni: Option<String>,
    /// The TLS version of the client connection (`TLSv1_3`, …), on TLS listeners.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls_version: Option<String>,
    /// The TLS cipher suite of the client connection, on TLS listeners.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls_cipher: Option<String>,
    /// Times the request was sent again to another backend (after a connect failure).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub retries: u32,
}

/// Whether a count is zero (for `skip_serializing_if`).
fn is_zero(n: &u32) -> bool {
    *n == 0
}

/// The outcome of one request to a backend.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct UpstreamMetric {
    /// When the backend answered (or failed), Unix milliseconds.
    pub time_ms: u64,
    /// The upstream's id.
    pub upstream: String,
    /// The backend's id.
    pub backend: String,
    /// Time from sending the request to the response headers (or the failure).
    pub latency_us: u64,
    /// The backend's status, when it answered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
    /// `unreachable`, `timeout` or `failed`, when it did not answer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// Milliseconds since the Unix epoch, now.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or_default()
}
