//! [`MetricPlugin`]: a plugin that receives gatekeeper's metrics, in batches.

use std::future::Future;

use gatekeeper_rpc::methods::{
    EventMetricHook, EventMetricParams, PluginMetricHook, PluginMetricParams, PluginType,
    ProfilingMetricHook, ProfilingMetricParams, RequestMetricHook, RequestMetricParams,
    UpstreamMetricHook, UpstreamMetricParams,
};

use crate::dispatch::adapter;
use crate::error::HookError;
use crate::plugin::Plugin;

/// Every hook a metric plugin can implement (from the protocol table).
pub use gatekeeper_rpc::methods::METRIC_HOOKS;

/// A plugin that receives metrics: events, timings of internal operations, plugin calls,
/// finished requests and backend outcomes.
///
/// The proxy records metrics into a bounded buffer and flushes it in batches (oldest first), so
/// no request ever waits on a metric plugin (a plugin that falls behind loses records rather than
/// slowing the proxy). Each hook receives one batch of one kind.
pub trait MetricPlugin: Plugin {
    /// The hooks this plugin implements, sent in the handshake: the proxy never sends the other
    /// kinds (and the SDK refuses them). Names are the method names, e.g.
    /// [`RequestMetricHook::NAME`](crate::Method::NAME).
    ///
    /// Default: all five ([`METRIC_HOOKS`]). Declare fewer to have the proxy skip the others.
    fn hooks(&self) -> &'static [&'static str] {
        METRIC_HOOKS
    }

    /// Runs with a batch of [`EventMetric`](crate::EventMetric)s: things that happened (see
    /// [`events`](crate::events) for their names).
    ///
    /// Default: ignores the batch.
    fn event_metric(
        &self,
        params: EventMetricParams,
    ) -> impl Future<Output = Result<(), HookError>> + Send {
        async move {
            let _ = params;
            Ok(())
        }
    }

    /// Runs with a batch of [`ProfilingMetric`](crate::ProfilingMetric)s: how long internal
    /// operations took (plugin start, registry update, shutdown).
    ///
    /// Default: ignores the batch.
    fn profiling_metric(
        &self,
        params: ProfilingMetricParams,
    ) -> impl Future<Output = Result<(), HookError>> + Send {
        async move {
            let _ = params;
            Ok(())
        }
    }

    /// Runs with a batch of [`PluginMetric`](crate::PluginMetric)s: calls the proxy made to
    /// plugins, with their latency and failure.
    ///
    /// Default: ignores the batch.
    fn plugin_metric(
        &self,
        params: PluginMetricParams,
    ) -> impl Future<Output = Result<(), HookError>> + Send {
        async move {
            let _ = params;
            Ok(())
        }
    }

    /// Runs with a batch of [`RequestMetric`](crate::RequestMetric)s: finished requests, with
    /// the latency of every phase.
    ///
    /// Default: ignores the batch.
    fn request_metric(
        &self,
        params: RequestMetricParams,
    ) -> impl Future<Output = Result<(), HookError>> + Send {
        async move {
            let _ = params;
            Ok(())
        }
    }

    /// Runs with a batch of [`UpstreamMetric`](crate::UpstreamMetric)s: the outcome of each
    /// request to a backend.
    ///
    /// Default: ignores the batch.
    fn upstream_metric(
        &self,
        params: UpstreamMetricParams,
    ) -> impl Future<Output = Result<(), HookError>> + Send {
        async move {
            let _ = params;
            Ok(())
        }
    }
}

adapter!(
    /// A [`MetricPlugin`] being served.
    AsMetric: MetricPlugin as PluginType::Metric, {
        EventMetricHook => answer_empty(event_metric),
        ProfilingMetricHook => answer_empty(profiling_metric),
        PluginMetricHook => answer_empty(plugin_metric),
        RequestMetricHook => answer_empty(request_metric),
        UpstreamMetricHook => answer_empty(upstream_metric),
    }
);
