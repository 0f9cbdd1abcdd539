//! The SDK's reference plugin: the Rust *conformance plugin* of the shared conformance suite
//! (`plugin-sdk/conformance/README.md`).
//!
//! Every SDK (Rust, Python, Node) ships one program that behaves exactly alike whatever its
//! language, so that one set of cases checks them all: `wire.json` in memory (this crate's
//! `tests/wire.rs` runs it against [`run`]) and `cases.json` through the real gatekeeper
//! (`integration/conformance.bats` runs the `conformance-plugin` binary of
//! `gatekeeper-test-plugins`, a thin `main` over [`serve`]).
//!
//! It is also the smallest complete example of every plugin type written with this SDK: one
//! [`Conformance`] value implements [`ModifierPlugin`], [`RouterPlugin`],
//! [`LoadBalancerPlugin`], [`UpstreamPlugin`] and [`MetricPlugin`], and [`serve`] serves it as
//! the type gatekeeper asks for in `GATEKEEPER_PLUGIN_TYPE`.
//!
//! # Config
//!
//! | key | meaning |
//! |---|---|
//! | `sdk` | the name it reports (default `rust`); `SDK` below |
//! | `file` | a path to append JSON lines to (loadbalancer and metric) |
//! | `upstream_id`, `prefix`, `backends` | upstream type: what to register (`backends` is a comma-separated list of URLs) |
//! | `invalid` | fails `configure` with this message (`-32602`); with `check: true`, with `checked: <message>` |
//! | `report_config_error` | on `start`, reports it with `config_status`, then reports the config accepted |
//! | `batch` | upstream type: push in one `apply_batch` instead (`replace: true` when it is `replace`) |
//!
//! # Behaviour
//!
//! - **modifier** (all three hooks): `modify_request` answers directly with status `N`, header
//!   `x-conformance-sdk: SDK` and body `answered by SDK` when the request has
//!   `x-conformance-respond: N`; otherwise it adds request header `x-conformance-sdk: SDK` and
//!   sets `context["conformance"] = "seen by SDK"`. With `x-conformance-cache: N`, either result
//!   carries `cache: {"ttl_ms": N, "key": ["header:x-conformance-cache"]}`. `modify_response` adds
//!   `x-conformance-context` (the value of `context["conformance"]`, or `none`) and
//!   `x-conformance-status` (the status it saw). `modify_error_response` keeps the status and
//!   replaces headers and body with `content-type: application/json` and
//!   `{"error":"<error.kind>","sdk":"SDK"}`.
//! - **router** (all three hooks): remembers upstream ids; `route_request` returns the one named
//!   by `x-conformance-upstream` if known, else the first known id in sorted order, else none.
//! - **loadbalancer** (all four hooks): remembers backends per upstream in the order added;
//!   `get_backend` returns the one named by `x-conformance-backend` if the upstream has it, else
//!   the first one added, else none. Each `upstream_metric` batch appends
//!   `{"method":"upstream_metric","count":N}` to `file`.
//! - **upstream** (no hooks): on `start`, `add_upstream` `{"id": upstream_id, "name":
//!   upstream_id, "prefixes": [prefix]}`, then `add_backend` for each backend with ids `"0"`,
//!   `"1"`, …, one after the other. With `batch`, the same changes in one `apply_batch`; a
//!   refused batch fails `start` with its code and the message `apply_batch refused change I:
//!   MESSAGE` (the first refused change of the error's `data`).
//! - **metric** (all five hooks): appends `{"method":"<hook>","count":<records>}` to `file` for
//!   every batch.

use std::collections::{BTreeSet, HashMap};
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::process::ExitCode;
use std::sync::{Mutex, MutexGuard, PoisonError};

use gatekeeper_rpc::methods::{
    AddBackendParams, AddUpstreamParams, ApplyBatchRefused, BatchChange, CacheKeyPart,
    EventMetricHook, EventMetricParams, GetBackendParams, GetBackendResult, Method,
    ModifyErrorResponseParams, ModifyRequestParams, ModifyRequestResult, ModifyResponseParams,
    ModifyResponseResult, PluginMetricHook, PluginMetricParams, PluginType, ProfilingMetricHook,
    ProfilingMetricParams, RemoveBackendParams, RemoveUpstreamParams, RequestMetricHook,
    RequestMetricParams, RouteRequestParams, RouteRequestResult, UpstreamMetricHook,
    UpstreamMetricParams,
};
use gatekeeper_rpc::types::{header, set_header, Backend, HttpResponse, Object, Upstream};
use gatekeeper_rpc::CallError;
use serde_json::Value;
use tokio::io::{AsyncRead, AsyncWrite};

