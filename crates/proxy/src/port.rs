//! The plugin port: how the request path sees a plugin, whatever its type (modifier, router,
//! loadbalancer). One object-safe trait, [`Plugin`], with one way to call any method
//! ([`Plugin::call_raw`]: method name and serialised params in, parsed result out, as a boxed
//! future), and a typed [`call`](trait.Plugin.html#method.call) on top that serialises the
//! params once and reads the result once into the method's result type. The gatekeeper binary
//! implements [`Plugin`] once, on top of the plugin host; tests implement it with in-process
//! fakes ([`RawCall::params`], [`RawCall::answer`]).
//!
//! A failed call is a [`HookError`] (timed out, plugin unavailable, error answer, bad result);
//! what the proxy then does is the plugin's [`FailurePolicy`], applied in one place for every
//! hook kind ([`policy`]):
//!
//! | situation | [`FailurePolicy::Open`] | [`FailurePolicy::Closed`] |
//! |---|---|---|
//! | plugin available, hook succeeds | its decision | its decision |
//! | hook fails (error, timeout, invalid answer) | skip the modifier / built-in router or balancer | answer `status` (`plugin_failed`) |
//! | plugin not available (down, restarting) | skip the modifier / built-in router or balancer | answer `status` (`plugin_failed`) |
//!
//! A router decision of "no upstream" is a 404 (`no_route`); a loadbalancer decision of "no
//! backend" is a 503 (`no_backend`). A loadbalancer naming a backend the upstream does not have
//! is a hook failure.
//!
//! Keeping router and loadbalancer plugins in step with the registry (`add_upstream`,
//! `add_backend`, … and the replay after a restart) is the binary's job: see
//! [`Registry::subscribe`](crate::Registry::subscribe) and
//! [`Snapshot::replay`](crate::Snapshot::replay).

pub mod policy;

use std::any::Any;
use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use gatekeeper_rpc::methods::Method;
use gatekeeper_rpc::parts::RequestPart;
use serde_json::value::RawValue;

use crate::decision_cache::DecisionCache;

/// What the proxy does when a plugin's hook fails (error, timeout, plugin down).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailurePolicy {
    /// Log a warning (rate-limited, see [`policy`]) and continue as if the plugin were not
    /// there: a modifier leaves the request or response alone, a router or loadbalancer plugin
    /// gives way to the built-in one.
    Open,
    /// Answer the client with `status` (plain-text body naming the plugin).
    Closed {
        /// The status code of the answer.
        status: u16,
    },
}

impl Default for FailurePolicy {
    /// Fail closed with 503.
    fn default() -> Self {
        FailurePolicy::Closed { status: 503 }
    }
}

/// Why a hook call failed. Metrics, logs and the failure policy match on the variant.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HookError {
    /// The plugin did not answer within its hook timeout.
    #[error("timed out after {after:?}")]
    Timeout {
        /// The timeout that elapsed.
        after: Duration,
    },
    /// The plugin could not be called: down, restarting, the hook not declared, or the
    /// connection closed before the answer.
    #[error("not available: {reason}")]
    Unavailable {
        /// Why, for the log.
        reason: String,
    },
    /// The plugin answered with a JSON-RPC error.
    #[error("answered with error {code}: {message}")]
    ErrorAnswer {
        /// The JSON-RPC error code.
        code: i32,
        /// The error message.
        message: String,
    },
    /// The plugin answered with a result that is not what the method returns, or names
    /// something that does not exist (e.g. an unknown backend).
    #[error("bad result: {what}")]
    BadResult {
        /// What was wrong.
        what: String,
    },
}

impl HookError {
    /// A short name of the variant, for metrics and logs.
    pub fn kind(&self) -> &'static str {
        match self {
            HookError::Timeout { .. } => "timeout",
            HookError::Unavailable { .. } => "unavailable",
            HookError::ErrorAnswer { .. } => "error_answer",
            HookError::BadResult { .. } => "bad_result",
        }
    }
}

/// A result read by a [`RawCall`]'s parser: the method's result type, boxed.
pub type Parsed = Box<dyn Any + Send>;

/// One call of a plugin method, type-erased: the method's name, its params as JSON, and the
/// parser of its result (which [`Plugin::call_raw`] implementations run on the result's JSON
/// text, so that the plugin side can treat a result that does not parse as a protocol
/// violation of the connection it came on).
#[derive(Debug)]
pub struct RawCall {
    method: &'static str,
    params: Box<RawValue>,
    parse: fn(&str) -> Result<Parsed, serde_json::Error>,
}

/// Reads `M`'s result from JSON text.
fn parse_result<M: Method>(json: &str) -> Result<Parsed, serde_json::Error>
where
    M::Result: 'static,
{
    Ok(Box::new(serde_json::from_str::<M::Result>(json)?))
}

impl RawCall {
    /// A call of `M` with these params (serialised once, here).
    pub fn new<M: Method>(params: &M::Params) -> Result<Self, HookError>
    where
        M::Result: 'static,
    {
        Self::with_params::<M>(params)
    }

