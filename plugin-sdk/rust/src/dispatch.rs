//! How a call from the proxy reaches a plugin's trait method.
//!
//! Each plugin type has an adapter ([`AsUpstream`], [`AsModifier`], [`AsRouter`],
//! [`AsLoadBalancer`], [`AsMetric`]) implementing [`Dispatch`]: its type, its declared hooks and a
//! table from hook names to trait methods. [`handle`] does everything the types share: refusing
//! hooks that were not declared, and the lifecycle methods. The serve functions differ only in the
//! adapter they wrap the plugin in.

use std::future::Future;

use futures::future::BoxFuture;
use gatekeeper_rpc::error::error_object;
use gatekeeper_rpc::methods::{
    hooks_of, AddBackend, AddUpstream, Configure, Empty, EventMetricHook, GetBackend, Heartbeat,
    Method, ModifyErrorResponse, ModifyRequest, ModifyResponse, PluginMetricHook, PluginType,
    ProfilingMetricHook, RemoveBackend, RemoveUpstream, RequestMetricHook, RouteRequest, Start,
    Stop, UpstreamMetricHook,
};
use gatekeeper_rpc::{codes, IncomingRequest, Reply};
use serde::Serialize;

use crate::error::HookError;
use crate::loadbalancer::LoadBalancerPlugin;
use crate::manager::Manager;
use crate::metric::MetricPlugin;
use crate::plugin::{ModifierPlugin, Plugin, UpstreamPlugin};
use crate::router::RouterPlugin;

/// A plugin seen as one plugin type: what the serve functions need to answer its calls.
pub(crate) trait Dispatch: Send + Sync + 'static {
    /// The type served; its [`hooks_of`] are the hooks refused unless declared.
    const TYPE: PluginType;
    /// The plugin, for the lifecycle methods.
    type Plugin: Plugin;

    /// The plugin itself.
    fn plugin(&self) -> &Self::Plugin;

    /// The hooks declared in the handshake.
    fn hooks(&self) -> &'static [&'static str];

    /// The declared hooks that want the body (`bodies` in the handshake). Default: none.
    fn bodies(&self) -> &'static [&'static str] {
        &[]
    }

    /// Answers a call of one of this type's hooks; `None` when the method is not one of them.
    fn hook<'a>(&'a self, request: &'a IncomingRequest) -> Option<BoxFuture<'a, Reply>>;

    /// Runs `start`. Default: [`Plugin::start`].
    fn start<'a>(&'a self, request: &'a IncomingRequest) -> BoxFuture<'a, Result<(), HookError>> {
        let _ = request;
        Box::pin(self.plugin().start())
    }
}

/// Answers one request: an undeclared hook is refused, a hook goes to the type's table, the
/// lifecycle methods to [`Plugin`], anything else is `method not found`.
pub(crate) async fn handle<D: Dispatch>(dispatch: &D, request: &IncomingRequest) -> Reply {
    let method = request.method.as_str();
    if hooks_of(D::TYPE).contains(&method) && !dispatch.hooks().contains(&method) {
        return Err(error_object(
            codes::METHOD_NOT_FOUND,
            format!("`{method}` was not declared in the handshake"),
        ));
    }
    if let Some(reply) = dispatch.hook(request) {
        return reply.await;
    }
    let plugin = dispatch.plugin();
    match method {
        Configure::NAME => {
            answer_empty::<Configure, _, _>(request, |p| plugin.configure(p.config)).await
        }
        Start::NAME => answer_empty::<Start, _, _>(request, |_| dispatch.start(request)).await,
        Heartbeat::NAME => answer_empty::<Heartbeat, _, _>(request, |_| plugin.heartbeat()).await,
        Stop::NAME => answer_empty::<Stop, _, _>(request, |_| plugin.stop()).await,
        other => Err(error_object(
            codes::METHOD_NOT_FOUND,
            format!("method not found: {other}"),
        )),
    }
}

/// Answers one call of method `M`: parses its params, runs `hook`, encodes the outcome.
async fn answer<M, F, Fut>(request: &IncomingRequest, hook: F) -> Reply
where
    M: Method,
    F: FnOnce(M::Params) -> Fut,
    Fut: Future<Output = Result<M::Result, HookError>>,
{
    let params = request.parse_params::<M::Params>()?;
    encode(M::NAME, hook(params).await)
}

/// Answers a call of method `M` whose result is `{}` and whose hook returns `()`.
async fn answer_empty<M, F, Fut>(request: &IncomingRequest, hook: F) -> Reply
where
    M: Method<Result = Empty>,
    F: FnOnce(M::Params) -> Fut,
    Fut: Future<Output = Result<(), HookError>>,
{
    answer::<M, _, _>(request, |params| async move {
        hook(params).await.map(|()| Empty {})
    })
    .await
}

