//! Testing a plugin without gatekeeper: a test host that serves the plugin in memory the way
//! gatekeeper runs a plugin process, and builders for what gatekeeper sends.
//!
//! [`modifier`] (and [`router`], [`loadbalancer`], [`metric`], [`upstream`], or a
//! [`builder`] for options) serves the plugin over an in-memory duplex stream with the SDK's own
//! serve loop, and plays the proxy on the other end: every call and result is encoded to a JSON
//! line and read back. It checks the handshake (token, protocol version), calls `configure`
//! and `start`, and returns a [`TestHost`] whose methods send one hook call each
//! ([`TestHost::modify_request`], …) and check the result as gatekeeper does (parsed as the
//! protocol table's result type: a result gatekeeper would refuse is [`TestHostError::BadResult`]).
//! [`TestHost::stop`] sends `stop` and waits for the plugin to end. Manager calls of an upstream
//! plugin are checked, answered and recorded ([`TestHost::manager_calls`]).
//!
//! ```
//! use gatekeeper_plugin_sdk::testing::{self, make_request};
//! use gatekeeper_plugin_sdk::{HookError, HttpResponse, ModifierPlugin, ModifyRequestParams, ModifyRequestResult, Plugin};
//!
//! struct Deny;
//! impl Plugin for Deny {}
//! impl ModifierPlugin for Deny {
//!     fn hooks(&self) -> &'static [&'static str] {
//!         &["modify_request"]
//!     }
//!     async fn modify_request(&self, _: ModifyRequestParams) -> Result<ModifyRequestResult, HookError> {
//!         Ok(ModifyRequestResult { response: Some(HttpResponse::new(401, vec![])), ..Default::default() })
//!     }
//! }
//!
//! # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
//! let host = testing::modifier(Deny, serde_json::json!({})).await?;
//! let result = host.modify_request(make_request("GET", "/api").build()).await?;
//! assert_eq!(result.response.map(|r| r.status), Some(401));
//! host.stop().await?;
//! # Ok::<(), testing::TestHostError>(())
//! # }).unwrap();
//! ```

mod builders;
mod proxy;

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use gatekeeper_rpc::methods::{
    method_info, AddBackend, AddBackendParams, AddUpstream, AddUpstreamParams, Configure,
    ConfigureParams, Empty, GetBackend, GetBackendParams, GetBackendResult, HandshakeParams,
    Heartbeat, Kind, Method, ModifyErrorResponse, ModifyErrorResponseParams, ModifyRequest,
    ModifyRequestParams, ModifyRequestResult, ModifyResponse, ModifyResponseParams,
    ModifyResponseResult, PluginType, RemoveBackend, RemoveBackendParams, RemoveUpstream,
    RemoveUpstreamParams, RouteRequest, RouteRequestParams, RouteRequestResult, Start, Stop,
    UpstreamMetricHook, UpstreamMetricParams,
};
use gatekeeper_rpc::metrics::UpstreamMetric;
use gatekeeper_rpc::peer::lenient_result;
use gatekeeper_rpc::types::{Backend, HttpRequest, HttpResponse, Object, ProxyError, Upstream};
use gatekeeper_rpc::{CallError, Peer, PeerConfig, PROTOCOL_VERSION};
use serde_json::Value;
use tokio::io::DuplexStream;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

pub use builders::{
    make_error, make_request, make_response, RequestBuilder, ResponseBuilder, DEFAULT_LISTENER,
    DEFAULT_REMOTE_ADDR,
};
pub use proxy::ManagerAnswer;

use crate::env::PluginEnv;
use crate::error::ServeError;
use crate::{LoadBalancerPlugin, MetricPlugin, ModifierPlugin, RouterPlugin, UpstreamPlugin};

/// The token the test host gives the plugin (and expects back in the handshake).
pub const TOKEN: &str = "test-host-token";
/// How long each step (handshake, one call, the end of serving) may take by default.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);
/// The in-memory pipe's buffer.
const PIPE_BYTES: usize = 1 << 20;
/// The line limit on both sides (gatekeeper's default is larger; tests send small lines).
const MAX_LINE_BYTES: usize = 16 << 20;

