//! The proxy's [`Registry`], changed by upstream plugins through the manager methods.

use std::sync::Arc;

use gatekeeper_plugin_host::Manager;
use gatekeeper_proxy::{Registry, RegistryError};
use gatekeeper_rpc::error::error_object;
use gatekeeper_rpc::methods::{
    AddBackendParams, AddUpstreamParams, RemoveBackendParams, RemoveUpstreamParams,
};
use gatekeeper_rpc::ErrorObject;

/// Serves the registry to upstream plugins.
pub struct RegistryManager {
    registry: Arc<Registry>,
}

impl RegistryManager {
    /// Serves `registry` to upstream plugins.
    pub fn new(registry: Arc<Registry>) -> Self {
        RegistryManager { registry }
    }
}

fn refused(plugin: &str, error: RegistryError) -> ErrorObject {
    tracing::warn!(plugin, %error, "manager call refused");
    error_object(error.code(), error.to_string())
}

impl Manager for RegistryManager {
    fn add_upstream(&self, plugin: &str, params: AddUpstreamParams) -> Result<(), ErrorObject> {
        let id = params.upstream.id.clone();
        self.registry
            .add_upstream(params.upstream)
            .map_err(|e| refused(plugin, e))?;
        tracing::debug!(plugin, upstream = %id, "add_upstream");
        Ok(())
    }

    fn remove_upstream(
        &self,
        plugin: &str,
        params: RemoveUpstreamParams,
    ) -> Result<(), ErrorObject> {
        self.registry
            .remove_upstream(&params.id)
            .map_err(|e| refused(plugin, e))?;
        tracing::debug!(plugin, upstream = %params.id, "remove_upstream");
        Ok(())
    }

    fn add_backend(&self, plugin: &str, params: AddBackendParams) -> Result<(), ErrorObject> {
        let backend = params.backend.id.clone();
        self.registry
            .add_backend(&params.upstream_id, params.backend)
            .map_err(|e| refused(plugin, e))?;
        tracing::debug!(plugin, upstream = %params.upstream_id, %backend, "add_backend");
        Ok(())
    }

    fn remove_backend(&self, plugin: &str, params: RemoveBackendParams) -> Result<(), ErrorObject> {
        self.registry
            .remove_backend(&params.upstream_id, &params.backend_id)
            .map_err(|e| refused(plugin, e))?;
        tracing::debug!(plugin, upstream = %params.upstream_id, backend = %params.backend_id, "remove_backend");
        Ok(())
    }
}
