//! What flows beside requests: registry changes sent to the router and loadbalancer plugins (and
//! replayed to them before they are ready after every start), and registry changes and plugin
//! lifecycle events recorded as event metrics.

use std::sync::Arc;

use futures::future::BoxFuture;
use gatekeeper_plugin_host::{BeforeReady, InstanceConnection, PluginEvent, PluginEventKind};
use gatekeeper_proxy::{Metrics, Registry, RegistryChange};
use gatekeeper_rpc::methods::{
    AddBackend, AddBackendParams, AddUpstream, AddUpstreamParams, Method, RemoveBackend,
    RemoveBackendParams, RemoveUpstream, RemoveUpstreamParams,
};
use gatekeeper_rpc::metrics::events;
use gatekeeper_rpc::types::Object;
use gatekeeper_rpc::CallError;
use serde_json::json;
use tokio::sync::mpsc::UnboundedReceiver;

/// Which registry changes a plugin type follows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Follows {
    /// Upstreams (router plugins).
    Upstreams,
    /// Backends (loadbalancer plugins).
    Backends,
}

impl Follows {
    fn wants(self, change: &RegistryChange) -> bool {
        match self {
            Follows::Upstreams => matches!(
                change,
                RegistryChange::UpstreamAdded(_) | RegistryChange::UpstreamRemoved { .. }
            ),
            Follows::Backends => matches!(
                change,
                RegistryChange::BackendAdded { .. } | RegistryChange::BackendRemoved { .. }
            ),
        }
    }
}

/// One registry change as the call that tells a plugin about it.
enum Call {
    AddUpstream(AddUpstreamParams),
    RemoveUpstream(RemoveUpstreamParams),
    AddBackend(AddBackendParams),
    RemoveBackend(RemoveBackendParams),
}

impl Call {
    fn of(change: RegistryChange) -> Call {
        match change {
            RegistryChange::UpstreamAdded(upstream) => {
                Call::AddUpstream(AddUpstreamParams { upstream })
            }
            RegistryChange::UpstreamRemoved { id } => {
                Call::RemoveUpstream(RemoveUpstreamParams { id })
            }
            RegistryChange::BackendAdded {
                upstream_id,
                backend,
            } => Call::AddBackend(AddBackendParams {
                upstream_id,
                backend,
            }),
            RegistryChange::BackendRemoved {
                upstream_id,
                backend_id,
            } => Call::RemoveBackend(RemoveBackendParams {
                upstream_id,
                backend_id,
            }),
        }
    }

    fn method(&self) -> &'static str {
        match self {
            Call::AddUpstream(_) => AddUpstream::NAME,
            Call::RemoveUpstream(_) => RemoveUpstream::NAME,
            Call::AddBackend(_) => AddBackend::NAME,
            Call::RemoveBackend(_) => RemoveBackend::NAME,
        }
    }

    /// Sends it on one instance's control connection (the replay before ready).
    async fn send_to_instance(&self, instance: &InstanceConnection) -> Result<(), CallError> {
        match self {
            Call::AddUpstream(p) => instance.call::<AddUpstream>(p).await.map(drop),
            Call::RemoveUpstream(p) => instance.call::<RemoveUpstream>(p).await.map(drop),
            Call::AddBackend(p) => instance.call::<AddBackend>(p).await.map(drop),
            Call::RemoveBackend(p) => instance.call::<RemoveBackend>(p).await.map(drop),
        }
    }
}

/// Before a router or loadbalancer instance is ready: send it every current upstream (or
/// backend), so it never routes with a partial view; from then on, send it every change, in
/// order, until its connection closes. The snapshot and the feed of changes after it come from
/// one [`Registry::subscribe_with_snapshot`] call, so no change falls in between (a change made
/// while a restarted instance is being replayed still reaches it).
pub struct RegistryReplay {
    registry: Arc<Registry>,
    follows: Follows,
}

impl RegistryReplay {
    /// Replays `registry` to plugins that follow `follows`.
    pub fn new(registry: Arc<Registry>, follows: Follows) -> Self {
        RegistryReplay { registry, follows }
    }
}

impl BeforeReady for RegistryReplay {
    fn before_ready(
        &self,
        instance: InstanceConnection,
    ) -> BoxFuture<'static, Result<(), CallError>> {
        let (snapshot, changes) = self.registry.subscribe_with_snapshot();
        let follows = self.follows;
        let calls: Vec<Call> = snapshot
            .replay()
            .into_iter()
            .filter(|change| follows.wants(change))
            .map(Call::of)
            .filter(|call| instance.has_hook(call.method()))
            .collect();
        Box::pin(async move {
            let sends = calls.iter().map(|call| call.send_to_instance(&instance));
            futures::future::try_join_all(sends).await?;
            tokio::spawn(follow_for_instance(instance, changes, follows));
            Ok(())
        })
    }
}

