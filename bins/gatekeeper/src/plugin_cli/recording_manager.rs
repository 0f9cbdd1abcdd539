//! [`RecordingManager`]: the manager served to an upstream plugin under `gatekeeper plugin`:
//! it accepts every call and records it (`{"method", "params"}`), so `check` can print what the
//! plugin pushed.

use std::sync::Mutex;

use gatekeeper_plugin_host::Manager;
use gatekeeper_rpc::methods::{
    AddBackend, AddBackendParams, AddUpstream, AddUpstreamParams, ApplyBatch, ApplyBatchParams,
    ApplyBatchResult, Method, RemoveBackend, RemoveBackendParams, RemoveUpstream,
    RemoveUpstreamParams,
};
use gatekeeper_rpc::ErrorObject;
use serde::Serialize;
use serde_json::{json, Value};

/// Accepts and records every manager call.
#[derive(Debug, Default)]
pub struct RecordingManager {
    calls: Mutex<Vec<Value>>,
}

impl RecordingManager {
    /// The calls so far, in order, each `{"method": …, "params": …}`.
    pub fn calls(&self) -> Vec<Value> {
        self.calls.lock().map(|c| c.clone()).unwrap_or_default()
    }

    fn record(&self, method: &str, params: &impl Serialize) {
        let params = serde_json::to_value(params).unwrap_or(Value::Null);
        tracing::info!(%method, %params, "manager call recorded (accepted, nothing routed)");
        if let Ok(mut calls) = self.calls.lock() {
            calls.push(json!({"method": method, "params": params}));
        }
    }
}

impl Manager for RecordingManager {
    fn add_upstream(&self, _: &str, params: AddUpstreamParams) -> Result<(), ErrorObject> {
        self.record(AddUpstream::NAME, &params);
        Ok(())
    }

    fn remove_upstream(&self, _: &str, params: RemoveUpstreamParams) -> Result<(), ErrorObject> {
        self.record(RemoveUpstream::NAME, &params);
        Ok(())
    }

    fn add_backend(&self, _: &str, params: AddBackendParams) -> Result<(), ErrorObject> {
        self.record(AddBackend::NAME, &params);
        Ok(())
    }

    fn remove_backend(&self, _: &str, params: RemoveBackendParams) -> Result<(), ErrorObject> {
        self.record(RemoveBackend::NAME, &params);
        Ok(())
    }

    fn apply_batch(
        &self,
        _: &str,
        params: ApplyBatchParams,
    ) -> Result<ApplyBatchResult, ErrorObject> {
        self.record(ApplyBatch::NAME, &params);
        Ok(ApplyBatchResult::default())
    }
}
