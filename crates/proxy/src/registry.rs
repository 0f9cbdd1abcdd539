//! The registry of upstreams and their backends.
//!
//! Writers (the manager methods called by upstream plugins) serialize on a mutex, build a new
//! immutable [`Snapshot`] and publish it with [`arc_swap::ArcSwap`]. The request path only calls
//! [`Registry::snapshot`], an atomic load: it never takes a lock and never sees a half-applied
//! change.
//!
//! Adding is idempotent: the same upstream or backend again is a no-op, while the same id with
//! different content is a [`RegistryError::Conflict`] (remove it first). Every applied change is
//! sent, in order, to the subscribers of the change feed ([`Registry::subscribe`]); router and
//! loadbalancer plugins are kept in step with it, and [`Snapshot::iter`] / [`Snapshot::replay`]
//! list the whole registry for a plugin that restarted.

mod entry;
mod health_state;
#[cfg(test)]
mod settings_tests;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::AtomicUsize;
use std::sync::{Arc, Mutex};

use arc_swap::ArcSwap;
use gatekeeper_rpc::codes;
use gatekeeper_rpc::types::{Backend, Upstream};
use tokio::sync::mpsc;

pub use entry::{BackendEntry, InFlight, UpstreamEntry};
pub use health_state::{BackendHealth, HealthState, Transition};

use crate::upstream_settings::{PassivePolicy, UpstreamSettings};

/// Why a registry change was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RegistryError {
    /// The upstream named in the call does not exist.
    #[error("unknown upstream `{0}`")]
    UnknownUpstream(String),
    /// The backend named in the call does not exist in its upstream.
    #[error("unknown backend `{backend}` in upstream `{upstream}`")]
    UnknownBackend {
        /// The upstream id.
        upstream: String,
        /// The backend id.
        backend: String,
    },
    /// A field of the upstream has a value that cannot be used.
    #[error("invalid upstream `{id}`: {reason}")]
    InvalidUpstream {
        /// The upstream id (may be empty).
        id: String,
        /// What is wrong.
        reason: String,
    },
    /// A field of the backend (id or address) has a value that cannot be used.
    #[error("invalid backend `{id}` address `{address}`: {reason}")]
    InvalidAddress {
        /// The backend id.
        id: String,
        /// The address as given.
        address: String,
        /// What is wrong.
        reason: String,
    },
    /// A field of the backend other than its address (e.g. a weight of 0) cannot be used.
    #[error("invalid backend `{id}`: {reason}")]
    InvalidBackend {
        /// The backend id.
        id: String,
        /// What is wrong.
        reason: String,
    },
    /// A prefix or hostname is already claimed by another upstream on an overlapping set of
    /// listeners, or the id is already used by an upstream (or, with `what` naming a backend,
    /// by a backend of the upstream) with different content.
    #[error("upstream `{id}`: {what} is already used by {other}")]
    Conflict {
        /// The upstream being added.
        id: String,
        /// The contested route, e.g. ``prefix `api` ``.
        what: String,
        /// Who already has it, e.g. ``upstream `web` ``.
        other: String,
    },
}

impl RegistryError {
    /// The JSON-RPC error code (from [`gatekeeper_rpc::codes`]) a manager method answers with.
    pub fn code(&self) -> i32 {
        match self {
            RegistryError::UnknownUpstream(_) => codes::UNKNOWN_UPSTREAM,
            RegistryError::UnknownBackend { .. } => codes::UNKNOWN_BACKEND,
            RegistryError::Conflict { .. } => codes::CONFLICT,
            RegistryError::InvalidUpstream { .. } | RegistryError::InvalidAddress { .. } => {
                codes::INVALID_VALUE
            }
            RegistryError::InvalidBackend { .. } => codes::INVALID_VALUE,
        }
    }
}

/// One change of the registry, as sent to subscribers ([`Registry::subscribe`]).
#[derive(Debug, Clone, PartialEq)]
pub enum RegistryChange {
    /// An upstream was added (as stored: hostnames lower-cased, name defaulted to the id).
    UpstreamAdded(Upstream),
    /// An upstream was removed (after a `BackendRemoved` for each of its backends).
    UpstreamRemoved {
        /// The upstream id.
        id: String,
    },
    /// A backend was added to an upstream.
    BackendAdded {
        /// The upstream id.
        upstream_id: String,
        /// The backend.
        backend: Backend,
    },
    /// A backend was removed from an upstream.
    BackendRemoved {
        /// The upstream id.
        upstream_id: String,
        /// The backend id.
        backend_id: String,
    },
}