fn encode<T: Serialize>(method: &str, outcome: Result<T, HookError>) -> Reply {
    match outcome {
        Ok(result) => serde_json::value::to_raw_value(&result).map_err(|e| {
            error_object(
                codes::INTERNAL_ERROR,
                format!("could not encode the result of `{method}`: {e}"),
            )
        }),
        Err(error) => {
            tracing::warn!(method, %error, "answering with an error");
            Err(error.into())
        }
    }
}

/// A hook table: `hooks!(request, { Method => answer(|params| ...), ... })` answers `request`
/// with the entry whose method name it carries, or is `None`. `answer` entries return the
/// method's result, `answer_empty` entries return `()`.
macro_rules! hooks {
    ($request:expr, { $($method:ident => $answer:ident($hook:expr)),+ $(,)? }) => {
        match $request.method.as_str() {
            $($method::NAME => {
                let reply: BoxFuture<'_, Reply> =
                    Box::pin($answer::<$method, _, _>($request, $hook));
                Some(reply)
            })+
            _ => None,
        }
    };
}

/// An [`UpstreamPlugin`] being served.
pub(crate) struct AsUpstream<P>(pub(crate) P);

impl<P: UpstreamPlugin> Dispatch for AsUpstream<P> {
    const TYPE: PluginType = PluginType::Upstream;
    type Plugin = P;

    fn plugin(&self) -> &P {
        &self.0
    }

    fn hooks(&self) -> &'static [&'static str] {
        self.0.hooks()
    }

    fn hook<'a>(&'a self, request: &'a IncomingRequest) -> Option<BoxFuture<'a, Reply>> {
        let plugin = &self.0;
        hooks!(request, {
            UpstreamMetricHook => answer_empty(|p| plugin.upstream_metric(p)),
        })
    }

    /// [`Plugin::start`], then [`UpstreamPlugin::start_upstreams`] with a manager calling back
    /// on the connection `start` arrived on.
    fn start<'a>(&'a self, request: &'a IncomingRequest) -> BoxFuture<'a, Result<(), HookError>> {
        let manager = Manager::new(request.peer.clone());
        Box::pin(async move {
            self.0.start().await?;
            self.0.start_upstreams(manager).await
        })
    }
}

/// An adapter for a plugin type whose `start` is the plugin's own: the struct, and its
/// [`Dispatch`] with the hook table given as `wire method => answer(trait method)`.
macro_rules! adapter {
    ($(#[$doc:meta])* $name:ident: $plugin_trait:ident as $plugin_type:expr,
     $(bodies: $bodies:ident,)?
     { $($method:ident => $answer:ident($call:ident)),+ $(,)? }) => {
        $(#[$doc])*
        pub(crate) struct $name<P>(pub(crate) P);

        impl<P: $plugin_trait> Dispatch for $name<P> {
            const TYPE: PluginType = $plugin_type;
            type Plugin = P;

            fn plugin(&self) -> &P {
                &self.0
            }

            fn hooks(&self) -> &'static [&'static str] {
                self.0.hooks()
            }

            $(
                fn bodies(&self) -> &'static [&'static str] {
                    self.0.$bodies()
                }
            )?

            fn hook<'a>(&'a self, request: &'a IncomingRequest) -> Option<BoxFuture<'a, Reply>> {
                let plugin = &self.0;
                hooks!(request, { $($method => $answer(|p| plugin.$call(p))),+ })
            }
        }
    };
}

adapter!(
    /// A [`ModifierPlugin`] being served.
    AsModifier: ModifierPlugin as PluginType::Modifier, bodies: bodies, {
        ModifyRequest => answer(modify_request),
        ModifyResponse => answer(modify_response),
        ModifyErrorResponse => answer(modify_error_response),
    }
);

adapter!(
    /// A [`RouterPlugin`] being served.
    AsRouter: RouterPlugin as PluginType::Router, {
        AddUpstream => answer_empty(add_upstream),
        RemoveUpstream => answer_empty(remove_upstream),
        RouteRequest => answer(route_request),
    }
);

adapter!(
    /// A [`LoadBalancerPlugin`] being served.
    AsLoadBalancer: LoadBalancerPlugin as PluginType::Loadbalancer, {
        AddBackend => answer_empty(add_backend),
        RemoveBackend => answer_empty(remove_backend),
        UpstreamMetricHook => answer_empty(upstream_metric),
        GetBackend => answer(get_backend),
    }
);

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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{LOADBALANCER_HOOKS, METRIC_HOOKS, MODIFIER_HOOKS, ROUTER_HOOKS};

    /// The SDK's hook lists are the protocol's.
    #[test]
    fn hook_lists_match_the_protocol() {
        assert_eq!(MODIFIER_HOOKS, hooks_of(PluginType::Modifier));
        assert_eq!(ROUTER_HOOKS, hooks_of(PluginType::Router));
        assert_eq!(LOADBALANCER_HOOKS, hooks_of(PluginType::Loadbalancer));
        assert_eq!(METRIC_HOOKS, hooks_of(PluginType::Metric));
    }
}
