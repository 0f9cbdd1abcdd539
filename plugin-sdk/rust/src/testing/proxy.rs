//! The proxy's side of the test host: answers the plugin's handshake (checking its token and
//! protocol version as gatekeeper does), its manager calls (checked against the protocol
//! table's params types, answered and recorded) and its `config_status` reports (recorded).

use std::sync::{Arc, Mutex, PoisonError};

use futures::future::BoxFuture;
use gatekeeper_rpc::error::error_object;
use gatekeeper_rpc::methods::{
    method_info, ApplyBatch, ApplyBatchResult, BatchChange, ConfigStatus, Handshake,
    HandshakeParams, HandshakeResult, Kind, Method, PluginType,
};
use gatekeeper_rpc::{codes, ErrorObject, Handler, IncomingRequest, Reply, PROTOCOL_VERSION};
use serde_json::value::RawValue;
use serde_json::Value;
use tokio::sync::oneshot;

/// Answers an upstream plugin's manager call (`add_upstream`, `apply_batch`, …): `Ok(result)`
/// or an error object to refuse it with. Given the method and its params.
pub type ManagerAnswer = dyn Fn(&str, &Value) -> Result<Value, ErrorObject> + Send + Sync;

/// What the plugin sent the proxy, shared between the handler and the host.
#[derive(Default)]
pub(crate) struct Recorded {
    /// Every manager call, in order, as `{"method": …, "params": …}`.
    pub(crate) manager_calls: Vec<Value>,
    /// Every `config_status` report: the error, or `None` when cleared.
    pub(crate) config_status: Vec<Option<String>>,
}

/// The handler on the proxy's end of the connection.
pub(crate) struct FakeProxy {
    pub(crate) plugin_type: PluginType,
    pub(crate) name: String,
    pub(crate) token: String,
    pub(crate) recorded: Arc<Mutex<Recorded>>,
    pub(crate) handshake: Mutex<Option<oneshot::Sender<Result<HandshakeParams, String>>>>,
    pub(crate) manager: Option<Arc<ManagerAnswer>>,
}

impl FakeProxy {
    fn record(&self, change: impl FnOnce(&mut Recorded)) {
        change(&mut self.recorded.lock().unwrap_or_else(PoisonError::into_inner));
    }

    fn handshake_done(&self, outcome: Result<HandshakeParams, String>) {
        let sender = self
            .handshake
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(sender) = sender {
            let _ = sender.send(outcome);
        }
    }

    fn answer(&self, request: &IncomingRequest) -> Result<Value, ErrorObject> {
        let raw = request.params.as_deref().map_or("{}", RawValue::get);
        if request.method == Handshake::NAME {
            return self.accept_handshake(request);
        }
        let info = method_info(&request.method)
            .filter(|info| !info.called_by.is_empty() || info.kind == Kind::Status)
            .ok_or_else(|| {
                error_object(
                    codes::METHOD_NOT_FOUND,
                    format!("method not found: {}", request.method),
                )
            })?;
        (info.check_params)(raw).map_err(|e| {
            error_object(
                codes::INVALID_PARAMS,
                format!("invalid params for `{}`: {e}", request.method),
            )
        })?;
        let params: Value = request.parse_params()?;
        if request.method == ConfigStatus::NAME {
            let error = params
                .get("error")
                .and_then(Value::as_str)
                .map(str::to_owned);
            self.record(|r| r.config_status.push(error));
            return Ok(Value::Object(Default::default()));
        }
        if !info.called_by.contains(&self.plugin_type) {
            return Err(error_object(
                codes::METHOD_NOT_FOUND,
                format!(
                    "`{}` is not for {} plugins",
                    request.method, self.plugin_type
                ),
            ));
        }
        self.record(|r| {
            r.manager_calls
                .push(serde_json::json!({"method": request.method, "params": params}))
        });
        if let Some(manager) = &self.manager {
            return manager(&request.method, &params);
        }
        if request.method == ApplyBatch::NAME {
            return Ok(batch_counts(&params));
        }
        Ok(Value::Object(Default::default()))
    }

    fn accept_handshake(&self, request: &IncomingRequest) -> Result<Value, ErrorObject> {
        let params: HandshakeParams = match request.parse_params() {
            Ok(params) => params,
            Err(error) => {
                self.handshake_done(Err(error.message().to_owned()));
                return Err(error);
            }
        };
        let problem = if params.token != self.token {
            Some("the handshake's token is not the one gatekeeper gave".to_owned())
        } else if params.protocol_version != PROTOCOL_VERSION {
            Some(format!(
                "the handshake asks for protocol version {}, gatekeeper speaks {PROTOCOL_VERSION}",
                params.protocol_version
            ))
        } else {
            None
        };
        if let Some(problem) = problem {
            self.handshake_done(Err(problem.clone()));
            return Err(error_object(codes::UNAUTHORIZED, problem));
        }
        self.handshake_done(Ok(params));
        serde_json::to_value(HandshakeResult {
            protocol_version: PROTOCOL_VERSION,
            name: self.name.clone(),
            plugin_type: self.plugin_type,
        })
        .map_err(|e| error_object(codes::INTERNAL_ERROR, e.to_string()))
    }
}

impl Handler for FakeProxy {
    fn handle_request(&self, request: IncomingRequest) -> BoxFuture<'static, Reply> {
        let reply = self.answer(&request).and_then(|value| {
            serde_json::value::to_raw_value(&value)
                .map_err(|e| error_object(codes::INTERNAL_ERROR, e.to_string()))
        });
        Box::pin(async move { reply })
    }
}

/// An accepting answer to `apply_batch`: every change counted as applied.
fn batch_counts(params: &Value) -> Value {
    let mut counts = ApplyBatchResult::default();
    let changes = params.get("changes").and_then(Value::as_array);
    for change in changes.into_iter().flatten() {
        match serde_json::from_value::<BatchChange>(change.clone()) {
            Ok(BatchChange::AddUpstream(_)) => counts.upstreams_added += 1,
            Ok(BatchChange::RemoveUpstream(_)) => counts.upstreams_removed += 1,
            Ok(BatchChange::AddBackend(_)) => counts.backends_added += 1,
            Ok(BatchChange::RemoveBackend(_)) => counts.backends_removed += 1,
            Err(_) => {}
        }
    }
    serde_json::to_value(counts).unwrap_or_default()
}
