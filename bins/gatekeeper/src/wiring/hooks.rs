//! Modifier, router and loadbalancer plugins as the proxy's plugin port: [`PluginHook`]
//! implements [`Plugin`] once, whatever the plugin's type, on top of the plugin host.

use futures::future::BoxFuture;
use gatekeeper_proxy::{FailurePolicy, HookError, Parsed, Plugin, RawCall};

use super::MeteredPlugin;

/// A plugin called through the proxy's plugin port, with its failure policy.
pub struct PluginHook {
    plugin: MeteredPlugin,
    failure: FailurePolicy,
}

impl PluginHook {
    /// Wraps a running plugin.
    pub fn new(plugin: MeteredPlugin, failure: FailurePolicy) -> Self {
        PluginHook { plugin, failure }
    }
}

impl Plugin for PluginHook {
    fn name(&self) -> &str {
        self.plugin.handle().name()
    }

    fn has_hook(&self, hook: &str) -> bool {
        self.plugin.handle().has_hook(hook)
    }

    fn wants_body(&self, hook: &str) -> bool {
        self.plugin.handle().wants_body(hook)
    }

    fn is_available(&self) -> bool {
        self.plugin.handle().is_available()
    }

    fn failure_policy(&self) -> FailurePolicy {
        self.failure
    }

    fn call_raw(&self, call: RawCall) -> BoxFuture<'static, Result<Parsed, HookError>> {
        let plugin = self.plugin.clone();
        Box::pin(async move { plugin.call_raw(call).await })
    }
}