/// Sends one instance every later change it follows, in order, until its connection closes.
async fn follow_for_instance(
    instance: InstanceConnection,
    mut changes: UnboundedReceiver<RegistryChange>,
    follows: Follows,
) {
    loop {
        let change = tokio::select! {
            () = instance.closed() => return,
            change = changes.recv() => match change {
                Some(change) => change,
                None => return,
            },
        };
        if !follows.wants(&change) {
            continue;
        }
        let call = Call::of(change);
        if !instance.has_hook(call.method()) {
            continue;
        }
        match call.send_to_instance(&instance).await {
            Ok(()) => {}
            Err(CallError::Closed { .. }) => return,
            Err(error) => {
                tracing::warn!(plugin = %instance.plugin(), instance = instance.instance(), method = call.method(), %error, "registry change not delivered");
            }
        }
    }
}

fn event_attributes(change: &RegistryChange) -> (&'static str, Object) {
    let (name, value) = match change {
        RegistryChange::UpstreamAdded(u) => (events::UPSTREAM_ADDED, json!({ "upstream": u.id })),
        RegistryChange::UpstreamRemoved { id } => {
            (events::UPSTREAM_REMOVED, json!({ "upstream": id }))
        }
        RegistryChange::BackendAdded {
            upstream_id,
            backend,
        } => (
            events::BACKEND_ADDED,
            json!({ "upstream": upstream_id, "backend": backend.id, "address": backend.address }),
        ),
        RegistryChange::BackendRemoved {
            upstream_id,
            backend_id,
        } => (
            events::BACKEND_REMOVED,
            json!({ "upstream": upstream_id, "backend": backend_id }),
        ),
    };
    (name, value.as_object().cloned().unwrap_or_default())
}

/// Up to this many changes arriving together are logged one line each at INFO; a larger burst
/// (a batch) is logged as one INFO line with counts, its changes at DEBUG.
const LOGGED_ONE_BY_ONE: usize = 10;

/// Records every registry change as an event metric (and a log line) until the registry is
/// dropped.
pub async fn follow_registry(mut changes: UnboundedReceiver<RegistryChange>, metrics: Metrics) {
    let mut burst = Vec::new();
    while changes.recv_many(&mut burst, 100_000).await > 0 {
        let one_by_one = burst.len() <= LOGGED_ONE_BY_ONE;
        let mut counts = std::collections::BTreeMap::<&'static str, usize>::new();
        for change in burst.drain(..) {
            let (name, attributes) = event_attributes(&change);
            if one_by_one {
                tracing::info!(event = name, details = %serde_json::Value::Object(attributes.clone()), "registry changed");
            } else {
                tracing::debug!(event = name, details = %serde_json::Value::Object(attributes.clone()), "registry changed");
                *counts.entry(name).or_default() += 1;
            }
            metrics.record_event(name, attributes);
        }
        if !counts.is_empty() {
            tracing::info!(changes = ?counts, "registry changed (many changes at once; each at debug level)");
        }
    }
}

/// Records plugin lifecycle events as event metrics until the host is dropped.
pub async fn follow_plugins(mut plugin_events: UnboundedReceiver<PluginEvent>, metrics: Metrics) {
    while let Some(PluginEvent {
        plugin,
        instance,
        kind,
    }) = plugin_events.recv().await
    {
        let (name, details) = match kind {
            PluginEventKind::Started { pid } => (events::PLUGIN_STARTED, json!({ "pid": pid })),
            PluginEventKind::Restarted { restarts, pid } => (
                events::PLUGIN_RESTARTED,
                json!({ "restarts": restarts, "pid": pid }),
            ),
            PluginEventKind::TakenOver { restarts, pid } => (
                events::PLUGIN_RESTARTED,
                json!({ "restarts": restarts, "pid": pid, "standby": true }),
            ),
            PluginEventKind::Recycled { reason, pid } => (
                events::PLUGIN_RESTARTED,
                json!({ "recycled": reason, "pid": pid }),
            ),
            PluginEventKind::Failed { reason } => {
                (events::PLUGIN_FAILED, json!({ "reason": reason }))
            }
            PluginEventKind::HeartbeatMissed { missed } => {
                (events::HEARTBEAT_MISSED, json!({ "missed": missed }))
            }
            PluginEventKind::Stopped => (events::PLUGIN_STOPPED, json!({})),
        };
        let mut attributes = details.as_object().cloned().unwrap_or_default();
        attributes.insert("plugin".into(), plugin.into());
        attributes.insert("instance".into(), instance.into());
        metrics.record_event(name, attributes);
    }
}
