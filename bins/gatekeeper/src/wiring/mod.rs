//! Glue between the plugin host and the proxy, which do not know each other: plugins seen through
//! the proxy's plugin port ([`Plugin`](gatekeeper_proxy::Plugin), for modifiers, router and
//! loadbalancer plugins) and as [`MetricsExporter`](gatekeeper_proxy::MetricsExporter)s, the registry served to upstream
//! plugins as the host's [`Manager`](gatekeeper_plugin_host::Manager), registry changes and plugin
//! events turned into calls and metrics.

pub mod access_log;
pub mod feeds;
pub mod hooks;
pub mod manager;
pub mod metrics;

use std::time::Instant;

use gatekeeper_plugin_host::{PluginCallError, PluginHandle};
use gatekeeper_proxy::{HookError, MetricKind, Metrics, Parsed, RawCall};
use gatekeeper_rpc::metrics::{now_ms, PluginMetric};
use gatekeeper_rpc::CallError;

/// A plugin handle that records a `plugin_metric` for every call (when metric plugins want them).
#[derive(Clone)]
pub struct MeteredPlugin {
    handle: PluginHandle,
    metrics: Metrics,
}

impl MeteredPlugin {
    /// Wraps `handle`; calls are recorded in `metrics`.
    pub fn new(handle: PluginHandle, metrics: Metrics) -> Self {
        MeteredPlugin { handle, metrics }
    }

    /// The plugin's handle.
    pub fn handle(&self) -> &PluginHandle {
        &self.handle
    }

    /// Makes a call of the proxy's plugin port with the plugin's hook timeout, recording its
    /// latency and outcome: a result that does not parse fails the call as a bad result
    /// ([`HookError::BadResult`]; see [`PluginHandle::call_parsed`]).
    pub async fn call_raw(&self, call: RawCall) -> Result<Parsed, HookError> {
        let parse = |json: &str| call.parse(json);
        let calling = self
            .handle
            .call_parsed(call.method(), call.params_json(), parse);
        if !self.metrics.wants(MetricKind::Plugin) {
            return calling.await.map_err(hook_error);
        }
        let started = Instant::now();
        let outcome = calling.await;
        self.metrics.record_plugin(PluginMetric {
            time_ms: now_ms(),
            plugin: self.handle.name().to_owned(),
            method: call.method().to_owned(),
            latency_us: u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX),
            error: outcome.as_ref().err().map(ToString::to_string),
        });
        outcome.map_err(hook_error)
    }
}

/// The one mapping of the plugin host's call errors onto the proxy's [`HookError`].
pub fn hook_error(error: PluginCallError) -> HookError {
    match error {
        PluginCallError::Timeout { timeout, .. }
        | PluginCallError::Failed {
            source: CallError::Timeout { timeout, .. },
            ..
        } => HookError::Timeout { after: timeout },
        PluginCallError::Failed {
            source: CallError::Remote { error, .. },
            ..
        } => HookError::ErrorAnswer {
            code: error.code(),
            message: error.message().to_owned(),
        },
        PluginCallError::Failed {
            source: source @ CallError::InvalidResult { .. },
            ..
        } => HookError::BadResult {
            what: source.to_string(),
        },
        PluginCallError::Unavailable { .. } => HookError::Unavailable {
            reason: "the plugin is down or restarting".into(),
        },
        PluginCallError::NotDeclared { hook, .. } => HookError::Unavailable {
            reason: format!("the plugin did not declare `{hook}`"),
        },
        PluginCallError::Failed { source, .. } => HookError::Unavailable {
            reason: source.to_string(),
        },
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::sync::Arc;
    use std::time::Duration;

    use super::*;

    fn failed(source: CallError) -> PluginCallError {
        PluginCallError::Failed {
            plugin: Arc::from("p"),
            source,
        }
    }

    #[test]
    fn a_result_of_the_wrong_shape_is_a_bad_result() {
        let source = serde_json::from_str::<u16>(r#""200""#).unwrap_err();
        let error = hook_error(failed(CallError::InvalidResult {
            method: "modify_request".into(),
            source,
        }));
        assert!(
            matches!(&error, HookError::BadResult { what } if what.contains("wrong type")),
            "{error:?}"
        );
        assert_eq!(error.kind(), "bad_result");
    }

    #[test]
    fn timeouts_closed_connections_and_unavailability_map_to_their_kinds() {
        let timeout = Duration::from_millis(250);
        let error = hook_error(PluginCallError::Timeout {
            plugin: Arc::from("p"),
            hook: "modify_request",
            timeout,
        });
        assert!(matches!(error, HookError::Timeout { after } if after == timeout));
        let error = hook_error(failed(CallError::Closed {
            method: "modify_request".into(),
        }));
        assert!(matches!(error, HookError::Unavailable { .. }), "{error:?}");
        let error = hook_error(PluginCallError::Unavailable {
            plugin: Arc::from("p"),
        });
        assert!(matches!(error, HookError::Unavailable { .. }), "{error:?}");
    }
}