/// An immutable view of the registry, with lookup maps for routing.
#[derive(Debug, Default)]
pub struct Snapshot {
    /// Incremented on every published change (0 for the empty initial snapshot).
    pub version: u64,
    /// Upstreams by id.
    pub upstreams: HashMap<String, Arc<UpstreamEntry>>,
    /// Prefix segment → the upstreams having it (at most one per listener), ordered by id.
    pub by_prefix: HashMap<String, Vec<Arc<UpstreamEntry>>>,
    /// Lower-cased hostname (no port) → the upstreams having it, ordered by id.
    pub by_hostname: HashMap<String, Vec<Arc<UpstreamEntry>>>,
    ordered: Vec<Arc<UpstreamEntry>>,
}

impl Snapshot {
    /// The upstream with this id.
    pub fn upstream(&self, id: &str) -> Option<&Arc<UpstreamEntry>> {
        self.upstreams.get(id)
    }

    /// Every upstream (each with its backends), ordered by id.
    pub fn iter(&self) -> impl Iterator<Item = &Arc<UpstreamEntry>> + '_ {
        self.ordered.iter()
    }

    /// The changes that rebuild this snapshot from an empty registry: for each upstream (by
    /// id), `UpstreamAdded` then a `BackendAdded` per backend. Used to bring a restarted router
    /// or loadbalancer plugin up to date.
    pub fn replay(&self) -> Vec<RegistryChange> {
        let mut changes = Vec::new();
        for entry in &self.ordered {
            changes.push(RegistryChange::UpstreamAdded(entry.upstream.clone()));
            for b in &entry.backends {
                changes.push(RegistryChange::BackendAdded {
                    upstream_id: entry.upstream.id.clone(),
                    backend: b.backend.clone(),
                });
            }
        }
        changes
    }
}

/// An upstream in the writer state.
#[derive(Debug)]
struct UpstreamState {
    upstream: Upstream,
    /// The upstream's fields, parsed.
    settings: UpstreamSettings,
    round_robin: Arc<AtomicUsize>,
    backends: BTreeMap<String, Arc<BackendEntry>>,
    /// The entry snapshots share, built on the first snapshot after this upstream changed
    /// (`None` since then), so that a change rebuilds only its own upstream's entry.
    entry: Option<Arc<UpstreamEntry>>,
}

impl UpstreamState {
    /// The snapshots' entry of this upstream (built once per change).
    fn entry(&mut self, passive_defaults: PassivePolicy) -> Arc<UpstreamEntry> {
        if let Some(entry) = &self.entry {
            return entry.clone();
        }
        let entry = Arc::new(UpstreamEntry::with_settings(
            self.upstream.clone(),
            self.backends.values().cloned().collect(),
            &self.settings,
            passive_defaults,
            self.round_robin.clone(),
        ));
        self.entry = Some(entry.clone());
        entry
    }
}

/// The mutable state behind the writer mutex: the source of truth snapshots are built from.
#[derive(Debug, Default)]
struct State {
    version: u64,
    upstreams: BTreeMap<String, UpstreamState>,
    subscribers: Vec<mpsc::UnboundedSender<RegistryChange>>,
    passive_defaults: PassivePolicy,
    /// (upstream id, backend id) of drained backends that were removed: an operator's drain
    /// holds when the backend comes back (an upstream plugin changing it removes and adds it).
    drained_removed: HashSet<(String, String)>,
}

impl State {
    /// Remembers the drain of a backend being removed.
    fn forget_backend(&mut self, upstream_id: &str, entry: &BackendEntry) {
        if entry.is_drained() {
            self.drained_removed
                .insert((upstream_id.to_owned(), entry.backend.id.clone()));
        }
    }

    /// The snapshot of the current state: the entries of unchanged upstreams are reused, the
    /// lookup maps are built anew.
    fn build(&mut self) -> Snapshot {
        let mut snap = Snapshot {
            version: self.version,
            upstreams: HashMap::with_capacity(self.upstreams.len()),
            ordered: Vec::with_capacity(self.upstreams.len()),
            ..Snapshot::default()
        };
        let passive_defaults = self.passive_defaults;
        for (id, u) in &mut self.upstreams {
            let entry = u.entry(passive_defaults);
            for prefix in &u.upstream.prefixes {
                snap.by_prefix
                    .entry(prefix.clone())
                    .or_default()
                    .push(entry.clone());
            }
            for host in &u.upstream.hostnames {
                snap.by_hostname
                    .entry(host.clone())
                    .or_default()
                    .push(entry.clone());
            }
            snap.upstreams.insert(id.clone(), entry.clone());
            snap.ordered.push(entry);
        }
        snap
    }

