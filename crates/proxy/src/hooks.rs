//! The plugin hooks a serving proxy calls, as one snapshot that can be swapped while it serves:
//! [`Hooks`] (what the caller gives: modifiers, router and loadbalancer plugins) and
//! [`HooksSwitch`] (the handle that replaces them, from
//! [`BoundProxy::hooks_switch`](crate::BoundProxy::hooks_switch)).
//!
//! Every request loads the current snapshot once when it arrives and uses it from start to end
//! (route, `modify_request`, pick a backend, `modify_response` or `modify_error_response`), so a
//! replacement never shows a request half of the old hooks and half of the new ones: requests
//! already in flight finish with the hooks they started with, new requests get the new ones.
//! A snapshot without any hook (and without metrics that measure requests) sends requests down
//! the fast path again.

use std::sync::Arc;

use arc_swap::{ArcSwap, Guard};

use crate::modifier::Chain;
use crate::port::policy::HookedPlugin;
use crate::port::Plugin;

/// The plugins called on the request path; given to [`HooksSwitch::replace`].
#[derive(Clone, Default)]
pub struct Hooks {
    /// The modifiers, called in this order (see [`crate::modifier`]).
    pub modifiers: Vec<Arc<dyn Plugin>>,
    /// The router plugin (`route_request`); `None` routes with the built-in router.
    pub router: Option<Arc<dyn Plugin>>,
    /// The loadbalancer plugin (`get_backend`); `None` picks backends with the built-in
    /// balancers. It also receives `upstream_metric` batches: pass it to
    /// [`Metrics::new`](crate::Metrics::new) as a [`MetricsExporter`](crate::MetricsExporter)
    /// that only wants [`MetricKind::Upstream`](crate::MetricKind::Upstream).
    pub loadbalancer: Option<Arc<dyn Plugin>>,
}

impl std::fmt::Debug for Hooks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hooks")
            .field(
                "modifiers",
                &self.modifiers.iter().map(|m| m.name()).collect::<Vec<_>>(),
            )
            .field("router", &self.router.as_ref().map(|r| r.name()))
            .field(
                "loadbalancer",
                &self.loadbalancer.as_ref().map(|l| l.name()),
            )
            .finish()
    }
}

/// One snapshot of the hooks, as requests use it.
pub(crate) struct ActiveHooks {
    /// The modifiers, with the proxy's `max_plugin_body`.
    pub(crate) chain: Chain,
    pub(crate) router: Option<HookedPlugin>,
    pub(crate) loadbalancer: Option<HookedPlugin>,
}

impl ActiveHooks {
    fn new(hooks: Hooks, max_plugin_body: usize) -> Self {
        ActiveHooks {
            chain: Chain::new(hooks.modifiers).with_max_body(max_plugin_body),
            router: hooks.router.map(HookedPlugin::new),
            loadbalancer: hooks.loadbalancer.map(HookedPlugin::new),
        }
    }

    #[cfg(test)]
    /// Whether no plugin is called at all.
    pub(crate) fn is_empty(&self) -> bool {
        self.chain.is_empty() && self.router.is_none() && self.loadbalancer.is_none()
    }
}

/// The current snapshot, shared by the request path and every [`HooksSwitch`].
pub(crate) struct SwappableHooks {
    current: ArcSwap<ActiveHooks>,
    /// The proxy's `max_plugin_body`, applied to every new chain.
    max_plugin_body: usize,
}

impl SwappableHooks {
    pub(crate) fn new(hooks: Hooks, max_plugin_body: usize) -> Self {
        SwappableHooks {
            current: ArcSwap::from_pointee(ActiveHooks::new(hooks, max_plugin_body)),
            max_plugin_body,
        }
    }

    /// The current snapshot, cheaply (a guard: keep it only for a quick check, or turn it into
    /// an `Arc` with [`Guard::into_inner`] to keep it across awaits).
    pub(crate) fn load(&self) -> Guard<Arc<ActiveHooks>> {
        self.current.load()
    }

    fn replace(&self, hooks: Hooks) -> Arc<ActiveHooks> {
        let next = ActiveHooks::new(hooks, self.max_plugin_body);
        self.current.swap(Arc::new(next))
    }
}

/// Replaces the hooks of a serving proxy (cheap to clone; from
/// [`BoundProxy::hooks_switch`](crate::BoundProxy::hooks_switch)).
#[derive(Clone)]
pub struct HooksSwitch {
    hooks: Arc<SwappableHooks>,
}

