//! What a call sends: the hook looked up in the protocol table ([`hook_of`]), its params
//! checked against the hook's params type ([`checked_params`]), and the request built from
//! flags or from an access-log line for `modify_request` and `route_request`
//! ([`request_params`]).

use gatekeeper_rpc::methods::{
    method_info, Kind, MethodInfo, ModifyRequest, PluginType, RouteRequest,
};
use gatekeeper_rpc::Method;
use serde_json::value::RawValue;
use serde_json::{json, Value};

use super::outcome::Failure;
use super::Outcome;

/// The protocol table's row of `hook`, if a plugin of this type may be sent it (a hook it may
/// declare, or a lifecycle method).
pub fn hook_of(plugin_type: PluginType, hook: &str) -> Outcome<&'static MethodInfo> {
    match method_info(hook) {
        Some(info)
            if info.kind == Kind::Lifecycle
                || (info.kind != Kind::Handshake && info.declared_by.contains(&plugin_type)) =>
        {
            Ok(info)
        }
        _ => Err(Failure::Usage(format!(
            "`{hook}` is not a hook of a {plugin_type} plugin (its hooks: {})",
            gatekeeper_rpc::methods::hooks_of(plugin_type).join(", ")
        ))),
    }
}

/// `params` as the proxy would send them: parsed as the hook's params type (refused if they do
/// not parse) and written back with every default filled in (a request's `headers: []`, …).
pub fn checked_params(method: &MethodInfo, params: &Value) -> Outcome<Box<RawValue>> {
    let invalid =
        |e: serde_json::Error| Failure::Usage(format!("invalid params for `{}`: {e}", method.name));
    let text = params.to_string();
    let normalized = (method.normalize_params)(&text).map_err(invalid)?;
    serde_json::value::to_raw_value(&normalized).map_err(invalid)
}

/// Whether `hook` takes a request that [`request_params`] can build.
pub fn takes_request(hook: &str) -> bool {
    hook == ModifyRequest::NAME || hook == RouteRequest::NAME
}

/// The hook a request-only line (an access-log line) goes to for this plugin type.
pub fn request_hook(plugin_type: PluginType) -> Option<&'static str> {
    match plugin_type {
        PluginType::Modifier => Some(ModifyRequest::NAME),
        PluginType::Router => Some(RouteRequest::NAME),
        _ => None,
    }
}

/// The parts of a request to build.
pub struct RequestSpec<'a> {
    /// The method.
    pub method: &'a str,
    /// The path, with its query.
    pub path: &'a str,
    /// The Host.
    pub host: &'a str,
    /// The client address.
    pub remote_addr: &'a str,
    /// Headers, each `NAME: VALUE`.
    pub headers: &'a [String],
}

/// The params `{"request": {...}}` of `modify_request` and `route_request`, as gatekeeper
/// would send them for this request on the listener `http-public`.
pub fn request_params(spec: &RequestSpec<'_>) -> Outcome<Value> {
    let (path, query) = match spec.path.split_once('?') {
        Some((path, query)) => (path, Some(query)),
        None => (spec.path, None),
    };
    let mut headers = vec![json!(["host", spec.host])];
    for header in spec.headers {
        let Some((name, value)) = header.split_once(':') else {
            return Err(Failure::Usage(format!(
                "--header `{header}`: expected `NAME: VALUE`"
            )));
        };
        headers.push(json!([name.trim().to_ascii_lowercase(), value.trim()]));
    }
    let mut request = json!({
        "listener": "http-public",
        "remote_addr": spec.remote_addr,
        "method": spec.method.to_ascii_uppercase(),
        "host": spec.host,
        "path": path,
        "prefixless_path": path,
        "headers": headers,
        "context": {},
    });
    if let Some(query) = query {
        request["query"] = json!(query);
    }
    Ok(json!({ "request": request }))
}

/// The params for an access-log line (`method`, `host`, `path`, and `remote_addr` or
/// `headers` if it has them).
pub fn access_log_params(line: &Value) -> Outcome<Value> {
    let text = |key: &str, default: &'static str| {
        line.get(key)
            .and_then(Value::as_str)
            .unwrap_or(default)
            .to_owned()
    };
    let headers: Vec<String> = match line.get("headers") {
        Some(Value::Object(map)) => map
            .iter()
            .filter_map(|(k, v)| v.as_str().map(|v| format!("{k}: {v}")))
            .collect(),
        _ => Vec::new(),
    };
    let (method, path, host, remote_addr) = (
        text("method", "GET"),
        text("path", "/"),
        text("host", "localhost"),
        text("remote_addr", "127.0.0.1:40000"),
    );
    request_params(&RequestSpec {
        method: &method,
        path: &path,
        host: &host,
        remote_addr: &remote_addr,
        headers: &headers,
    })
}
