//! The params and results of every method of the protocol, and the plugin types.
//!
//! Which method takes which of these types is the protocol table's business
//! ([`crate::methods::METHODS`]); this module only defines their shapes. Doc comments become the
//! descriptions in the generated JSON Schema (`plugin-sdk/protocol.json`).

use std::borrow::Cow;
use std::collections::BTreeMap;

use schemars::{json_schema, JsonSchema, Schema, SchemaGenerator};
use serde::{Deserialize, Serialize};

mod checked;

use crate::metrics::{EventMetric, PluginMetric, ProfilingMetric, RequestMetric, UpstreamMetric};
use crate::parts::RequestPart;
use crate::patch::{RequestPatch, ResponsePatch};
use crate::types::{Backend, HttpRequest, HttpResponse, Object, ProxyError, Upstream};

/// An empty params object or result (`{}`); also accepts `null`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Empty {}

impl<'de> Deserialize<'de> for Empty {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        serde::de::IgnoredAny::deserialize(deserializer).map(|_| Empty {})
    }
}

impl JsonSchema for Empty {
    fn schema_name() -> Cow<'static, str> {
        "Empty".into()
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "description": "An empty object (`{}`); members are ignored, and `null` is accepted too.",
            "type": ["object", "null"]
        })
    }
}

/// The plugin types.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
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
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
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
    /// The declared hooks that must not be sent a second time: by default a hook call in
    /// flight on a process that dies (or whose connection closes) is sent again once to another
    /// ready process, so a hook may run twice for one request; a hook named here is not
    /// retried (the call fails under the plugin's failure policy instead). Default: none.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub no_retry: Vec<String>,
    /// The request parts a declared hook needs, by hook (only `modify_request` takes parts):
    /// the proxy then sends only those parts (and `method`, `path`, and the body when the hook
    /// wants it), and the hook answers with a `patch`, a `response` or `{}`. Default: none
    /// (the whole request is sent).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub parts: BTreeMap<String, Vec<RequestPart>>,
}

/// Result of `handshake`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct HandshakeResult {
    /// The protocol version the proxy speaks.
    pub protocol_version: u32,
    /// The plugin's configured name.
    pub name: String,
    /// The plugin's type.
    #[serde(rename = "type")]
    pub plugin_type: PluginType,
}

// ---- proxy → plugin: lifecycle ---------------------------------------------------------------

/// Params of `configure`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
pub struct ConfigureParams {
    /// The plugin's config map: keys and values from the command line and the config file.
    #[serde(default)]
    pub config: Object,
    /// Validate only: read and check the config and every file it names, act on nothing (no
    /// listening, no connecting, no pushing); answer as `configure` would (an error answer
    /// whose message says what is wrong, with file, line and key where there are some). The
    /// proxy sends `stop` next. Absent means `false`.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub check: bool,
}

// ---- plugin → proxy: status reports (any plugin type) ----------------------------------------

/// Params of `config_status`: the plugin's config state after a change it made on its own (a
/// watched file it re-read).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct ConfigStatusParams {
    /// What is wrong with the new config (file, line and key where there are some): the plugin
    /// rejected it and keeps working with its last good config. `null` (or absent): the current
    /// config is accepted (clears an earlier rejection).
    #[serde(default)]
    pub error: Option<String>,
}

// ---- plugin → proxy: the manager (upstream plugins) ----------------------------------------------
//
// The same four methods go the other way too: the proxy calls `add_upstream` and
// `remove_upstream` on router plugins, and `add_backend` and `remove_backend` on loadbalancer
// plugins, with the same params, to keep them in step with the registry.

/// Params of `add_upstream`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct AddUpstreamParams {
    /// The upstream to add (or to replace, if one with this id exists).
    pub upstream: Upstream,
}

/// Params of `remove_upstream`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct RemoveUpstreamParams {
    /// Id of the upstream to remove, with its backends.
    pub id: String,
}

/// Params of `add_backend`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct AddBackendParams {
    /// The upstream the backend belongs to.
    pub upstream_id: String,
    /// The backend to add (or replace).
    pub backend: Backend,
}

/// Params of `remove_backend`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct RemoveBackendParams {
    /// The upstream the backend belongs to.
    pub upstream_id: String,
    /// Id of the backend to remove.
    pub backend_id: String,
}

pub use crate::batch::*;

// ---- proxy → plugin: modifier hooks ------------------------------------------------------------

/// Params of `modify_request`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ModifyRequestParams {
    /// The request as the previous modifier left it.
    pub request: HttpRequest,
}

