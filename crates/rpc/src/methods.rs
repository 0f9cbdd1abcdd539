//! Every method of the protocol, with its name and the types of its params and result.
//!
//! Each method is a zero-sized type implementing [`Method`], so a call reads
//! `peer.request::<Configure>(&params, timeout)` and the types cannot drift apart.

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::metrics::{EventMetric, PluginMetric, ProfilingMetric, RequestMetric, UpstreamMetric};
use crate::types::{Backend, HttpRequest, HttpResponse, Object, ProxyError, Upstream};

/// A method of the protocol.
pub trait Method {
    /// The method name on the wire.
    const NAME: &'static str;
    /// The params object.
    type Params: Serialize + DeserializeOwned + Send + Sync;
    /// The result.
    type Result: Serialize + DeserializeOwned + Send;
}

macro_rules! method {
    ($(#[$doc:meta])* $ty:ident, $name:literal, $params:ty => $result:ty) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy)]
        pub struct $ty;
        impl Method for $ty {
            const NAME: &'static str = $name;
            type Params = $params;
            type Result = $result;
        }
    };
}

/// An empty params object or result (`{}`); also accepts `null`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Empty {}

impl<'de> Deserialize<'de> for Empty {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        serde::de::IgnoredAny::deserialize(deserializer).map(|_| Empty {})
    }
}

/// The plugin types.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PluginType {
    /// Pushes upstreams and backends through the manager methods.
    Upstream,
    /// Changes requests and responses, or answers directly.
    Modifier,
    /// Picks the upstream for a request.
    Router,
    /// Picks the backend of an upstream.
    Loadbalancer,
    /// Receives metrics.
    Metric,
}

impl PluginType {
    /// The name used on the wire, in flags and in the environment.
    pub fn as_str(self) -> &'static str {
        match self {
            PluginType::Upstream => "upstream",
            PluginType::Modifier => "modifier",
            PluginType::Router => "router",
            PluginType::Loadbalancer => "loadbalancer",
            PluginType::Metric => "metric",
        }
    }

    /// Every plugin type.
    pub const ALL: [PluginType; 5] = [
        PluginType::Upstream,
        PluginType::Modifier,
        PluginType::Router,
        PluginType::Loadbalancer,
        PluginType::Metric,
    ];
}

impl std::fmt::Display for PluginType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for PluginType {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        PluginType::ALL
            .into_iter()
            .find(|t| t.as_str() == s)
            .ok_or_else(|| format!("unknown plugin type `{s}` (expected upstream, modifier, router, loadbalancer or metric)"))
    }
}

// ---- plugin → proxy: handshake -------------------------------------------------------------

/// Params of `handshake`, the first call a plugin makes on each connection.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HandshakeParams {
    /// The value of `GATEKEEPER_TOKEN`.
    pub token: String,
    /// The protocol version the plugin speaks.
    pub protocol_version: u32,
    /// The hooks the plugin implements (e.g. `["modify_request"]`); others are never called.
    #[serde(default)]
    pub hooks: Vec<String>,
    /// The declared hooks that want the body (`modify_request`: the request body;
    /// `modify_response`, `modify_error_response`: the response body), up to the proxy's
    /// `max_plugin_body`. Default: none (bodies stream past the plugin).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub bodies: Vec<String>,
}

/// Result of `handshake`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HandshakeResult {
    /// The protocol version the proxy speaks.
    pub protocol_version: u32,
    /// The plugin's configured name.
    pub name: String,
    /// The plugin's type.
    #[serde(rename = "type")]
    pub plugin_type: PluginType,
}

method!(
    /// plugin → proxy: prove the token, agree on the version, declare the hooks.
    Handshake, "handshake", HandshakeParams => HandshakeResult
);

// ---- proxy → plugin: lifecycle ---------------------------------------------------------------

/// Params of `configure`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct ConfigureParams {
    /// The plugin's config map: keys and values from the command line and the config file.
    #[serde(default)]
    pub config: Object,
}