/// What went wrong in a test host.
#[derive(Debug, thiserror::Error)]
pub enum TestHostError {
    /// Serving could not begin or ended with an error (wrong type, handshake failed, …).
    #[error("the plugin's serve call failed: {0}")]
    Serve(#[from] ServeError),
    /// The handshake is one gatekeeper refuses.
    #[error("gatekeeper refuses the handshake: {0}")]
    BadHandshake(String),
    /// A hook called that the plugin did not declare (gatekeeper never calls it).
    #[error("the plugin did not declare `{hook}` in its handshake (it declared: {declared}), so gatekeeper never calls it")]
    NotDeclared {
        /// The hook called.
        hook: String,
        /// The declared hooks, comma-separated.
        declared: String,
    },
    /// Params gatekeeper never sends.
    #[error("gatekeeper never sends these params to `{method}`: {reason}")]
    BadParams {
        /// The method called.
        method: String,
        /// What is wrong.
        reason: String,
    },
    /// The plugin answered with an error.
    #[error("the plugin answered `{method}` with an error: {message} (code {code})")]
    ErrorAnswer {
        /// The method called.
        method: String,
        /// The error's code.
        code: i32,
        /// The error's message.
        message: String,
    },
    /// A result gatekeeper refuses (it then counts the call as failed).
    #[error("the plugin answered `{method}` with a result gatekeeper refuses (it would count the call as failed): {reason}; the result: {result}")]
    BadResult {
        /// The method called.
        method: String,
        /// What does not parse.
        reason: String,
        /// The result as sent.
        result: String,
    },
    /// No answer in time, or the plugin went away.
    #[error("`{method}`: {reason}")]
    NoAnswer {
        /// The method called.
        method: String,
        /// Timeout, or connection closed.
        reason: String,
    },
}

impl TestHostError {
    /// The error code, for an error answer.
    pub fn code(&self) -> Option<i32> {
        match self {
            TestHostError::ErrorAnswer { code, .. } => Some(*code),
            _ => None,
        }
    }
}

/// Options of a test host; start one with [`builder`].
pub struct HostBuilder {
    config: Object,
    check: bool,
    timeout: Duration,
    name: String,
    manager: Option<Arc<ManagerAnswer>>,
}

/// A test host with options: `testing::builder().config(json!({...})).modifier(plugin).await`.
pub fn builder() -> HostBuilder {
    HostBuilder {
        config: Object::new(),
        check: false,
        timeout: DEFAULT_TIMEOUT,
        name: "test".to_owned(),
        manager: None,
    }
}

macro_rules! host_fns {
    ($($(#[$doc:meta])* $name:ident: $plugin_trait:ident => $run:ident as $plugin_type:expr;)+) => {
        impl HostBuilder {
            $(
                $(#[$doc])*
                pub async fn $name<P: $plugin_trait>(self, plugin: P) -> Result<TestHost, TestHostError> {
                    self.start($plugin_type, move |io, env| {
                        tokio::spawn(async move { crate::$run(plugin, io, &env).await })
                    })
                    .await
                }
            )+
        }

        $(
            $(#[$doc])*
            ///
            /// With the config map `config` (a JSON object; anything else is an empty map).
            pub async fn $name<P: $plugin_trait>(plugin: P, config: Value) -> Result<TestHost, TestHostError> {
                builder().config(config).$name(plugin).await
            }
        )+
    };
}

host_fns! {
    /// Serves a modifier plugin in a test host: handshake, `configure`, `start`.
    modifier: ModifierPlugin => run_modifier as PluginType::Modifier;
    /// Serves a router plugin in a test host: handshake, `configure`, `start`.
    router: RouterPlugin => run_router as PluginType::Router;
    /// Serves a loadbalancer plugin in a test host: handshake, `configure`, `start`.
    loadbalancer: LoadBalancerPlugin => run_loadbalancer as PluginType::Loadbalancer;
    /// Serves a metric plugin in a test host: handshake, `configure`, `start`.
    metric: MetricPlugin => run_metric as PluginType::Metric;
    /// Serves an upstream plugin in a test host: handshake, `configure`, `start` (its manager
    /// calls answered and recorded).
    upstream: UpstreamPlugin => run_upstream as PluginType::Upstream;
}

impl HostBuilder {
    /// The config map `configure` sends (a JSON object; anything else is an empty map).
    pub fn config(mut self, config: Value) -> Self {
        self.config = match config {
            Value::Object(map) => map,
            _ => Object::new(),
        };
        self
    }

    /// Runs the lifecycle of `gatekeeper check` instead: `configure` with `check: true`, no
    /// `start`.
    pub fn check(mut self) -> Self {
        self.check = true;
        self
    }

    /// How long each step may take (default [`DEFAULT_TIMEOUT`]).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// The plugin's name (default `test`).
    pub fn name(mut self, name: &str) -> Self {
        self.name = name.to_owned();
        self
    }

    /// Answers an upstream plugin's manager calls (default: accepts them all).
    pub fn manager(
        mut self,
        answer: impl Fn(&str, &Value) -> Result<Value, gatekeeper_rpc::ErrorObject>
            + Send
            + Sync
            + 'static,
    ) -> Self {
        self.manager = Some(Arc::new(answer));
        self
    }

    async fn start(
        self,
        plugin_type: PluginType,
        serve: impl FnOnce(DuplexStream, PluginEnv) -> JoinHandle<Result<(), ServeError>>,
    ) -> Result<TestHost, TestHostError> {
        let (proxy_io, plugin_io) = tokio::io::duplex(PIPE_BYTES);
        let (handshake_tx, handshake_rx) = oneshot::channel();
        let recorded = Arc::new(Mutex::new(proxy::Recorded::default()));
        let handler = proxy::FakeProxy {
            plugin_type,
            name: self.name.clone(),
            token: TOKEN.to_owned(),
            recorded: recorded.clone(),
            handshake: Mutex::new(Some(handshake_tx)),
            manager: self.manager,
        };
        let peer = Peer::spawn(
            proxy_io,
            Arc::new(handler),
            PeerConfig {
                max_line_bytes: MAX_LINE_BYTES,
                name: "test-host".to_owned(),
                ..PeerConfig::default()
            },
        );
        let env = PluginEnv {
            socket: "/nonexistent/test-host.sock".into(),
            token: TOKEN.to_owned(),
            name: self.name,
            plugin_type,
            protocol_version: PROTOCOL_VERSION,
            max_line_bytes: MAX_LINE_BYTES,
            busy_poll: None,
        };
        let mut host = TestHost {
            peer,
            serving: Some(serve(plugin_io, env)),
            declared: None,
            recorded,
            timeout: self.timeout,
        };
        if let Err(error) = host.begin(handshake_rx, self.config, self.check).await {
            let _ = host.end(false).await; // the error that ended it is `error`
            return Err(error);
        }
        Ok(host)
    }
}

/// A plugin served in memory; see the [module docs](self). Dropping it without
/// [`stop`](Self::stop) closes the connection and aborts the plugin's task.
pub struct TestHost {
    peer: Peer,
    serving: Option<JoinHandle<Result<(), ServeError>>>,
    declared: Option<HandshakeParams>,
    recorded: Arc<Mutex<proxy::Recorded>>,
    timeout: Duration,
}

impl TestHost {
    async fn begin(
        &mut self,
        handshake: oneshot::Receiver<Result<HandshakeParams, String>>,
        config: Object,
        check: bool,
    ) -> Result<(), TestHostError> {
        let waited = tokio::select! {
            outcome = handshake => outcome.ok(),
            () = tokio::time::sleep(self.timeout) => None,
            outcome = serving_ended(&mut self.serving) => {
                outcome?;
                None
            }
        };
        match waited {
            Some(Ok(params)) => self.declared = Some(params),
            Some(Err(problem)) => return Err(TestHostError::BadHandshake(problem)),
            None => {
                return Err(TestHostError::NoAnswer {
                    method: "handshake".to_owned(),
                    reason: format!("no handshake from the plugin within {:?}", self.timeout),
                })
            }
        }
        self.call::<Configure>(&ConfigureParams { config, check })
            .await?;
        if !check {
            self.call::<Start>(&Empty {}).await?;
        }
        Ok(())
    }

    /// The plugin's handshake params (hooks, bodies, no_retry, parts).
    pub fn declared(&self) -> Option<&HandshakeParams> {
        self.declared.as_ref()
    }

    /// Every manager call of the plugin so far, in order, as `{"method": …, "params": …}`.
    pub fn manager_calls(&self) -> Vec<Value> {
        self.recorded
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .manager_calls
            .clone()
    }

    /// Every `config_status` report so far: the error, or `None` when cleared.
    pub fn config_status(&self) -> Vec<Option<String>> {
        self.recorded
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .config_status
            .clone()
    }

    /// Calls method `M` with `params` as gatekeeper would: refused unless declared (for a
    /// hook), params checked against the protocol table, the result checked as gatekeeper
    /// checks it ([`TestHostError::BadResult`]).
    pub async fn call<M: Method>(&self, params: &M::Params) -> Result<M::Result, TestHostError> {
        let raw = self
            .call_raw(
                M::NAME,
                &serde_json::to_value(params).map_err(|e| TestHostError::BadParams {
                    method: M::NAME.to_owned(),
                    reason: e.to_string(),
                })?,
            )
            .await?;
        serde_json::from_str(lenient_result(&raw)).map_err(|e| TestHostError::BadResult {
            method: M::NAME.to_owned(),
            reason: e.to_string(),
            result: raw.get().to_owned(),
        })
    }

    /// [`call`](Self::call) by name, with JSON params and result.
    pub async fn call_json(&self, method: &str, params: &Value) -> Result<Value, TestHostError> {
        let raw = self.call_raw(method, params).await?;
        serde_json::from_str(lenient_result(&raw)).map_err(|e| TestHostError::BadResult {
            method: method.to_owned(),
            reason: e.to_string(),
            result: raw.get().to_owned(),
        })
    }

    async fn call_raw(
        &self,
        method: &str,
        params: &Value,
    ) -> Result<Box<serde_json::value::RawValue>, TestHostError> {
        let bad = |reason: String| TestHostError::BadParams {
            method: method.to_owned(),
            reason,
        };
        let info = method_info(method)
            .filter(|info| {
                info.kind == Kind::Lifecycle
                    || info.kind == Kind::Hook
                    || !info.declared_by.is_empty()
            })
            .ok_or_else(|| bad("not a method gatekeeper calls on a plugin".to_owned()))?;
        if info.kind != Kind::Lifecycle {
            let declared = self
                .declared
                .as_ref()
                .map(|d| d.hooks.clone())
                .unwrap_or_default();
            if !declared.iter().any(|h| h == method) {
                return Err(TestHostError::NotDeclared {
                    hook: method.to_owned(),
                    declared: if declared.is_empty() {
                        "nothing".to_owned()
                    } else {
                        declared.join(", ")
                    },
                });
            }
        }
        (info.check_params)(&params.to_string()).map_err(|e| bad(e.to_string()))?;
        let raw = self
            .peer
            .call_raw(method, params, self.timeout)
            .await
            .map_err(|error| match error {
                CallError::Remote { error, .. } => TestHostError::ErrorAnswer {
                    method: method.to_owned(),
                    code: error.code(),
                    message: error.message().to_owned(),
                },
                other => TestHostError::NoAnswer {
                    method: method.to_owned(),
                    reason: other.to_string(),
                },
            })?;
        (info.check_result)(lenient_result(&raw)).map_err(|e| TestHostError::BadResult {
            method: method.to_owned(),
            reason: e.to_string(),
            result: raw.get().to_owned(),
        })?;
        Ok(raw)
    }

    /// `modify_request`.
    pub async fn modify_request(
        &self,
        request: HttpRequest,
    ) -> Result<ModifyRequestResult, TestHostError> {
        self.call::<ModifyRequest>(&ModifyRequestParams { request })
            .await
    }

    /// `modify_response`.
    pub async fn modify_response(
        &self,
        request: HttpRequest,
        response: HttpResponse,
    ) -> Result<ModifyResponseResult, TestHostError> {
        self.call::<ModifyResponse>(&ModifyResponseParams { request, response })
            .await
    }

    /// `modify_error_response` (`error`: see [`make_error`]).
    pub async fn modify_error_response(
        &self,
        request: HttpRequest,
        response: HttpResponse,
        error: ProxyError,
    ) -> Result<ModifyResponseResult, TestHostError> {
        self.call::<ModifyErrorResponse>(&ModifyErrorResponseParams {
            request,
            response,
            error,
        })
        .await
    }

    /// `route_request`.
    pub async fn route_request(
        &self,
        request: HttpRequest,
    ) -> Result<RouteRequestResult, TestHostError> {
        self.call::<RouteRequest>(&RouteRequestParams { request })
            .await
    }

    /// `add_upstream` (to a router).
    pub async fn add_upstream(&self, upstream: Upstream) -> Result<(), TestHostError> {
        self.call::<AddUpstream>(&AddUpstreamParams { upstream })
            .await
            .map(drop)
    }

    /// `remove_upstream` (to a router).
    pub async fn remove_upstream(&self, id: &str) -> Result<(), TestHostError> {
        self.call::<RemoveUpstream>(&RemoveUpstreamParams { id: id.to_owned() })
            .await
            .map(drop)
    }

    /// `add_backend` (to a loadbalancer).
    pub async fn add_backend(
        &self,
        upstream_id: &str,
        backend: Backend,
    ) -> Result<(), TestHostError> {
        self.call::<AddBackend>(&AddBackendParams {
            upstream_id: upstream_id.to_owned(),
            backend,
        })
        .await
        .map(drop)
    }

    /// `remove_backend` (to a loadbalancer).
    pub async fn remove_backend(
        &self,
        upstream_id: &str,
        backend_id: &str,
    ) -> Result<(), TestHostError> {
        self.call::<RemoveBackend>(&RemoveBackendParams {
            upstream_id: upstream_id.to_owned(),
            backend_id: backend_id.to_owned(),
        })
        .await
        .map(drop)
    }

    /// `get_backend`.
    pub async fn get_backend(
        &self,
        upstream_id: &str,
        request: HttpRequest,
    ) -> Result<GetBackendResult, TestHostError> {
        self.call::<GetBackend>(&GetBackendParams {
            upstream_id: upstream_id.to_owned(),
            request,
        })
        .await
    }

    /// `upstream_metric` with a batch (other metric hooks: [`call`](Self::call)).
    pub async fn upstream_metric(&self, metrics: Vec<UpstreamMetric>) -> Result<(), TestHostError> {
        self.call::<UpstreamMetricHook>(&UpstreamMetricParams { metrics })
            .await
            .map(drop)
    }

    /// `heartbeat`.
    pub async fn heartbeat(&self) -> Result<(), TestHostError> {
        self.call::<Heartbeat>(&Empty {}).await.map(drop)
    }

    /// Sends `stop` and waits for the plugin's serve call to end; its error, if any.
    pub async fn stop(mut self) -> Result<(), TestHostError> {
        let stopped = self.call::<Stop>(&Empty {}).await;
        let served = self.end(stopped.is_ok()).await;
        stopped?;
        served
    }

    /// Waits for serving to end (after `stop` was answered: on its own; else once the proxy's
    /// side is closed), then closes.
    async fn end(&mut self, stopped: bool) -> Result<(), TestHostError> {
        if !stopped {
            self.peer.close();
        }
        let Some(mut serving) = self.serving.take() else {
            return Ok(());
        };
        let outcome = match tokio::time::timeout(self.timeout, &mut serving).await {
            Ok(Ok(result)) => result.map_err(TestHostError::from),
            Ok(Err(join)) => Err(TestHostError::NoAnswer {
                method: "stop".to_owned(),
                reason: format!("the plugin's task failed: {join}"),
            }),
            Err(_) => {
                serving.abort();
                Err(TestHostError::NoAnswer {
                    method: "stop".to_owned(),
                    reason: format!("the plugin did not stop within {:?}", self.timeout),
                })
            }
        };
        self.peer.close();
        outcome
    }
}

impl Drop for TestHost {
    fn drop(&mut self) {
        self.peer.close();
        if let Some(serving) = self.serving.take() {
            serving.abort();
        }
    }
}

/// Resolves when the plugin's serve task ended (with its error, if any); never, once taken.
async fn serving_ended(
    serving: &mut Option<JoinHandle<Result<(), ServeError>>>,
) -> Result<(), TestHostError> {
    let Some(task) = serving.as_mut() else {
        return std::future::pending().await;
    };
    let outcome = task.await;
    *serving = None;
    match outcome {
        Ok(result) => {
            result?;
            Err(TestHostError::BadHandshake(
                "the plugin stopped serving before its handshake".to_owned(),
            ))
        }
        Err(join) => Err(TestHostError::NoAnswer {
            method: "handshake".to_owned(),
            reason: format!("the plugin's task failed: {join}"),
        }),
    }
}

#[cfg(test)]
mod tests;
