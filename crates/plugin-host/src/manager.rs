//! The manager: the methods upstream plugins call to feed the proxy's registry (the protocol
//! table's [`MANAGER_METHODS`]: `add_upstream`, `remove_upstream`, `add_backend`,
//! `remove_backend`, and `apply_batch`, many of those as one). The caller implements [`Manager`]; this module answers a plugin's calls
//! with it through the protocol's typed [`Dispatcher`]: params parsed once into their Rust type,
//! the result encoded once.

use std::sync::Arc;

use gatekeeper_rpc::dispatch::{method_not_found, Dispatcher};
use gatekeeper_rpc::methods::Method;
pub use gatekeeper_rpc::methods::{is_manager_method, MANAGER_METHODS};
use gatekeeper_rpc::methods::{
    AddBackend, AddBackendParams, AddUpstream, AddUpstreamParams, ApplyBatch, ApplyBatchParams,
    ApplyBatchResult, Empty, RemoveBackend, RemoveBackendParams, RemoveUpstream,
    RemoveUpstreamParams,
};
use gatekeeper_rpc::{ErrorObject, Reply};
use serde_json::value::RawValue;

/// What upstream plugins may change: the proxy's registry of upstreams and backends.
///
/// Each method gets the name of the calling plugin. Methods run on the connection's task and
/// must not block (update an in-memory snapshot, not a database). An error is sent to the plugin
/// as the JSON-RPC error with the same code and message (use the manager codes of
/// [`gatekeeper_rpc::codes`], e.g. `UNKNOWN_UPSTREAM`, `CONFLICT`, `INVALID_VALUE`).
pub trait Manager: Send + Sync + 'static {
    /// Adds an upstream, or replaces the one with the same id.
    fn add_upstream(&self, plugin: &str, params: AddUpstreamParams) -> Result<(), ErrorObject>;
    /// Removes an upstream and its backends.
    fn remove_upstream(
        &self,
        plugin: &str,
        params: RemoveUpstreamParams,
    ) -> Result<(), ErrorObject>;
    /// Adds a backend to an upstream, or replaces the one with the same id.
    fn add_backend(&self, plugin: &str, params: AddBackendParams) -> Result<(), ErrorObject>;
    /// Removes a backend from an upstream.
    fn remove_backend(&self, plugin: &str, params: RemoveBackendParams) -> Result<(), ErrorObject>;
    /// Applies many changes as one, in order, all or none (with `replace`, the batch is the
    /// plugin's whole desired state). A refused batch changes nothing and is answered with
    /// [`gatekeeper_rpc::methods::batch_refused_error`] (every refused change listed in its
    /// `data`). Default: `method not found` (a manager that cannot apply changes atomically
    /// must not pretend to).
    fn apply_batch(
        &self,
        _plugin: &str,
        _params: ApplyBatchParams,
    ) -> Result<ApplyBatchResult, ErrorObject> {
        Err(method_not_found(ApplyBatch::NAME))
    }
    /// A process of `plugin` is about to be started again after its previous one went down
    /// (called before its handshake; not on the launch's first start). Default: nothing.
    fn restarting(&self, _plugin: &str) {}
    /// The restarted process of `plugin` finished `start` (what it did not push again since
    /// [`restarting`](Self::restarting) may be removed now, as after a reload). Default:
    /// nothing.
    fn restarted(&self, _plugin: &str) {}
}

/// The names of the manager methods (the protocol table's [`MANAGER_METHODS`]).
pub const METHODS: &[&str] = MANAGER_METHODS;

/// The manager methods of one plugin.
pub(crate) struct ManagerService {
    plugin: String,
    manager: Arc<dyn Manager>,
}

impl std::fmt::Debug for ManagerService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ManagerService")
            .field("plugin", &self.plugin)
            .finish_non_exhaustive()
    }
}