    /// Sends changes to every subscriber, forgetting those that went away.
    fn publish(&mut self, changes: &[RegistryChange]) {
        self.subscribers
            .retain(|s| changes.iter().all(|c| s.send(c.clone()).is_ok()));
    }
}

/// Upstreams and backends, readable without locks through [`Registry::snapshot`].
#[derive(Debug, Default)]
pub struct Registry {
    current: ArcSwap<Snapshot>,
    state: Mutex<State>,
}

fn overlap(a: &[String], b: &[String]) -> bool {
    a.is_empty() || b.is_empty() || a.iter().any(|x| b.contains(x))
}

fn normalize(mut upstream: Upstream) -> Result<(Upstream, UpstreamSettings), RegistryError> {
    let invalid = |id: &str, reason: String| RegistryError::InvalidUpstream {
        id: id.to_string(),
        reason,
    };
    if upstream.id.is_empty() {
        return Err(invalid("", "empty upstream id".into()));
    }
    for prefix in &upstream.prefixes {
        if prefix.is_empty() || prefix.contains('/') {
            return Err(invalid(
                &upstream.id,
                format!("prefix `{prefix}` must be one non-empty path segment without '/'"),
            ));
        }
    }
    for host in &mut upstream.hostnames {
        if host.is_empty() || host.contains('/') || host.contains(char::is_whitespace) {
            return Err(invalid(&upstream.id, format!("invalid hostname `{host}`")));
        }
        *host = host.to_ascii_lowercase();
    }
    let settings =
        UpstreamSettings::parse(&upstream).map_err(|reason| invalid(&upstream.id, reason))?;
    if upstream.name.is_empty() {
        upstream.name = upstream.id.clone();
    }
    Ok((upstream, settings))
}

/// The conflict of `upstream` with another upstream's prefix or hostname, if any.
fn route_conflict(state: &State, upstream: &Upstream) -> Option<RegistryError> {
    for other in state.upstreams.values().map(|u| &u.upstream) {
        if other.id == upstream.id || !overlap(&upstream.protocols, &other.protocols) {
            continue;
        }
        let clash = upstream
            .prefixes
            .iter()
            .find(|p| other.prefixes.contains(p))
            .map(|p| format!("prefix `{p}`"))
            .or_else(|| {
                upstream
                    .hostnames
                    .iter()
                    .find(|h| other.hostnames.contains(h))
                    .map(|h| format!("hostname `{h}`"))
            });
        if let Some(what) = clash {
            return Some(RegistryError::Conflict {
                id: upstream.id.clone(),
                what,
                other: format!("upstream `{}`", other.id),
            });
        }
    }
    None
}

impl Registry {
    /// An empty registry.
    pub fn new() -> Self {
        Self::default()
    }