use crate::error::{HookError, ServeError};
use crate::loadbalancer::LoadBalancerPlugin;
use crate::manager::{ConfigReporter, Manager};
use crate::metric::MetricPlugin;
use crate::plugin::{ModifierPlugin, Plugin, UpstreamPlugin};
use crate::router::RouterPlugin;
use crate::serve::{
    run_loadbalancer, run_metric, run_modifier, run_router, run_upstream, serve_loadbalancer,
    serve_metric, serve_modifier, serve_router, serve_upstream,
};
use crate::PluginEnv;

/// The name the plugin reports when its config has no `sdk`.
pub const DEFAULT_SDK: &str = "rust";

/// Request header: answer directly with this status.
pub const RESPOND_HEADER: &str = "x-conformance-respond";
/// The request header whose value (milliseconds) makes `modify_request` results cacheable, keyed
/// by this header.
pub const CACHE_HEADER: &str = "x-conformance-cache";
/// Request header: the upstream a router picks.
pub const UPSTREAM_HEADER: &str = "x-conformance-upstream";
/// Request header: the backend a loadbalancer picks.
pub const BACKEND_HEADER: &str = "x-conformance-backend";
/// Header the modifier adds to requests and to its direct answers: the SDK's name.
pub const SDK_HEADER: &str = "x-conformance-sdk";
/// Response header: the `conformance` context value `modify_response` saw.
pub const CONTEXT_HEADER: &str = "x-conformance-context";
/// Response header: the status `modify_response` saw.
pub const STATUS_HEADER: &str = "x-conformance-status";
/// The context key `modify_request` sets.
pub const CONTEXT_KEY: &str = "conformance";

/// Serves the conformance plugin as the type named by `GATEKEEPER_PLUGIN_TYPE`, for the life of
/// the process (see [`serve_modifier`] and the others). The whole `main` of the
/// `conformance-plugin` binary.
pub async fn serve() -> ExitCode {
    let plugin_type = match PluginEnv::from_env() {
        Ok(env) => env.plugin_type,
        Err(error) => {
            eprintln!("error: {error}");
            return ExitCode::FAILURE;
        }
    };
    let plugin = Conformance::new(plugin_type);
    match plugin_type {
        PluginType::Upstream => serve_upstream(plugin).await,
        PluginType::Modifier => serve_modifier(plugin).await,
        PluginType::Router => serve_router(plugin).await,
        PluginType::Loadbalancer => serve_loadbalancer(plugin).await,
        PluginType::Metric => serve_metric(plugin).await,
    }
}

/// Serves the conformance plugin as `env.plugin_type` over an open connection (see
/// [`run_modifier`] and the others): the handshake with `env.token`, then calls until `stop` or
/// the connection closes. Its config arrives in `configure`, as from gatekeeper.
pub async fn run<IO>(io: IO, env: &PluginEnv) -> Result<(), ServeError>
where
    IO: AsyncRead + AsyncWrite + Send + 'static,
{
    let plugin = Conformance::new(env.plugin_type);
    match env.plugin_type {
        PluginType::Upstream => run_upstream(plugin, io, env).await,
        PluginType::Modifier => run_modifier(plugin, io, env).await,
        PluginType::Router => run_router(plugin, io, env).await,
        PluginType::Loadbalancer => run_loadbalancer(plugin, io, env).await,
        PluginType::Metric => run_metric(plugin, io, env).await,
    }
}

/// The conformance plugin: one value for every plugin type (the type it is served as decides
/// which of its traits are used). See the [module documentation](self) for its behaviour.
#[derive(Debug)]
pub struct Conformance {
    plugin_type: PluginType,
    config: Mutex<Config>,
    file: Mutex<Option<File>>,
    /// Router: the upstream ids the proxy told about.
    upstreams: Mutex<BTreeSet<String>>,
    /// Loadbalancer: backend ids per upstream, in the order they were added.
    backends: Mutex<HashMap<String, Vec<String>>>,
    /// Where `config_status` reports go.
    reporter: Mutex<Option<ConfigReporter>>,
}

