//! Glue between the plugin host and the proxy, which do not know each other: modifier plugins
//! seen as the proxy's [`Modifier`]s, and the proxy's [`Registry`] served as the plugin host's
//! [`Manager`].

use std::sync::Arc;

use futures::future::BoxFuture;
use gatekeeper_plugin_host::{Manager, PluginHandle};
use gatekeeper_proxy::{FailurePolicy, HookError, Modifier, Registry, RegistryError};
use gatekeeper_rpc::error::error_object;
use gatekeeper_rpc::methods::{
    AddBackendParams, AddUpstreamParams, Method, ModifyErrorResponse, ModifyErrorResponseParams,
    ModifyRequest, ModifyRequestParams, ModifyRequestResult, ModifyResponse, ModifyResponseParams,
    ModifyResponseResult, RemoveBackendParams, RemoveUpstreamParams,
};
use gatekeeper_rpc::ErrorObject;

use crate::config::Failure;

/// A modifier plugin, called through its [`PluginHandle`].
pub struct PluginModifier {
    handle: PluginHandle,
    failure: FailurePolicy,
}

impl PluginModifier {
    /// Wraps a running modifier plugin with its failure policy.
    pub fn new(handle: PluginHandle, failure: Failure) -> Self {
        let failure = match failure {
            Failure::Open => FailurePolicy::Open,
            Failure::Closed { status } => FailurePolicy::Closed { status },
        };
        PluginModifier { handle, failure }
    }

    fn hook<M>(&self, params: M::Params) -> BoxFuture<'static, Result<M::Result, HookError>>
    where
        M: Method + 'static,
        M::Params: 'static,
    {
        let handle = self.handle.clone();
        Box::pin(async move {
            handle
                .call::<M>(&params)
                .await
                .map_err(|e| HookError::new(e.to_string()))
        })
    }
}

impl Modifier for PluginModifier {
    fn name(&self) -> &str {
        self.handle.name()
    }

    fn has_hook(&self, hook: &str) -> bool {
        self.handle.has_hook(hook)
    }

    fn failure_policy(&self) -> FailurePolicy {
        self.failure
    }

    fn modify_request(
        &self,
        params: ModifyRequestParams,
    ) -> BoxFuture<'static, Result<ModifyRequestResult, HookError>> {
        self.hook::<ModifyRequest>(params)
    }

    fn modify_response(
        &self,
        params: ModifyResponseParams,
    ) -> BoxFuture<'static, Result<ModifyResponseResult, HookError>> {
        self.hook::<ModifyResponse>(params)
    }

    fn modify_error_response(
        &self,
        params: ModifyErrorResponseParams,
    ) -> BoxFuture<'static, Result<ModifyResponseResult, HookError>> {
        self.hook::<ModifyErrorResponse>(params)
    }
}

/// The proxy's registry, changed by upstream plugins through the manager methods.
pub struct RegistryManager {
    registry: Arc<Registry>,
}

impl RegistryManager {
    /// Serves `registry` to upstream plugins.
    pub fn new(registry: Arc<Registry>) -> Self {
        RegistryManager { registry }
    }
}

fn to_rpc(error: RegistryError) -> ErrorObject {
    error_object(error.code(), error.to_string())
}

impl Manager for RegistryManager {
    fn add_upstream(&self, plugin: &str, params: AddUpstreamParams) -> Result<(), ErrorObject> {
        let id = params.upstream.id.clone();
        self.registry
            .add_upstream(params.upstream)
            .map_err(to_rpc)?;
        tracing::info!(plugin, upstream = %id, "upstream added");
        Ok(())
    }

    fn remove_upstream(
        &self,
        plugin: &str,
        params: RemoveUpstreamParams,
    ) -> Result<(), ErrorObject> {
        self.registry.remove_upstream(&params.id).map_err(to_rpc)?;
        tracing::info!(plugin, upstream = %params.id, "upstream removed");
        Ok(())
    }

    fn add_backend(&self, plugin: &str, params: AddBackendParams) -> Result<(), ErrorObject> {
        let (upstream, backend) = (params.upstream_id.clone(), params.backend.id.clone());
        let address = params.backend.address.clone();
        self.registry
            .add_backend(&params.upstream_id, params.backend)
            .map_err(to_rpc)?;
        tracing::info!(plugin, %upstream, %backend, %address, "backend added");
        Ok(())
    }

    fn remove_backend(&self, plugin: &str, params: RemoveBackendParams) -> Result<(), ErrorObject> {
        self.registry
            .remove_backend(&params.upstream_id, &params.backend_id)
            .map_err(to_rpc)?;
        tracing::info!(plugin, upstream = %params.upstream_id, backend = %params.backend_id, "backend removed");
        Ok(())
    }
}