    /// A call of `M` whose params are written by `params`, another shape of `M`'s params (e.g.
    /// a request with only the parts a plugin declared).
    pub fn with_params<M: Method>(
        params: &(impl serde::Serialize + ?Sized),
    ) -> Result<Self, HookError>
    where
        M::Result: 'static,
    {
        let params =
            serde_json::value::to_raw_value(params).map_err(|e| HookError::Unavailable {
                reason: format!("cannot encode the params of `{}`: {e}", M::NAME),
            })?;
        Ok(RawCall {
            method: M::NAME,
            params,
            parse: parse_result::<M>,
        })
    }

    /// The method's name on the wire.
    pub fn method(&self) -> &'static str {
        self.method
    }

    /// The params, as JSON.
    pub fn params_json(&self) -> &RawValue {
        &self.params
    }

    /// Reads the result from its JSON text (an error means a result of the wrong type).
    pub fn parse(&self, json: &str) -> Result<Parsed, serde_json::Error> {
        (self.parse)(json)
    }

    /// Whether this is a call of `M`.
    pub fn is<M: Method>(&self) -> bool {
        self.method == M::NAME
    }

    /// The params as `M`'s params type (for in-process implementations such as test fakes).
    pub fn params<M: Method>(&self) -> Result<M::Params, HookError> {
        serde_json::from_str(self.params.get()).map_err(|e| HookError::BadResult {
            what: format!("params of `{}` do not fit `{}`: {e}", self.method, M::NAME),
        })
    }

    /// Answers with `result` as an in-process plugin (serialised and read back like a real
    /// answer, so a mismatch is a [`HookError::BadResult`]).
    pub fn answer<M: Method>(&self, result: &M::Result) -> Result<Parsed, HookError> {
        let json = serde_json::to_string(result).map_err(|e| HookError::BadResult {
            what: e.to_string(),
        })?;
        self.parse(&json).map_err(|e| HookError::BadResult {
            what: format!("`{}` returned a result of the wrong type: {e}", self.method),
        })
    }
}

/// A plugin as the request path sees it: a modifier, a router or a loadbalancer plugin.
pub trait Plugin: Send + Sync + 'static {
    /// The plugin's configured name (logs, error bodies, metrics).
    fn name(&self) -> &str;
    /// Whether the plugin declared this hook (e.g. `modify_request`); a modifier's undeclared
    /// hooks are never called, and a router or loadbalancer plugin without its hook counts as
    /// unavailable.
    fn has_hook(&self, hook: &str) -> bool;
    /// Whether the plugin declared that this (declared) hook wants the body. Default: no.
    fn wants_body(&self, _hook: &str) -> bool {
        false
    }
    /// The request parts the plugin declared this hook needs (`parts` in the handshake; only
    /// `modify_request` takes them): it is then sent only those, and must answer with a patch,
    /// a response or `{}`. Default: none declared (the whole request is sent).
    fn request_parts(&self, _hook: &str) -> Option<Arc<[RequestPart]>> {
        None
    }
    /// Whether a call can be answered now or soon (false while the plugin is down with nothing
    /// coming, e.g. in a restart backoff: the failure policy then applies without a call; a
    /// plugin being restarted is available, its calls wait for it). Default: yes.
    fn is_available(&self) -> bool {
        true
    }
    /// What to do when a hook fails or the plugin is not available.
    fn failure_policy(&self) -> FailurePolicy;
    /// The plugin's cache of `modify_request` decisions ([`crate::decision_cache`]), if its
    /// results' `cache` instructions are honoured. Default: none (every request calls).
    fn decision_cache(&self) -> Option<&DecisionCache> {
        None
    }
    /// Calls a method: `call.method()` with `call.params_json()`, the result read with
    /// [`RawCall::parse`] (a result that does not parse is a [`HookError::BadResult`]).
    fn call_raw(&self, call: RawCall) -> BoxFuture<'static, Result<Parsed, HookError>>;
}

impl dyn Plugin {
    /// Calls `M` with `params`: serialised once, the result read once into `M::Result`.
    pub async fn call<M: Method>(&self, params: &M::Params) -> Result<M::Result, HookError>
    where
        M::Result: 'static,
    {
        self.call_with::<M>(params).await
    }

    /// Calls `M` with params of another shape than `M::Params` (see [`RawCall::with_params`]).
    pub async fn call_with<M: Method>(
        &self,
        params: &(impl serde::Serialize + ?Sized),
    ) -> Result<M::Result, HookError>
    where
        M::Result: 'static,
    {
        let parsed = self.call_raw(RawCall::with_params::<M>(params)?).await?;
        parsed
            .downcast::<M::Result>()
            .map(|result| *result)
            .map_err(|_| HookError::BadResult {
                what: format!("`{}` was answered with another method's result", M::NAME),
            })
    }
}