/// What `configure` gave.
#[derive(Debug, Clone)]
struct Config {
    sdk: String,
    upstream_id: String,
    prefix: String,
    backends: Vec<String>,
    /// `report_config_error`.
    report_config_error: Option<String>,
    /// `batch`: push in one `apply_batch`, with `replace` when it is `replace`.
    batch: Option<String>,
}

impl Conformance {
    /// The plugin, to be served as `plugin_type` (which decides what its config must hold).
    pub fn new(plugin_type: PluginType) -> Self {
        Conformance {
            plugin_type,
            config: Mutex::new(Config {
                sdk: DEFAULT_SDK.to_owned(),
                upstream_id: String::new(),
                prefix: String::new(),
                backends: Vec::new(),
                report_config_error: None,
                batch: None,
            }),
            file: Mutex::new(None),
            upstreams: Mutex::new(BTreeSet::new()),
            backends: Mutex::new(HashMap::new()),
            reporter: Mutex::new(None),
        }
    }

    fn sdk(&self) -> String {
        lock(&self.config).sdk.clone()
    }

    /// Appends `{"method": method, "count": count}` to `file`, if one is configured.
    fn record(&self, method: &str, count: usize) {
        let mut file = lock(&self.file);
        let Some(file) = file.as_mut() else {
            return;
        };
        let mut line = serde_json::json!({ "method": method, "count": count }).to_string();
        line.push('\n');
        // One write per line on a file opened for appending: lines never interleave.
        if let Err(error) = file.write_all(line.as_bytes()).and_then(|()| file.flush()) {
            tracing::warn!(%error, "could not append to `file`");
        }
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The string value of config key `key`, if set; an error if it is not a string.
fn string_setting(config: &Object, key: &str) -> Result<Option<String>, HookError> {
    match config.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(value)) => Ok(Some(value.clone())),
        Some(other) => Err(HookError::invalid_params(format!(
            "config `{key}` must be a string, not {other}"
        ))),
    }
}

impl Plugin for Conformance {
    async fn configure(&self, config: Object) -> Result<(), HookError> {
        if let Some(message) = string_setting(&config, "invalid")? {
            return Err(HookError::invalid_params(message));
        }
        let report_config_error = string_setting(&config, "report_config_error")?;
        let batch = string_setting(&config, "batch")?;
        let sdk = string_setting(&config, "sdk")?.unwrap_or_else(|| DEFAULT_SDK.to_owned());
        let upstream_id = string_setting(&config, "upstream_id")?.unwrap_or_default();
        let prefix = string_setting(&config, "prefix")?.unwrap_or_default();
        let backends: Vec<String> = string_setting(&config, "backends")?
            .unwrap_or_default()
            .split(',')
            .map(str::trim)
            .filter(|url| !url.is_empty())
            .map(str::to_owned)
            .collect();
        if self.plugin_type == PluginType::Upstream && (upstream_id.is_empty() || prefix.is_empty())
        {
            return Err(HookError::invalid_params(
                "an upstream conformance plugin needs `upstream_id` and `prefix` in its config",
            ));
        }
        let file = match string_setting(&config, "file")? {
            Some(path) => Some(
                OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(&path)
                    .map_err(|e| {
                        HookError::invalid_params(format!("cannot open `file` {path}: {e}"))
                    })?,
            ),
            None => None,
        };
        *lock(&self.file) = file;
        *lock(&self.config) = Config {
            sdk,
            upstream_id,
            prefix,
            backends,
            report_config_error,
            batch,
        };
        Ok(())
    }

    async fn check(&self, config: Object) -> Result<(), HookError> {
        match string_setting(&config, "invalid")? {
            Some(message) => Err(HookError::invalid_params(format!("checked: {message}"))),
            None => Ok(()),
        }
    }

    fn config_reporter(&self, reporter: ConfigReporter) {
        *lock(&self.reporter) = Some(reporter);
    }