/// Result of `modify_request`: `{}` leaves the request as it is. `request` and `patch` together
/// are a bad result.
#[derive(Debug, Clone, PartialEq, Default, Serialize, JsonSchema)]
pub struct ModifyRequestResult {
    /// The changed request, replacing the one sent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request: Option<HttpRequest>,
    /// The changes to make to the request, instead of the whole `request` (see
    /// [`RequestPatch`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub patch: Option<RequestPatch>,
    /// A response to send to the client instead of forwarding (e.g. a 401). Later modifiers
    /// and the backend are skipped; `modify_response` hooks still run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub response: Option<HttpResponse>,
    /// Lets the proxy reuse this decision, without calling the plugin, for requests whose
    /// named parts equal this request's, for `ttl_ms` (see [`CacheInstruction`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache: Option<CacheInstruction>,
}

/// A `modify_request` result's `cache`: "for the next `ttl_ms`, a request whose `key` parts are
/// equal to this one's may get this same decision without calling me". What is reused is the
/// decision: unchanged, the same direct `response`, or the changes the returned `request` made
/// (headers set or removed, method, path, query, host, upstream, context), applied to the new
/// request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CacheInstruction {
    /// How long the decision may be reused, in milliseconds (the proxy caps it at one hour;
    /// `0` means "do not cache").
    pub ttl_ms: u64,
    /// The request parts the decision depends on; two requests with equal values of these parts
    /// get the same decision. A part the request lacks counts as "absent".
    pub key: Vec<CacheKeyPart>,
}

/// One part of a [`CacheInstruction`]'s key: `method`, `path`, `query`, `host`, `client` (the
/// client's IP address), `header:NAME` (all values of that header, name case-insensitive) or
/// `context:KEY` (a context value).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum CacheKeyPart {
    /// The method.
    Method,
    /// The path as sent to the plugin.
    Path,
    /// The query string.
    Query,
    /// The Host.
    Host,
    /// The client's IP address (without the port).
    Client,
    /// All values of a header, the name lowercased.
    Header(String),
    /// A context value.
    Context(String),
}

impl ModifyRequestResult {
    /// `{}`: the request goes on unchanged.
    pub fn unchanged() -> Self {
        ModifyRequestResult::default()
    }

    /// Replaces the request with `request` (the proxy applies what changed).
    pub fn forward(request: HttpRequest) -> Self {
        ModifyRequestResult {
            request: Some(request),
            ..ModifyRequestResult::default()
        }
    }

    /// Changes the request by `patch` (only what it names).
    pub fn patch(patch: RequestPatch) -> Self {
        ModifyRequestResult {
            patch: Some(patch),
            ..ModifyRequestResult::default()
        }
    }

    /// Answers the client with `response` directly.
    pub fn respond(response: HttpResponse) -> Self {
        ModifyRequestResult {
            response: Some(response),
            ..ModifyRequestResult::default()
        }
    }

    /// Lets the proxy reuse this decision for `ttl` (millisecond precision, capped at one hour
    /// by the proxy) on requests whose `key` parts are equal, without calling the plugin:
    /// `ModifyRequestResult::unchanged().cached(Duration::from_secs(30), [CacheKeyPart::header("authorization")])`.
    pub fn cached(
        mut self,
        ttl: std::time::Duration,
        key: impl IntoIterator<Item = CacheKeyPart>,
    ) -> Self {
        self.cache = Some(CacheInstruction {
            ttl_ms: u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX),
            key: key.into_iter().collect(),
        });
        self
    }
}

impl CacheKeyPart {
    /// `header:NAME`: all values of a header (the name is compared case-insensitively).
    pub fn header(name: &str) -> Self {
        CacheKeyPart::Header(name.to_ascii_lowercase())
    }

    /// `context:KEY`: a context value.
    pub fn context(key: &str) -> Self {
        CacheKeyPart::Context(key.to_owned())
    }
}

impl TryFrom<String> for CacheKeyPart {
    type Error = String;

    fn try_from(part: String) -> Result<Self, Self::Error> {
        let named = |prefix: &str| {
            part.strip_prefix(prefix)
                .filter(|name| !name.is_empty())
                .map(str::to_owned)
        };
        Ok(match part.as_str() {
            "method" => CacheKeyPart::Method,
            "path" => CacheKeyPart::Path,
            "query" => CacheKeyPart::Query,
            "host" => CacheKeyPart::Host,
            "client" => CacheKeyPart::Client,
            _ => {
                if let Some(name) = named("header:") {
                    CacheKeyPart::Header(name.to_ascii_lowercase())
                } else if let Some(key) = named("context:") {
                    CacheKeyPart::Context(key)
                } else {
                    return Err(format!(
                        "unknown cache key part `{part}` (method, path, query, host, client, \
                         header:NAME or context:KEY)"
                    ));
                }
            }
        })
    }
}

impl From<CacheKeyPart> for String {
    fn from(part: CacheKeyPart) -> String {
        match part {
            CacheKeyPart::Method => "method".into(),
            CacheKeyPart::Path => "path".into(),
            CacheKeyPart::Query => "query".into(),
            CacheKeyPart::Host => "host".into(),
            CacheKeyPart::Client => "client".into(),
            CacheKeyPart::Header(name) => format!("header:{name}"),
            CacheKeyPart::Context(key) => format!("context:{key}"),
        }
    }
}

