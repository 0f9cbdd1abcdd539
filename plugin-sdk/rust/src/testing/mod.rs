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
mod error;
mod host_builder;
mod proxy;

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use gatekeeper_rpc::methods::{
    method_info, AddBackend, AddBackendParams, AddUpstream, AddUpstreamParams, Configure,
    ConfigureParams, Empty, GetBackend, GetBackendParams, GetBackendResult, HandshakeParams,
    Heartbeat, Kind, Method, ModifyErrorResponse, ModifyErrorResponseParams, ModifyRequest,
    ModifyRequestParams, ModifyRequestResult, ModifyResponse, ModifyResponseParams,
    ModifyResponseResult, RemoveBackend, RemoveBackendParams, RemoveUpstream, RemoveUpstreamParams,
    RouteRequest, RouteRequestParams, RouteRequestResult, Start, Stop, UpstreamMetricHook,
    UpstreamMetricParams,
};
use gatekeeper_rpc::metrics::UpstreamMetric;
use gatekeeper_rpc::peer::lenient_result;
use gatekeeper_rpc::types::{Backend, HttpRequest, HttpResponse, Object, ProxyError, Upstream};
use gatekeeper_rpc::{CallError, Peer};
use serde_json::Value;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

pub use builders::{
    make_error, make_request, make_response, RequestBuilder, ResponseBuilder, DEFAULT_LISTENER,
    DEFAULT_REMOTE_ADDR,
};
pub use error::TestHostError;
pub use host_builder::{builder, loadbalancer, metric, modifier, router, upstream, HostBuilder};
pub use proxy::ManagerAnswer;

use crate::error::ServeError;

/// The token the test host gives the plugin (and expects back in the handshake).
pub const TOKEN: &str = "test-host-token";
/// How long each step (handshake, one call, the end of serving) may take by default.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);
/// The in-memory pipe's buffer.
const PIPE_BYTES: usize = 1 << 20;
/// The line limit on both sides (gatekeeper's default is larger; tests send small lines).
const MAX_LINE_BYTES: usize = 16 << 20;

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
    /// A host for the plugin being served by `serving`, with the proxy's side `peer`.
    fn new(
        peer: Peer,
        serving: JoinHandle<Result<(), ServeError>>,
        recorded: Arc<Mutex<proxy::Recorded>>,
        timeout: Duration,
    ) -> TestHost {
        TestHost {
            peer,
            serving: Some(serving),
            declared: None,
            recorded,
            timeout,
        }
    }

    pub(super) async fn begin(
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
    pub(super) async fn end(&mut self, stopped: bool) -> Result<(), TestHostError> {
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