    /// The current snapshot: an atomic load, no lock.
    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.current.load_full()
    }

    /// A feed of every later change, in the order they were applied. Several subscribers may
    /// exist; one that drops its receiver is forgotten. Changes are never coalesced, and the
    /// channel is unbounded (registry changes are rare and small).
    pub fn subscribe(&self) -> mpsc::UnboundedReceiver<RegistryChange> {
        self.subscribe_with_snapshot().1
    }

    /// Like [`subscribe`](Self::subscribe), together with the snapshot the feed starts from:
    /// every change after it, and none before, arrives on the receiver (no gap, no duplicate).
    pub fn subscribe_with_snapshot(
        &self,
    ) -> (Arc<Snapshot>, mpsc::UnboundedReceiver<RegistryChange>) {
        let mut state = self.lock();
        let (tx, rx) = mpsc::unbounded_channel();
        state.subscribers.push(tx);
        (self.snapshot(), rx)
    }

    /// Sets the passive health settings of upstreams that leave them out (the proxy's
    /// `passive_health_failures` and `passive_health_cooldown`) and publishes a snapshot using
    /// them (no change is sent to subscribers).
    pub fn set_passive_health_defaults(&self, defaults: PassivePolicy) {
        let mut state = self.lock();
        if state.passive_defaults != defaults {
            state.passive_defaults = defaults;
            for upstream in state.upstreams.values_mut() {
                upstream.entry = None;
            }
            self.current.store(Arc::new(state.build()));
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // A poisoned mutex only means a writer panicked; the state is still consistent because
        // every change is validated before it is applied.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Applies `f` under the writer lock; when it reports changes, publishes a new snapshot and
    /// then sends the changes to subscribers (still under the lock, so they arrive in order).
    fn write(
        &self,
        f: impl FnOnce(&mut State) -> Result<Vec<RegistryChange>, RegistryError>,
    ) -> Result<(), RegistryError> {
        let mut state = self.lock();
        let changes = f(&mut state)?;
        if !changes.is_empty() {
            state.version += 1;
            self.current.store(Arc::new(state.build()));
            state.publish(&changes);
        }
        Ok(())
    }

    /// Adds an upstream. Adding an identical upstream again is a no-op; an upstream with the
    /// same id but different content is a [`RegistryError::Conflict`] (remove it first), as is a
    /// prefix or hostname already used by another upstream on an overlapping set of listeners.
    /// An unknown `balancer` or invalid health settings are a [`RegistryError::InvalidUpstream`].
    pub fn add_upstream(&self, upstream: Upstream) -> Result<(), RegistryError> {
        let (upstream, settings) = normalize(upstream)?;
        self.write(|state| {
            if let Some(existing) = state.upstreams.get(&upstream.id) {
                if existing.upstream == upstream {
                    return Ok(Vec::new());
                }
                return Err(RegistryError::Conflict {
                    id: upstream.id.clone(),
                    what: "the id".into(),
                    other: "an upstream with different content (remove it first)".into(),
                });
            }
            if let Some(conflict) = route_conflict(state, &upstream) {
                return Err(conflict);
            }
            state.upstreams.insert(
                upstream.id.clone(),
                UpstreamState {
                    upstream: upstream.clone(),
                    settings,
                    round_robin: Arc::default(),
                    backends: BTreeMap::new(),
                    entry: None,
                },
            );
            Ok(vec![RegistryChange::UpstreamAdded(upstream)])
        })
    }

    /// Removes an upstream and its backends (subscribers get a `BackendRemoved` for each
    /// backend, then `UpstreamRemoved`).
    pub fn remove_upstream(&self, id: &str) -> Result<(), RegistryError> {
        self.write(|state| {
            let Some(removed) = state.upstreams.remove(id) else {
                return Err(RegistryError::UnknownUpstream(id.to_string()));
            };
            for entry in removed.backends.values() {
                state.forget_backend(id, entry);
            }
            let mut changes: Vec<RegistryChange> = removed
                .backends
                .into_keys()
                .map(|backend_id| RegistryChange::BackendRemoved {
                    upstream_id: id.to_string(),
                    backend_id,
                })
                .collect();
            changes.push(RegistryChange::UpstreamRemoved { id: id.to_string() });
            Ok(changes)
        })
    }

    /// Adds a backend to an upstream. Adding an identical backend again is a no-op; a backend
    /// with the same id but a different address, `weight` or `extra` is a [`RegistryError::Conflict`].
    pub fn add_backend(&self, upstream_id: &str, backend: Backend) -> Result<(), RegistryError> {
        let entry = BackendEntry::new(backend)?;
        self.write(|state| {
            let Some(upstream) = state.upstreams.get_mut(upstream_id) else {
                return Err(RegistryError::UnknownUpstream(upstream_id.to_string()));
            };
            if let Some(existing) = upstream.backends.get(&entry.backend.id) {
                if existing.backend == entry.backend {
                    return Ok(Vec::new());
                }
                return Err(RegistryError::Conflict {
                    id: upstream_id.to_string(),
                    what: format!("backend id `{}`", entry.backend.id),
                    other: "a backend with a different address, weight or extra (remove it first)"
                        .into(),
                });
            }
            let backend = entry.backend.clone();
            let entry = entry.with_connection_limit(upstream.settings.max_connections_per_backend);
            let key = (upstream_id.to_owned(), backend.id.clone());
            if state.drained_removed.remove(&key) {
                entry.set_drained(true);
            }
            upstream
                .backends
                .insert(entry.backend.id.clone(), Arc::new(entry));
            upstream.entry = None;
            Ok(vec![RegistryChange::BackendAdded {
                upstream_id: upstream_id.to_string(),
                backend,
            }])
        })
    }

    /// Removes a backend from an upstream.
    pub fn remove_backend(&self, upstream_id: &str, backend_id: &str) -> Result<(), RegistryError> {
        self.write(|state| {
            let Some(upstream) = state.upstreams.get_mut(upstream_id) else {
                return Err(RegistryError::UnknownUpstream(upstream_id.to_string()));
            };
            let Some(removed) = upstream.backends.remove(backend_id) else {
                return Err(RegistryError::UnknownBackend {
                    upstream: upstream_id.to_string(),
                    backend: backend_id.to_string(),
                });
            };
            upstream.entry = None;
            state.forget_backend(upstream_id, &removed);
            Ok(vec![RegistryChange::BackendRemoved {
                upstream_id: upstream_id.to_string(),
                backend_id: backend_id.to_string(),
            }])
        })
    }
}

#[cfg(test)]
mod tests;
