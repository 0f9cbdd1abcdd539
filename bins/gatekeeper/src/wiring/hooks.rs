//! Modifier, router and loadbalancer plugins as the proxy's hooks.

use futures::future::BoxFuture;
use gatekeeper_proxy::{FailurePolicy, HookError, LoadBalancerHook, Modifier, RouterHook};
use gatekeeper_rpc::methods::{
    GetBackend, GetBackendParams, GetBackendResult, Method, ModifyErrorResponse,
    ModifyErrorResponseParams, ModifyRequest, ModifyRequestParams, ModifyRequestResult,
    ModifyResponse, ModifyResponseParams, ModifyResponseResult, RouteRequest, RouteRequestParams,
    RouteRequestResult,
};

use super::MeteredPlugin;

/// A plugin called as one of the proxy's hooks, with its failure policy.
pub struct PluginHook {
    plugin: MeteredPlugin,
    failure: FailurePolicy,
}

impl PluginHook {
    /// Wraps a running plugin.
    pub fn new(plugin: MeteredPlugin, failure: FailurePolicy) -> Self {
        PluginHook { plugin, failure }
    }

    fn call<M>(&self, params: M::Params) -> BoxFuture<'static, Result<M::Result, HookError>>
    where
        M: Method + 'static,
    {
        let plugin = self.plugin.clone();
        Box::pin(async move { plugin.hook::<M>(&params).await })
    }
}

impl Modifier for PluginHook {
    fn name(&self) -> &str {
        self.plugin.handle().name()
    }

    fn has_hook(&self, hook: &str) -> bool {
        self.plugin.handle().has_hook(hook)
    }

    fn failure_policy(&self) -> FailurePolicy {
        self.failure
    }

    fn wants_body(&self, hook: &str) -> bool {
        self.plugin.handle().wants_body(hook)
    }

    fn modify_request(
        &self,
        params: ModifyRequestParams,
    ) -> BoxFuture<'static, Result<ModifyRequestResult, HookError>> {
        self.call::<ModifyRequest>(params)
    }

    fn modify_response(
        &self,
        params: ModifyResponseParams,
    ) -> BoxFuture<'static, Result<ModifyResponseResult, HookError>> {
        self.call::<ModifyResponse>(params)
    }

    fn modify_error_response(
        &self,
        params: ModifyErrorResponseParams,
    ) -> BoxFuture<'static, Result<ModifyResponseResult, HookError>> {
        self.call::<ModifyErrorResponse>(params)
    }
}

impl RouterHook for PluginHook {
    fn name(&self) -> &str {
        self.plugin.handle().name()
    }

    fn is_available(&self) -> bool {
        self.plugin.handle().is_ready() && self.plugin.handle().has_hook(RouteRequest::NAME)
    }

    fn failure_policy(&self) -> FailurePolicy {
        self.failure
    }

    fn route(
        &self,
        params: RouteRequestParams,
    ) -> BoxFuture<'static, Result<RouteRequestResult, HookError>> {
        self.call::<RouteRequest>(params)
    }
}

impl LoadBalancerHook for PluginHook {
    fn name(&self) -> &str {
        self.plugin.handle().name()
    }

    fn is_available(&self) -> bool {
        self.plugin.handle().is_ready() && self.plugin.handle().has_hook(GetBackend::NAME)
    }

    fn failure_policy(&self) -> FailurePolicy {
        self.failure
    }

    fn get_backend(
        &self,
        params: GetBackendParams,
    ) -> BoxFuture<'static, Result<GetBackendResult, HookError>> {
        self.call::<GetBackend>(params)
    }
}