    async fn start(&self) -> Result<(), HookError> {
        let message = lock(&self.config).report_config_error.clone();
        let reporter = lock(&self.reporter).clone();
        if let (Some(message), Some(reporter)) = (message, reporter) {
            reporter.report_config_error(message).await?;
            reporter.report_config_ok().await?;
        }
        Ok(())
    }
}

impl ModifierPlugin for Conformance {
    async fn modify_request(
        &self,
        params: ModifyRequestParams,
    ) -> Result<ModifyRequestResult, HookError> {
        let sdk = self.sdk();
        let mut request = params.request;
        let cache_ms = match header(&request.headers, CACHE_HEADER) {
            Some(ms) => Some(ms.trim().parse::<u64>().map_err(|_| {
                HookError::invalid_params(format!("{CACHE_HEADER} is not a number: `{ms}`"))
            })?),
            None => None,
        };
        let cached = |result: ModifyRequestResult| match cache_ms {
            Some(ms) => result.cached(
                std::time::Duration::from_millis(ms),
                [CacheKeyPart::header(CACHE_HEADER)],
            ),
            None => result,
        };
        if let Some(status) = header(&request.headers, RESPOND_HEADER) {
            let status: u16 = status.trim().parse().map_err(|_| {
                HookError::invalid_params(format!("{RESPOND_HEADER} is not a status: `{status}`"))
            })?;
            return Ok(cached(ModifyRequestResult::respond(HttpResponse {
                status,
                headers: vec![(SDK_HEADER.to_owned(), sdk.clone())],
                body: Some(format!("answered by {sdk}")),
                body_base64: None,
                body_omitted: false,
            })));
        }
        set_header(&mut request.headers, SDK_HEADER, sdk.clone());
        request.context.insert(
            CONTEXT_KEY.to_owned(),
            Value::String(format!("seen by {sdk}")),
        );
        Ok(cached(ModifyRequestResult::forward(request)))
    }

    async fn modify_response(
        &self,
        params: ModifyResponseParams,
    ) -> Result<ModifyResponseResult, HookError> {
        let seen = match params.request.context.get(CONTEXT_KEY) {
            None | Some(Value::Null) => "none".to_owned(),
            Some(Value::String(value)) => value.clone(),
            Some(other) => other.to_string(),
        };
        let mut response = params.response;
        let status = response.status.to_string();
        set_header(&mut response.headers, CONTEXT_HEADER, seen);
        set_header(&mut response.headers, STATUS_HEADER, status);
        Ok(ModifyResponseResult {
            response: Some(response),
            patch: None,
        })
    }

    async fn modify_error_response(
        &self,
        params: ModifyErrorResponseParams,
    ) -> Result<ModifyResponseResult, HookError> {
        #[derive(serde::Serialize)]
        struct Body<'a> {
            error: &'a str,
            sdk: &'a str,
        }
        let sdk = self.sdk();
        let body = serde_json::to_string(&Body {
            error: &params.error.kind,
            sdk: &sdk,
        })
        .map_err(HookError::internal)?;
        Ok(ModifyResponseResult {
            response: Some(HttpResponse {
                status: params.response.status,
                headers: vec![("content-type".to_owned(), "application/json".to_owned())],
                body: Some(body),
                body_base64: None,
                body_omitted: false,
            }),
            patch: None,
        })
    }
}

impl RouterPlugin for Conformance {
    async fn add_upstream(&self, params: AddUpstreamParams) -> Result<(), HookError> {
        lock(&self.upstreams).insert(params.upstream.id);
        Ok(())
    }

    async fn remove_upstream(&self, params: RemoveUpstreamParams) -> Result<(), HookError> {
        lock(&self.upstreams).remove(&params.id);
        Ok(())
    }

    async fn route_request(
        &self,
        params: RouteRequestParams,
    ) -> Result<RouteRequestResult, HookError> {
        let upstreams = lock(&self.upstreams);
        let named = header(&params.request.headers, UPSTREAM_HEADER)
            .filter(|id| upstreams.contains(*id))
            .map(str::to_owned);
        Ok(RouteRequestResult {
            upstream: named.or_else(|| upstreams.first().cloned()),
            ..RouteRequestResult::default()
        })
    }
}

