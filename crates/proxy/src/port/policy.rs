//! The one place where a plugin's [`FailurePolicy`] is applied, for every hook kind: a
//! `HookedPlugin` is a [`Plugin`] in a hooks snapshot, with its rate-limited failure warnings
//! ([`gatekeeper_rpc::warnings`]). `HookedPlugin::call` calls a hook (or fails at once with
//! [`HookError::Unavailable`] while the plugin is not available) and turns a failure into the
//! policy's decision: fail-open (`Ok(None)`: skip the modifier, use the built-in router or
//! balancer) or fail-closed (`Err(HookFailure)`: answer with the status, error kind
//! `plugin_failed`).

use std::sync::Arc;
use std::time::Instant;

use gatekeeper_rpc::methods::{GetBackend, Method, RouteRequest};
use gatekeeper_rpc::types::{HttpResponse, ProxyError};

use super::{FailurePolicy, HookError, Plugin};
use crate::view::text_response;
use gatekeeper_rpc::warnings::RateLimitedWarning;

/// A fail-closed hook failure: the request must be answered with `status`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HookFailure {
    /// Name of the plugin that failed.
    pub plugin: String,
    /// The status to answer with (the plugin's fail-closed status).
    pub status: u16,
    /// The hook error.
    pub error: HookError,
}

impl HookFailure {
    /// The error passed to `modify_error_response`.
    pub fn proxy_error(&self) -> ProxyError {
        ProxyError {
            kind: "plugin_failed".into(),
            message: format!("plugin `{}` failed: {}", self.plugin, self.error),
        }
    }

    /// The plain-text response sent to the client.
    pub fn response(&self) -> HttpResponse {
        text_response(self.status, &format!("plugin `{}` failed", self.plugin))
    }
}

/// A plugin in a hooks snapshot.
pub(crate) struct HookedPlugin {
    plugin: Arc<dyn Plugin>,
    warnings: RateLimitedWarning,
}

impl HookedPlugin {
    pub(crate) fn new(plugin: Arc<dyn Plugin>) -> Self {
        HookedPlugin {
            plugin,
            warnings: RateLimitedWarning::default(),
        }
    }

    /// The plugin.
    pub(crate) fn plugin(&self) -> &dyn Plugin {
        &*self.plugin
    }

    pub(crate) fn name(&self) -> &str {
        self.plugin.name()
    }

    /// Calls the hook `M`: `Ok(Some(result))` when the plugin answered, `Ok(None)` when it
    /// failed open, `Err` when it failed closed. A plugin that is not available, or that did
    /// not declare `M`, fails without a call.
    pub(crate) async fn call<M: Method>(
        &self,
        params: &M::Params,
    ) -> Result<Option<M::Result>, HookFailure>
    where
        M::Result: 'static,
    {
        self.call_with::<M>(params).await
    }

    /// [`HookedPlugin::call`] with params of another shape than `M::Params` (a request with
    /// only the declared parts).
    pub(crate) async fn call_with<M: Method>(
        &self,
        params: &(impl serde::Serialize + Sync + ?Sized),
    ) -> Result<Option<M::Result>, HookFailure>
    where
        M::Result: 'static,
    {
        let outcome = if !self.plugin.is_available() {
            Err(HookError::Unavailable {
                reason: "the plugin is down or restarting".into(),
            })
        } else if !self.plugin.has_hook(M::NAME) {
            Err(HookError::Unavailable {
                reason: format!("the plugin did not declare `{}`", M::NAME),
            })
        } else {
            self.plugin.call_with::<M>(params).await
        };
        match outcome {
            Ok(result) => Ok(Some(result)),
            Err(error) => self.failed(M::NAME, error).map(|()| None),
        }
    }

    /// Applies the failure policy to a failed `hook`: `Ok` to go on without the plugin (logged
    /// as a warning, at most one per plugin per interval with the count of requests affected),
    /// `Err` to answer with the fail-closed status.
    pub(crate) fn failed(&self, hook: &'static str, error: HookError) -> Result<(), HookFailure> {
        let plugin = self.plugin.name();
        let policy = self.plugin.failure_policy();
        if let Some(requests) = self.warnings.affected(Instant::now()) {
            let kind = error.kind();
            match policy {
                FailurePolicy::Open if hook == RouteRequest::NAME || hook == GetBackend::NAME => {
                    tracing::warn!(%plugin, hook, kind, %error, requests, "hook failed (fail-open: built-in used)");
                }
                FailurePolicy::Open => {
                    tracing::warn!(%plugin, hook, kind, %error, requests, "hook failed (fail-open: skipped)");
                }
                FailurePolicy::Closed { status } => {
                    tracing::warn!(%plugin, hook, kind, %error, status, requests, "hook failed (fail-closed)");
                }
            }
        }
        match policy {
            FailurePolicy::Open => Ok(()),
            FailurePolicy::Closed { status } => Err(HookFailure {
                plugin: plugin.to_string(),
                status,
                error,
            }),
        }
    }
}
