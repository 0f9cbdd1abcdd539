//! Modifier, router and loadbalancer plugins as the proxy's plugin port: [`PluginHook`]
//! implements [`Plugin`] once, whatever the plugin's type, on top of the plugin host.

use std::sync::Arc;

use futures::future::BoxFuture;
use gatekeeper_proxy::{DecisionCache, FailurePolicy, HookError, Parsed, Plugin, RawCall};
use gatekeeper_rpc::parts::RequestPart;

use super::MeteredPlugin;

/// A plugin called through the proxy's plugin port, with its failure policy.
pub struct PluginHook {
    plugin: MeteredPlugin,
    failure: FailurePolicy,
    cache: Arc<DecisionCache>,
}

impl PluginHook {
    /// Wraps a running plugin, with its decision cache.
    pub fn new(plugin: MeteredPlugin, failure: FailurePolicy, cache: Arc<DecisionCache>) -> Self {
        PluginHook {
            plugin,
            failure,
            cache,
        }
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

    fn request_parts(&self, hook: &str) -> Option<Arc<[RequestPart]>> {
        self.plugin.handle().request_parts(hook)
    }

    fn is_available(&self) -> bool {
        self.plugin.handle().is_available()
    }

    fn failure_policy(&self) -> FailurePolicy {
        self.failure
    }

    /// The plugin's decision cache, cleared first if the plugin restarted since the last call.
    fn decision_cache(&self) -> Option<&DecisionCache> {
        self.cache
            .clear_on_new_epoch(self.plugin.handle().restarts());
        Some(&self.cache)
    }

    fn call_raw(&self, call: RawCall) -> BoxFuture<'static, Result<Parsed, HookError>> {
        let plugin = self.plugin.clone();
        Box::pin(async move { plugin.call_raw(call).await })
    }
}
