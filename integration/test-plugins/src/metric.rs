//! `test-metric`: a metric plugin that records every batch it receives.
//!
//! Declares all five metric hooks; each answers `{}` at once.
//!
//! Settings: `file` (record to it).
//!
//! Records: `{"method":HOOK,"params":PARAMS}`, PARAMS exactly as received (e.g.
//! `{"method":"request_metric","params":{"metrics":[RequestMetric…]}}`, or for `event_metric`
//! `{"events":[…]}`, for `profiling_metric` `{"profiles":[…]}`).

use gatekeeper_plugin_sdk::{
    EventMetricHook, EventMetricParams, HookError, Method, MetricPlugin, Object, Plugin,
    PluginMetricHook, PluginMetricParams, ProfilingMetricHook, ProfilingMetricParams,
    RequestMetricHook, RequestMetricParams, UpstreamMetricHook, UpstreamMetricParams,
};
use serde::Serialize;
use serde_json::json;

use crate::{Recorder, Settings};

/// The metric plugin.
#[derive(Debug, Default)]
pub struct TestMetric {
    args: Settings,
    recorder: Recorder,
}

impl TestMetric {
    /// A metric plugin whose command-line settings are `args`.
    pub fn new(args: Settings) -> Self {
        TestMetric {
            args,
            recorder: Recorder::default(),
        }
    }

    fn batch<M: Method>(&self, params: &M::Params) -> Result<(), HookError>
    where
        M::Params: Serialize,
    {
        self.recorder
            .record(&json!({"method": M::NAME, "params": params}));
        Ok(())
    }
}

impl Plugin for TestMetric {
    async fn configure(&self, config: Object) -> Result<(), HookError> {
        let settings = Settings::from_config(&config).overridden_by(&self.args);
        self.recorder.open(settings.get("file"))
    }
}

impl MetricPlugin for TestMetric {
    async fn event_metric(&self, params: EventMetricParams) -> Result<(), HookError> {
        self.batch::<EventMetricHook>(&params)
    }

    async fn profiling_metric(&self, params: ProfilingMetricParams) -> Result<(), HookError> {
        self.batch::<ProfilingMetricHook>(&params)
    }

    async fn plugin_metric(&self, params: PluginMetricParams) -> Result<(), HookError> {
        self.batch::<PluginMetricHook>(&params)
    }

    async fn request_metric(&self, params: RequestMetricParams) -> Result<(), HookError> {
        self.batch::<RequestMetricHook>(&params)
    }

    async fn upstream_metric(&self, params: UpstreamMetricParams) -> Result<(), HookError> {
        self.batch::<UpstreamMetricHook>(&params)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use crate::record::tests::{lines, temp_file};
    use gatekeeper_plugin_sdk::EventMetric;

    #[tokio::test]
    async fn records_each_batch_with_its_hook() {
        let path = temp_file("metric");
        let plugin = TestMetric::default();
        let mut config = Object::new();
        config.insert("file".into(), json!(path.to_str().unwrap()));
        plugin.configure(config).await.unwrap();
        let events = vec![EventMetric {
            time_ms: 3,
            name: "app_started".into(),
            attributes: Object::new(),
        }];
        plugin
            .event_metric(EventMetricParams { events })
            .await
            .unwrap();
        plugin
            .upstream_metric(UpstreamMetricParams { metrics: vec![] })
            .await
            .unwrap();
        assert_eq!(
            lines(&path),
            vec![
                json!({"method": "event_metric", "params": {"events": [
                    {"time_ms": 3, "name": "app_started", "attributes": {}}
                ]}}),
                json!({"method": "upstream_metric", "params": {"metrics": []}}),
            ]
        );
        let _ = std::fs::remove_file(path);
    }
}
