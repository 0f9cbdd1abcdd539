//! The manager: the methods upstream plugins call to feed the proxy's registry (`add_upstream`,
//! `remove_upstream`, `add_backend`, `remove_backend`). The caller implements [`Manager`]; this
//! module serves it to a plugin's connections through a jsonrpsee [`RpcModule`].

use std::sync::Arc;

use gatekeeper_rpc::methods::{
    AddBackend, AddBackendParams, AddUpstream, AddUpstreamParams, Empty, RemoveBackend,
    RemoveBackendParams, RemoveUpstream, RemoveUpstreamParams,
};
use gatekeeper_rpc::{codes, error::error_object, ErrorObject, Message, Method, Reply};
use jsonrpsee::RpcModule;
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
}

/// The names of the manager methods.
pub const METHODS: [&str; 4] = [
    AddUpstream::NAME,
    RemoveUpstream::NAME,
    AddBackend::NAME,
    RemoveBackend::NAME,
];

/// Whether `method` is one of the manager methods.
pub fn is_manager_method(method: &str) -> bool {
    METHODS.contains(&method)
}

struct Context {
    plugin: String,
    manager: Arc<dyn Manager>,
}

/// The manager methods of one plugin, as a jsonrpsee module.
pub(crate) struct ManagerService {
    module: RpcModule<Context>,
}

impl std::fmt::Debug for ManagerService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ManagerService").finish_non_exhaustive()
    }
}

impl ManagerService {
    /// Builds the module serving `manager` to the plugin named `plugin`.
    pub(crate) fn new(plugin: &str, manager: Arc<dyn Manager>) -> ManagerService {
        let mut module = RpcModule::new(Context {
            plugin: plugin.to_owned(),
            manager,
        });
        let registered = [
            module
                .register_method(AddUpstream::NAME, |params, ctx: &Context, _| {
                    let params: AddUpstreamParams = params.parse()?;
                    ctx.manager
                        .add_upstream(&ctx.plugin, params)
                        .map(|()| Empty {})
                })
                .map(|_| ()),
            module
                .register_method(RemoveUpstream::NAME, |params, ctx: &Context, _| {
                    let params: RemoveUpstreamParams = params.parse()?;
                    ctx.manager
                        .remove_upstream(&ctx.plugin, params)
                        .map(|()| Empty {})
                })
                .map(|_| ()),
            module
                .register_method(AddBackend::NAME, |params, ctx: &Context, _| {
                    let params: AddBackendParams = params.parse()?;
                    ctx.manager
                        .add_backend(&ctx.plugin, params)
                        .map(|()| Empty {})
                })
                .map(|_| ()),
            module
                .register_method(RemoveBackend::NAME, |params, ctx: &Context, _| {
                    let params: RemoveBackendParams = params.parse()?;
                    ctx.manager
                        .remove_backend(&ctx.plugin, params)
                        .map(|()| Empty {})
                })
                .map(|_| ()),
        ];
        for result in registered {
            if let Err(e) = result {
                // Only possible if two names collide, which the constant names rule out.
                tracing::error!(plugin, error = %e, "could not register a manager method");
            }
        }
        ManagerService { module }
    }

    /// Calls one manager method with the params as the plugin sent them.
    pub(crate) async fn call(&self, method: &str, params: Option<&RawValue>) -> Reply {
        let method_json = serde_json::to_string(method).map_err(internal)?;
        let params = params.map_or("{}", RawValue::get);
        let request =
            format!(r#"{{"jsonrpc":"2.0","id":0,"method":{method_json},"params":{params}}}"#);
        let (response, _notifications) = self
            .module
            .raw_json_request(&request, 1)
            .await
            .map_err(|e| error_object(codes::INVALID_PARAMS, format!("invalid params: {e}")))?;
        match Message::parse(response.get()) {
            Ok(Message::Response(response)) => response.outcome,
            Ok(_) => Err(internal(
                "the manager module did not answer with a response",
            )),
            Err(e) => Err(internal(e)),
        }
    }
}

fn internal(e: impl std::fmt::Display) -> ErrorObject {
    error_object(codes::INTERNAL_ERROR, format!("manager: {e}"))
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use gatekeeper_rpc::message::to_raw;

    use super::*;

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
    }

    #[tokio::test]
    async fn forwards_calls_and_errors() {
        let recorder = Arc::new(Recorder::default());
        let service = ManagerService::new("up", recorder.clone());
        let params = to_raw(&serde_json::json!({"upstream": {"id": "a"}})).unwrap();
        let result = service.call("add_upstream", Some(&params)).await.unwrap();
        assert_eq!(result.get(), "{}");
        assert_eq!(recorder.0.lock().unwrap().as_slice(), ["up add a"]);

        let params = to_raw(&serde_json::json!({"upstream": {"id": "taken"}})).unwrap();
        let error = service
            .call("add_upstream", Some(&params))
            .await
            .unwrap_err();
        assert_eq!(error.code(), codes::CONFLICT);
        assert_eq!(error.message(), "upstream `taken` exists");

        let params = to_raw(&serde_json::json!({"upstream_id": "x", "backend_id": "y"})).unwrap();
        let error = service
            .call("remove_backend", Some(&params))
            .await
            .unwrap_err();
        assert_eq!(error.code(), codes::UNKNOWN_UPSTREAM);

        let error = service.call("add_backend", None).await.unwrap_err();
        assert_eq!(error.code(), codes::INVALID_PARAMS);
        let garbage = to_raw(&serde_json::json!([1, 2])).unwrap();
        let error = service
            .call("add_upstream", Some(&garbage))
            .await
            .unwrap_err();
        assert_eq!(error.code(), codes::INVALID_PARAMS);
    }
}