impl LoadBalancerPlugin for Conformance {
    async fn add_backend(&self, params: AddBackendParams) -> Result<(), HookError> {
        let mut backends = lock(&self.backends);
        let ids = backends.entry(params.upstream_id).or_default();
        if !ids.contains(&params.backend.id) {
            ids.push(params.backend.id);
        }
        Ok(())
    }

    async fn remove_backend(&self, params: RemoveBackendParams) -> Result<(), HookError> {
        let mut backends = lock(&self.backends);
        if let Some(ids) = backends.get_mut(&params.upstream_id) {
            ids.retain(|id| *id != params.backend_id);
            if ids.is_empty() {
                backends.remove(&params.upstream_id);
            }
        }
        Ok(())
    }

    async fn upstream_metric(&self, params: UpstreamMetricParams) -> Result<(), HookError> {
        self.record(UpstreamMetricHook::NAME, params.metrics.len());
        Ok(())
    }

    async fn get_backend(&self, params: GetBackendParams) -> Result<GetBackendResult, HookError> {
        let backends = lock(&self.backends);
        let Some(ids) = backends.get(&params.upstream_id) else {
            return Ok(GetBackendResult { backend_id: None });
        };
        let named = header(&params.request.headers, BACKEND_HEADER)
            .filter(|id| ids.iter().any(|known| known == id))
            .map(str::to_owned);
        Ok(GetBackendResult {
            backend_id: named.or_else(|| ids.first().cloned()),
        })
    }
}

impl UpstreamPlugin for Conformance {
    async fn start_upstreams(&self, manager: Manager) -> Result<(), HookError> {
        let config = lock(&self.config).clone();
        let upstream = Upstream {
            id: config.upstream_id.clone(),
            name: config.upstream_id.clone(),
            timeout_ms: None,
            protocols: Vec::new(),
            hostnames: Vec::new(),
            prefixes: vec![config.prefix.clone()],
            balancer: None,
            backend_protocol: None,
            connect_timeout_ms: None,
            max_connections_per_backend: None,
            passive_health: None,
            health_check: None,
            host_header: None,
            extra: Object::new(),
        };
        let backends = config
            .backends
            .iter()
            .enumerate()
            .map(|(n, address)| Backend {
                id: n.to_string(),
                address: address.clone(),
                weight: None,
                extra: Object::new(),
            });
        if let Some(batch) = &config.batch {
            let mut changes = vec![BatchChange::add_upstream(upstream)];
            changes.extend(backends.map(|b| BatchChange::add_backend(&config.upstream_id, b)));
            return match manager.apply_batch(changes, batch == "replace").await {
                Ok(_) => Ok(()),
                Err(CallError::Remote { error, .. }) => {
                    let first = ApplyBatchRefused::from_error(&error)
                        .and_then(|data| data.refused.into_iter().next());
                    Err(match first {
                        Some(refused) => HookError::new(
                            error.code(),
                            format!(
                                "apply_batch refused change {}: {}",
                                refused.index, refused.message
                            ),
                        ),
                        None => HookError::new(error.code(), error.message().to_owned()),
                    })
                }
                Err(other) => Err(other.into()),
            };
        }
        manager.add_upstream(upstream).await?;
        for backend in backends {
            manager
                .add_backend(config.upstream_id.clone(), backend)
                .await?;
        }
        Ok(())
    }
}

impl MetricPlugin for Conformance {
    async fn event_metric(&self, params: EventMetricParams) -> Result<(), HookError> {
        self.record(EventMetricHook::NAME, params.events.len());
        Ok(())
    }

    async fn profiling_metric(&self, params: ProfilingMetricParams) -> Result<(), HookError> {
        self.record(ProfilingMetricHook::NAME, params.profiles.len());
        Ok(())
    }

    async fn plugin_metric(&self, params: PluginMetricParams) -> Result<(), HookError> {
        self.record(PluginMetricHook::NAME, params.metrics.len());
        Ok(())
    }

    async fn request_metric(&self, params: RequestMetricParams) -> Result<(), HookError> {
        self.record(RequestMetricHook::NAME, params.metrics.len());
        Ok(())
    }

    async fn upstream_metric(&self, params: UpstreamMetricParams) -> Result<(), HookError> {
        self.record(UpstreamMetricHook::NAME, params.metrics.len());
        Ok(())
    }
}
