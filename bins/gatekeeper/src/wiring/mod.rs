//! Glue between the plugin host and the proxy, which do not know each other: plugins seen as the
//! proxy's hooks ([`Modifier`](gatekeeper_proxy::Modifier), [`RouterHook`](gatekeeper_proxy::RouterHook),
//! [`LoadBalancerHook`](gatekeeper_proxy::LoadBalancerHook),
//! [`MetricsExporter`](gatekeeper_proxy::MetricsExporter)), the registry served to upstream
//! plugins as the host's [`Manager`](gatekeeper_plugin_host::Manager), registry changes and plugin
//! events turned into calls and metrics.

pub mod access_log;
pub mod feeds;
pub mod hooks;
pub mod manager;
pub mod metrics;

use std::time::Instant;

use gatekeeper_plugin_host::{PluginCallError, PluginHandle};
use gatekeeper_proxy::{HookError, MetricKind, Metrics};
use gatekeeper_rpc::methods::Method;
use gatekeeper_rpc::metrics::{now_ms, PluginMetric};

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

    /// Calls `M` with the plugin's hook timeout, recording its latency and outcome.
    pub async fn call<M: Method>(&self, params: &M::Params) -> Result<M::Result, PluginCallError> {
        if !self.metrics.wants(MetricKind::Plugin) {
            return self.handle.call::<M>(params).await;
        }
        let started = Instant::now();
        let outcome = self.handle.call::<M>(params).await;
        self.metrics.record_plugin(PluginMetric {
            time_ms: now_ms(),
            plugin: self.handle.name().to_owned(),
            method: M::NAME.to_owned(),
            latency_us: u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX),
            error: outcome.as_ref().err().map(ToString::to_string),
        });
        outcome
    }

    /// Calls `M` as a hook of the proxy: errors become [`HookError`]s.
    pub async fn hook<M: Method>(&self, params: &M::Params) -> Result<M::Result, HookError> {
        self.call::<M>(params)
            .await
            .map_err(|e| HookError::new(e.to_string()))
    }
}