impl ManagerService {
    /// Serves `manager` to the plugin named `plugin`.
    pub(crate) fn new(plugin: &str, manager: Arc<dyn Manager>) -> ManagerService {
        ManagerService {
            plugin: plugin.to_owned(),
            manager,
        }
    }

    /// A process of the plugin is about to be started again after a crash
    /// ([`Manager::restarting`]).
    pub(crate) fn restarting(&self) {
        self.manager.restarting(&self.plugin);
    }

    /// The restarted process finished `start` ([`Manager::restarted`]).
    pub(crate) fn restarted(&self) {
        self.manager.restarted(&self.plugin);
    }

    /// Answers one manager call with the params as the plugin sent them.
    pub(crate) fn call(&self, method: &str, params: Option<&RawValue>) -> Reply {
        dispatch(&*self.manager, &self.plugin, method, params)
    }
}

/// Answers one manager call from `plugin` with `manager`: the params typed through the
/// protocol table, an unknown method answered `method not found`.
pub fn dispatch(
    manager: &dyn Manager,
    plugin: &str,
    method: &str,
    params: Option<&RawValue>,
) -> Reply {
    let empty = |outcome: Result<(), ErrorObject>| outcome.map(|()| Empty {});
    Dispatcher::new(method, params)
        .on::<AddUpstream, _>(|p| empty(manager.add_upstream(plugin, p)))
        .on::<RemoveUpstream, _>(|p| empty(manager.remove_upstream(plugin, p)))
        .on::<AddBackend, _>(|p| empty(manager.add_backend(plugin, p)))
        .on::<RemoveBackend, _>(|p| empty(manager.remove_backend(plugin, p)))
        .on::<ApplyBatch, _>(|p| manager.apply_batch(plugin, p))
        .finish()
        .unwrap_or_else(|| Err(method_not_found(method)))
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use gatekeeper_rpc::codes;
    use gatekeeper_rpc::error::error_object;
    use gatekeeper_rpc::message::to_raw;

    use super::*;

    fn internal(e: impl std::fmt::Display) -> ErrorObject {
        error_object(codes::INTERNAL_ERROR, format!("manager: {e}"))
    }

    #[derive(Default)]
    struct Recorder(Mutex<Vec<String>>);

    impl Manager for Recorder {
        fn add_upstream(&self, plugin: &str, p: AddUpstreamParams) -> Result<(), ErrorObject> {
            if p.upstream.id == "taken" {
                return Err(error_object(codes::CONFLICT, "upstream `taken` exists"));
            }
            self.0
                .lock()
                .map_err(internal)?
                .push(format!("{plugin} add {}", p.upstream.id));
            Ok(())
        }
        fn remove_upstream(&self, _: &str, _: RemoveUpstreamParams) -> Result<(), ErrorObject> {
            Ok(())
        }
        fn add_backend(&self, _: &str, _: AddBackendParams) -> Result<(), ErrorObject> {
            Ok(())
        }
        fn remove_backend(&self, _: &str, _: RemoveBackendParams) -> Result<(), ErrorObject> {
            Err(error_object(codes::UNKNOWN_UPSTREAM, "no such upstream"))
        }
        fn apply_batch(
            &self,
            plugin: &str,
            p: ApplyBatchParams,
        ) -> Result<ApplyBatchResult, ErrorObject> {
            self.0.lock().map_err(internal)?.push(format!(
                "{plugin} batch of {} replace={}",
                p.changes.len(),
                p.replace
            ));
            Ok(ApplyBatchResult {
                upstreams_added: p.changes.len() as u64,
                ..ApplyBatchResult::default()
            })
        }
    }

    /// A manager that does not implement `apply_batch`.
    struct SingleCallsOnly;

    impl Manager for SingleCallsOnly {
        fn add_upstream(&self, _: &str, _: AddUpstreamParams) -> Result<(), ErrorObject> {
            Ok(())
        }
        fn remove_upstream(&self, _: &str, _: RemoveUpstreamParams) -> Result<(), ErrorObject> {
            Ok(())
        }
        fn add_backend(&self, _: &str, _: AddBackendParams) -> Result<(), ErrorObject> {
            Ok(())
        }
        fn remove_backend(&self, _: &str, _: RemoveBackendParams) -> Result<(), ErrorObject> {
            Ok(())
        }
    }

    #[test]
    fn forwards_batches_and_names_a_malformed_change() {
        let recorder = Arc::new(Recorder::default());
        let service = ManagerService::new("up", recorder.clone());
        let params = to_raw(&serde_json::json!({"changes": [
            {"add_upstream": {"upstream": {"id": "a"}}},
            {"remove_upstream": {"id": "b"}},
        ], "replace": true}))
        .unwrap();
        let result = service.call("apply_batch", Some(&params)).unwrap();
        let result: ApplyBatchResult = serde_json::from_str(result.get()).unwrap();
        assert_eq!(result.upstreams_added, 2);
        assert_eq!(
            recorder.0.lock().unwrap().as_slice(),
            ["up batch of 2 replace=true"]
        );

        let params = to_raw(&serde_json::json!({"changes": [
            {"remove_upstream": {"id": "b"}},
            {"remove_upstream": {"id": "b"}, "add_upstream": {"upstream": {"id": "a"}}},
        ]}))
        .unwrap();
        let error = service.call("apply_batch", Some(&params)).unwrap_err();
        assert_eq!(error.code(), codes::INVALID_PARAMS);
        assert!(
            error.message().contains("change 1: "),
            "{}",
            error.message()
        );
        assert_eq!(recorder.0.lock().unwrap().len(), 1);

        let params = to_raw(&serde_json::json!({"changes": []})).unwrap();
        let error = ManagerService::new("up", Arc::new(SingleCallsOnly))
            .call("apply_batch", Some(&params))
            .unwrap_err();
        assert_eq!(error.code(), codes::METHOD_NOT_FOUND);
    }

    #[test]
    fn forwards_calls_and_errors() {
        let recorder = Arc::new(Recorder::default());
        let service = ManagerService::new("up", recorder.clone());
        let params = to_raw(&serde_json::json!({"upstream": {"id": "a"}})).unwrap();
        let result = service.call("add_upstream", Some(&params)).unwrap();
        assert_eq!(result.get(), "{}");
        assert_eq!(recorder.0.lock().unwrap().as_slice(), ["up add a"]);

        let params = to_raw(&serde_json::json!({"upstream": {"id": "taken"}})).unwrap();
        let error = service.call("add_upstream", Some(&params)).unwrap_err();
        assert_eq!(error.code(), codes::CONFLICT);
        assert_eq!(error.message(), "upstream `taken` exists");

        let params = to_raw(&serde_json::json!({"upstream_id": "x", "backend_id": "y"})).unwrap();
        let error = service.call("remove_backend", Some(&params)).unwrap_err();
        assert_eq!(error.code(), codes::UNKNOWN_UPSTREAM);

        let error = service.call("add_backend", None).unwrap_err();
        assert_eq!(error.code(), codes::INVALID_PARAMS);
        let garbage = to_raw(&serde_json::json!([1, 2])).unwrap();
        let error = service.call("add_upstream", Some(&garbage)).unwrap_err();
        assert_eq!(error.code(), codes::INVALID_PARAMS);
    }

    /// The dispatch answers every manager method of the protocol table, and nothing else.
    #[test]
    fn dispatch_covers_the_manager_methods_of_the_table() {
        let service = ManagerService::new("up", Arc::new(Recorder::default()));
        for method in MANAGER_METHODS {
            let error = service.call(method, None).unwrap_err();
            assert_eq!(error.code(), codes::INVALID_PARAMS, "{method}");
        }
        let error = service.call("route_request", None).unwrap_err();
        assert_eq!(error.code(), codes::METHOD_NOT_FOUND);
    }
}