method!(
    /// proxy → plugin: the plugin's configuration, before `start` (and again after a restart).
    Configure, "configure", ConfigureParams => Empty
);
method!(
    /// proxy → plugin: begin work (an upstream plugin pushes its upstreams now).
    Start, "start", Empty => Empty
);
method!(
    /// proxy → plugin: liveness check, on an interval.
    Heartbeat, "heartbeat", Empty => Empty
);
method!(
    /// proxy → plugin: stop work; the plugin should exit soon after answering.
    Stop, "stop", Empty => Empty
);

// ---- plugin → proxy: the manager (upstream plugins) ----------------------------------------------
//
// The same four methods go the other way too: the proxy calls `add_upstream` and
// `remove_upstream` on router plugins, and `add_backend` and `remove_backend` on loadbalancer
// plugins, with the same params, to keep them in step with the registry.

/// Params of `add_upstream`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AddUpstreamParams {
    /// The upstream to add (or to replace, if one with this id exists).
    pub upstream: Upstream,
}

/// Params of `remove_upstream`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RemoveUpstreamParams {
    /// Id of the upstream to remove, with its backends.
    pub id: String,
}

/// Params of `add_backend`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AddBackendParams {
    /// The upstream the backend belongs to.
    pub upstream_id: String,
    /// The backend to add (or replace).
    pub backend: Backend,
}

/// Params of `remove_backend`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RemoveBackendParams {
    /// The upstream the backend belongs to.
    pub upstream_id: String,
    /// Id of the backend to remove.
    pub backend_id: String,
}

method!(
    /// plugin → proxy: add or replace an upstream.
    AddUpstream, "add_upstream", AddUpstreamParams => Empty
);
method!(
    /// plugin → proxy: remove an upstream and its backends.
    RemoveUpstream, "remove_upstream", RemoveUpstreamParams => Empty
);
method!(
    /// plugin → proxy: add or replace a backend of an upstream.
    AddBackend, "add_backend", AddBackendParams => Empty
);
method!(
    /// plugin → proxy: remove a backend.
    RemoveBackend, "remove_backend", RemoveBackendParams => Empty
);

// ---- proxy → plugin: modifier hooks ------------------------------------------------------------

/// Params of `modify_request`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModifyRequestParams {
    /// The request as the previous modifier left it.
    pub request: HttpRequest,
}

/// Result of `modify_request`: `{}` leaves the request as it is.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct ModifyRequestResult {
    /// The changed request, replacing the one sent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request: Option<HttpRequest>,
    /// A response to send to the client instead of forwarding (e.g. a 401). Later modifiers
    /// and the backend are skipped; `modify_response` hooks still run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub response: Option<HttpResponse>,
}

/// Params of `modify_response`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModifyResponseParams {
    /// The request as it was forwarded.
    pub request: HttpRequest,
    /// The response as the previous modifier left it (no body: bodies stream).
    pub response: HttpResponse,
}

/// Result of `modify_response` and `modify_error_response`: `{}` leaves the response as it is.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct ModifyResponseResult {
    /// The changed response, replacing the one sent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub response: Option<HttpResponse>,
}

/// Params of `modify_error_response`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModifyErrorResponseParams {
    /// The request that failed.
    pub request: HttpRequest,
    /// The error response the proxy is about to send.
    pub response: HttpResponse,
    /// What went wrong.
    pub error: ProxyError,
}

method!(
    /// proxy → plugin: change the request before it is forwarded, or answer it directly.
    ModifyRequest, "modify_request", ModifyRequestParams => ModifyRequestResult
);
method!(
    /// proxy → plugin: change the backend's response (status and headers) before the client gets it.
    ModifyResponse, "modify_response", ModifyResponseParams => ModifyResponseResult
);
method!(
    /// proxy → plugin: change an error response the proxy generated.
    ModifyErrorResponse, "modify_error_response", ModifyErrorResponseParams => ModifyResponseResult
);

// ---- proxy → plugin: router hooks ------------------------------------------------------------

/// Params of `route_request`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RouteRequestParams {
    /// The request; `upstream`, `prefix` and `prefixless_path` are not set yet.
    pub request: HttpRequest,
}