impl JsonSchema for CacheKeyPart {
    fn schema_name() -> Cow<'static, str> {
        "CacheKeyPart".into()
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "description": "A request part a cached decision depends on: method, path, query, \
                host, client (IP address), header:NAME (case-insensitive) or context:KEY.",
            "type": "string",
            "pattern": "^(method|path|query|host|client|header:.+|context:.+)$"
        })
    }
}

/// Params of `modify_response`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ModifyResponseParams {
    /// The request as it was forwarded.
    pub request: HttpRequest,
    /// The response as the previous modifier left it (no body: bodies stream).
    pub response: HttpResponse,
}

/// Result of `modify_response` and `modify_error_response`: `{}` leaves the response as it is.
/// `response` and `patch` together are a bad result.
#[derive(Debug, Clone, PartialEq, Default, Serialize, JsonSchema)]
pub struct ModifyResponseResult {
    /// The changed response, replacing the one sent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub response: Option<HttpResponse>,
    /// Status and header changes, instead of the whole `response` (see [`ResponsePatch`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub patch: Option<ResponsePatch>,
}

/// Params of `modify_error_response`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ModifyErrorResponseParams {
    /// The request that failed.
    pub request: HttpRequest,
    /// The error response the proxy is about to send.
    pub response: HttpResponse,
    /// What went wrong.
    pub error: ProxyError,
}

// ---- proxy → plugin: router hooks ------------------------------------------------------------

/// Params of `route_request`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct RouteRequestParams {
    /// The request; `upstream`, `prefix` and `prefixless_path` are not set yet.
    pub request: HttpRequest,
}

/// Result of `route_request`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
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

// ---- proxy → plugin: loadbalancer hooks ----------------------------------------------------------

/// Params of `get_backend`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct GetBackendParams {
    /// The upstream a backend is wanted for.
    pub upstream_id: String,
    /// The request being forwarded (for sticky choices by header, cookie or client address).
    pub request: HttpRequest,
}

/// Result of `get_backend`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
pub struct GetBackendResult {
    /// Id of the chosen backend of that upstream; `null` means none available (503).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backend_id: Option<String>,
}

// ---- proxy → plugin: metrics (metric plugins; `upstream_metric` also loadbalancer and upstream) ----

/// Params of `event_metric`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct EventMetricParams {
    /// The batch, oldest first.
    pub events: Vec<EventMetric>,
}

/// Params of `profiling_metric`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ProfilingMetricParams {
    /// The batch, oldest first.
    pub profiles: Vec<ProfilingMetric>,
}

/// Params of `plugin_metric`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct PluginMetricParams {
    /// The batch, oldest first.
    pub metrics: Vec<PluginMetric>,
}

/// Params of `request_metric`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct RequestMetricParams {
    /// The batch, oldest first.
    pub metrics: Vec<RequestMetric>,
}

/// Params of `upstream_metric`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct UpstreamMetricParams {
    /// The batch, oldest first.
    pub metrics: Vec<UpstreamMetric>,
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn cache_key_parts_parse_by_name_and_a_wrong_shape_is_refused() {
        let result: ModifyRequestResult = serde_json::from_str(
            r#"{"cache": {"ttl_ms": 500, "key": ["method", "header:Authorization", "context:user"]}}"#,
        )
        .unwrap();
        let cache = result.cache.unwrap();
        assert_eq!(cache.ttl_ms, 500);
        assert_eq!(
            cache.key,
            [
                CacheKeyPart::Method,
                CacheKeyPart::Header("authorization".into()),
                CacheKeyPart::Context("user".into())
            ]
        );
        for bad in [
            r#"{"cache": {"ttl_ms": 5, "key": ["cookie"]}}"#,
            r#"{"cache": {"ttl_ms": 5, "key": ["header:"]}}"#,
            r#"{"cache": {"ttl_ms": -1, "key": []}}"#,
            r#"{"cache": {"ttl_ms": 5}}"#,
            r#"{"cache": {"ttl_ms": 5, "key": [], "extra": 1}}"#,
            r#"{"cache": 5}"#,
        ] {
            assert!(
                serde_json::from_str::<ModifyRequestResult>(bad).is_err(),
                "{bad}"
            );
        }
        let text = serde_json::to_string(&CacheKeyPart::header("X-A")).unwrap();
        assert_eq!(text, r#""header:x-a""#);
        let built = ModifyRequestResult::unchanged().cached(
            std::time::Duration::from_secs(30),
            [CacheKeyPart::header("Authorization"), CacheKeyPart::Method],
        );
        assert_eq!(
            serde_json::to_value(&built).unwrap(),
            serde_json::json!({"cache": {"ttl_ms": 30000, "key": ["header:authorization", "method"]}})
        );
    }
}