impl std::fmt::Debug for HooksSwitch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HooksSwitch").finish_non_exhaustive()
    }
}

impl HooksSwitch {
    pub(crate) fn new(hooks: Arc<SwappableHooks>) -> Self {
        HooksSwitch { hooks }
    }

    /// Makes new requests use `hooks` (modifiers get the proxy's `max_plugin_body`). Requests
    /// in flight finish with the hooks they started with; the old plugins' handles are dropped
    /// when the last of them ends, which [`ReplacedHooks::released`] waits for (before
    /// stopping a plugin that only the old hooks call).
    pub fn replace(&self, hooks: Hooks) -> ReplacedHooks {
        ReplacedHooks {
            old: Arc::downgrade(&self.hooks.replace(hooks)),
        }
    }
}

/// The hooks a [`HooksSwitch::replace`] took out of service, still used by the requests that
/// started with them.
#[derive(Debug)]
#[must_use = "released() tells when no request uses the old hooks any more"]
pub struct ReplacedHooks {
    old: std::sync::Weak<ActiveHooks>,
}

impl ReplacedHooks {
    /// How often [`released`](Self::released) looks.
    const POLL: std::time::Duration = std::time::Duration::from_millis(10);

    /// Waits until no request uses the old hooks any more, at most `within`; true if none
    /// does. Requests hold them from their arrival until their response head is ready (the
    /// body then streams without plugins).
    pub async fn released(self, within: std::time::Duration) -> bool {
        let deadline = tokio::time::Instant::now() + within;
        while self.old.strong_count() > 0 {
            if tokio::time::Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Self::POLL).await;
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use futures::future::BoxFuture;
    use gatekeeper_rpc::methods::ModifyRequest;

    use super::*;
    use crate::port::{FailurePolicy, HookError, Parsed, RawCall};

    struct Named;

    impl Plugin for Named {
        fn name(&self) -> &str {
            "named"
        }
        fn has_hook(&self, _: &str) -> bool {
            true
        }
        fn failure_policy(&self) -> FailurePolicy {
            FailurePolicy::Open
        }
        fn call_raw(&self, call: RawCall) -> BoxFuture<'static, Result<Parsed, HookError>> {
            let answer = call.answer::<ModifyRequest>(&Default::default());
            Box::pin(async move { answer })
        }
    }

    #[test]
    fn a_replacement_leaves_loaded_snapshots_alone_and_empty_hooks_are_empty() {
        let hooks = Arc::new(SwappableHooks::new(Hooks::default(), 10));
        assert!(hooks.load().is_empty(), "no hooks: the fast path");
        let switch = HooksSwitch::new(hooks.clone());
        let _ = switch.replace(Hooks {
            modifiers: vec![Arc::new(Named)],
            ..Hooks::default()
        });
        let in_flight = Guard::into_inner(hooks.load());
        assert!(!in_flight.is_empty() && in_flight.chain.has_hook("modify_request"));
        assert_eq!(
            in_flight.chain.max_body(),
            10,
            "the proxy's max_plugin_body"
        );
        let _ = switch.replace(Hooks::default());
        assert!(
            hooks.load().is_empty(),
            "no hooks again: the fast path again"
        );
        assert!(!in_flight.is_empty(), "a loaded snapshot keeps its hooks");
    }

    #[tokio::test]
    async fn released_waits_for_the_requests_holding_the_old_hooks() {
        let hooks = Arc::new(SwappableHooks::new(Hooks::default(), 10));
        let switch = HooksSwitch::new(hooks.clone());
        let _ = switch.replace(Hooks {
            modifiers: vec![Arc::new(Named)],
            ..Hooks::default()
        });
        let in_flight = Guard::into_inner(hooks.load());
        let replaced = switch.replace(Hooks::default());
        let waiting = tokio::spawn(replaced.released(std::time::Duration::from_secs(5)));
        tokio::time::sleep(std::time::Duration::from_secs(1)).await;
        assert!(
            !waiting.is_finished(),
            "a request still holds the old hooks"
        );
        drop(in_flight);
        assert!(waiting.await.unwrap());
        // Held past the limit: false.
        let held = Guard::into_inner(hooks.load());
        let replaced = switch.replace(Hooks::default());
        assert!(
            !replaced
                .released(std::time::Duration::from_millis(50))
                .await
        );
        drop(held);
    }
}
