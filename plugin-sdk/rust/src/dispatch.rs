//! How a call from the proxy reaches a plugin's trait method.
//!
//! Each plugin type has an adapter (`AsUpstream`, `AsModifier`, `AsRouter`, `AsLoadBalancer`,
//! `AsMetric`, each defined next to its trait with [`adapter!`]) implementing [`Dispatch`]: its
//! type, its declared hooks and a table from hook methods to trait methods, answered through the
//! protocol's typed [`Dispatcher`] (params parsed once into the method's params type, the trait
//! method's typed result encoded once). [`handle`] does everything the types share: refusing hooks that were
//! not declared, and the lifecycle methods. The serve functions differ only in the adapter they
//! wrap the plugin in.

use std::future::Future;

use futures::future::BoxFuture;
use gatekeeper_rpc::dispatch::{method_not_found, Dispatcher};
use gatekeeper_rpc::error::error_object;
use gatekeeper_rpc::methods::{
    hooks_of, Configure, Empty, Heartbeat, Method, PluginType, Start, Stop,
};
use gatekeeper_rpc::{codes, IncomingRequest, Reply};

use crate::error::HookError;
use crate::plugin::Plugin;

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

    /// The request parts `modify_request` needs (`parts` in the handshake). Default: none
    /// declared (the whole request).
    fn request_parts(&self) -> &'static [&'static str] {
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
    let lifecycle = Dispatcher::for_request(request)
        .on_async::<Configure, _, _>(|p| {
            let configured: BoxFuture<'_, Result<(), HookError>> = if p.check {
                Box::pin(plugin.check(p.config))
            } else {
                Box::pin(plugin.configure(p.config))
            };
            answer_empty::<Configure>(configured)
        })
        .on_async::<Start, _, _>(|_| answer_empty::<Start>(dispatch.start(request)))
        .on_async::<Heartbeat, _, _>(|_| answer_empty::<Heartbeat>(plugin.heartbeat()))
        .on_async::<Stop, _, _>(|_| answer_empty::<Stop>(plugin.stop()))
        .finish();
    match lifecycle {
        Some(reply) => reply.await,
        None => Err(method_not_found(method)),
    }
}

/// Runs the trait method answering a call of `M`, logging its error (sent to the proxy as the
/// error answer).
pub(crate) async fn answer<M: Method>(
    hook: impl Future<Output = Result<M::Result, HookError>>,
) -> Result<M::Result, HookError> {
    let outcome = hook.await;
    if let Err(error) = &outcome {
        tracing::warn!(method = M::NAME, %error, "answering with an error");
    }
    outcome
}

/// [`answer`] for a method whose result is `{}` and whose trait method returns `()`.
pub(crate) async fn answer_empty<M: Method<Result = Empty>>(
    hook: impl Future<Output = Result<(), HookError>>,
) -> Result<Empty, HookError> {
    answer::<M>(async move { hook.await.map(|()| Empty {}) }).await
}

/// A hook table: `hooks!(request, { Method => answer(|params| ...), ... })` answers `request`
/// with the entry of the method it calls, or is `None`. `answer` entries return the method's
/// result, `answer_empty` entries return `()`.
macro_rules! hooks {
    ($request:expr, { $($method:ident => $answer:ident($hook:expr)),+ $(,)? }) => {
        $crate::rpc::dispatch::Dispatcher::for_request($request)
            $(.on_async::<$method, _, _>(|params| {
                $crate::dispatch::$answer::<$method>(($hook)(params))
            }))+
            .finish()
    };
}
pub(crate) use hooks;

/// An adapter for a plugin type whose `start` is the plugin's own: the struct, and its
/// [`Dispatch`] with the hook table given as `wire method => answer(trait method)`. Each plugin
/// type's module invokes it next to its trait, so a new hook is one file's change.
macro_rules! adapter {
    ($(#[$doc:meta])* $name:ident: $plugin_trait:ident as $plugin_type:expr,
     $(bodies: $bodies:ident,)?
     $(parts: $parts:ident,)?
     { $($method:ident => $answer:ident($call:ident)),+ $(,)? }) => {
        $(#[$doc])*
        pub(crate) struct $name<P>(pub(crate) P);

        impl<P: $plugin_trait> $crate::dispatch::Dispatch for $name<P> {
            const TYPE: $crate::PluginType = $plugin_type;
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

            $(
                fn request_parts(&self) -> &'static [&'static str] {
                    self.0.$parts()
                }
            )?

            fn hook<'a>(
                &'a self,
                request: &'a $crate::rpc::IncomingRequest,
            ) -> Option<futures::future::BoxFuture<'a, $crate::rpc::Reply>> {
                let plugin = &self.0;
                $crate::dispatch::hooks!(request, { $($method => $answer(|p| plugin.$call(p))),+ })
            }
        }
    };
}
pub(crate) use adapter;

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