/// Result of `route_request`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct RouteRequestResult {
    /// Id of the upstream to use; `null` (or absent) means no route (404).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upstream: Option<String>,
    /// The path the backend receives; absent means the path unchanged (no prefix stripped).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prefixless_path: Option<String>,
    /// A changed request (e.g. headers), replacing the one sent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request: Option<HttpRequest>,
}

method!(
    /// proxy → router plugin: pick the upstream for a request.
    RouteRequest, "route_request", RouteRequestParams => RouteRequestResult
);

// ---- proxy → plugin: loadbalancer hooks ----------------------------------------------------------

/// Params of `get_backend`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GetBackendParams {
    /// The upstream a backend is wanted for.
    pub upstream_id: String,
    /// The request being forwarded (for sticky choices by header, cookie or client address).
    pub request: HttpRequest,
}

/// Result of `get_backend`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct GetBackendResult {
    /// Id of the chosen backend of that upstream; `null` means none available (503).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backend_id: Option<String>,
}

method!(
    /// proxy → loadbalancer plugin: pick the backend of an upstream for a request.
    GetBackend, "get_backend", GetBackendParams => GetBackendResult
);

// ---- proxy → plugin: metrics (metric plugins; `upstream_metric` also loadbalancer and upstream) ----

/// Params of `event_metric`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EventMetricParams {
    /// The batch, oldest first.
    pub events: Vec<EventMetric>,
}

/// Params of `profiling_metric`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProfilingMetricParams {
    /// The batch, oldest first.
    pub profiles: Vec<ProfilingMetric>,
}

/// Params of `plugin_metric`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PluginMetricParams {
    /// The batch, oldest first.
    pub metrics: Vec<PluginMetric>,
}

/// Params of `request_metric`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RequestMetricParams {
    /// The batch, oldest first.
    pub metrics: Vec<RequestMetric>,
}

/// Params of `upstream_metric`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UpstreamMetricParams {
    /// The batch, oldest first.
    pub metrics: Vec<UpstreamMetric>,
}

method!(
    /// proxy → metric plugin: a batch of events.
    EventMetricHook, "event_metric", EventMetricParams => Empty
);
method!(
    /// proxy → metric plugin: a batch of timings of internal operations.
    ProfilingMetricHook, "profiling_metric", ProfilingMetricParams => Empty
);
method!(
    /// proxy → metric plugin: a batch of plugin calls.
    PluginMetricHook, "plugin_metric", PluginMetricParams => Empty
);
method!(
    /// proxy → metric plugin: a batch of finished requests.
    RequestMetricHook, "request_metric", RequestMetricParams => Empty
);
method!(
    /// proxy → metric, loadbalancer or upstream plugin: a batch of backend outcomes.
    UpstreamMetricHook, "upstream_metric", UpstreamMetricParams => Empty
);

/// The hooks each plugin type may declare in its handshake.
pub fn hooks_of(plugin_type: PluginType) -> &'static [&'static str] {
    match plugin_type {
        PluginType::Upstream => &[UpstreamMetricHook::NAME],
        PluginType::Modifier => &[
            ModifyRequest::NAME,
            ModifyResponse::NAME,
            ModifyErrorResponse::NAME,
        ],
        PluginType::Router => &[AddUpstream::NAME, RemoveUpstream::NAME, RouteRequest::NAME],
        PluginType::Loadbalancer => &[
            AddBackend::NAME,
            RemoveBackend::NAME,
            UpstreamMetricHook::NAME,
            GetBackend::NAME,
        ],
        PluginType::Metric => &[
            EventMetricHook::NAME,
            ProfilingMetricHook::NAME,
            PluginMetricHook::NAME,
            RequestMetricHook::NAME,
            UpstreamMetricHook::NAME,
        ],
    }
}

/// The hooks of a plugin type that may declare they want the body (`bodies` in the handshake):
/// the modifier hooks; no other type gets bodies.
pub fn body_hooks_of(plugin_type: PluginType) -> &'static [&'static str] {
    match plugin_type {
        PluginType::Modifier => &[
            ModifyRequest::NAME,
            ModifyResponse::NAME,
            ModifyErrorResponse::NAME,
        ],
        _ => &[],
    }
}
