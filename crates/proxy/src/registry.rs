//! The registry of upstreams and their backends.
//!
//! Writers (the manager methods called by upstream plugins) serialize on a mutex, apply a change
//! or a whole batch ([`Registry::apply_batch`]) and publish one new immutable [`Snapshot`] with
//! [`arc_swap::ArcSwap`]. The request path only calls [`Registry::snapshot`], an atomic load: it
//! never takes a lock and never sees a half-applied change or batch. A change costs in proportion
//! to what it changes, not to the registry's size (persistent maps, see `writer`): a snapshot
//! shares everything a change did not touch with the one before.
//!
//! Adding is idempotent: the same upstream or backend again is a no-op, while the same id with
//! different content is a [`RegistryError::Conflict`] (remove it first). Every applied change is
//! sent, in order, to the subscribers of the change feed ([`Registry::subscribe`]); router and
//! loadbalancer plugins are kept in step with it, and [`Snapshot::iter`] / [`Snapshot::replay`]
//! list the whole registry for a plugin that restarted.

#[cfg(test)]
mod batch_tests;
mod entry;
mod health_state;
#[cfg(test)]
mod settings_tests;
mod writer;

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};

use arc_swap::ArcSwap;
use gatekeeper_rpc::codes;
use gatekeeper_rpc::types::{Backend, Upstream};
use tokio::sync::mpsc;

pub use entry::{BackendEntry, InFlight, UpstreamEntry};
pub use health_state::{BackendHealth, HealthState, Transition};

use crate::upstream_settings::{PassivePolicy, UpstreamSettings};
use writer::{Applied, Data, PreparedOp, Published};

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

/// One change of a batch ([`Registry::apply_batch`]): the manager methods as values.
#[derive(Debug, Clone, PartialEq)]
pub enum RegistryOp {
    /// As [`Registry::add_upstream`].
    AddUpstream(Upstream),
    /// As [`Registry::remove_upstream`].
    RemoveUpstream {
        /// The upstream id.
        id: String,
    },
    /// As [`Registry::add_backend`].
    AddBackend {
        /// The upstream id.
        upstream_id: String,
        /// The backend.
        backend: Backend,
    },
    /// As [`Registry::remove_backend`].
    RemoveBackend {
        /// The upstream id.
        upstream_id: String,
        /// The backend id.
        backend_id: String,
    },
}

/// What an applied batch changed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BatchSummary {
    /// Upstreams added.
    pub upstreams_added: usize,
    /// Upstreams removed (with their backends, not counted in `backends_removed`).
    pub upstreams_removed: usize,
    /// Backends added.
    pub backends_added: usize,
    /// Backends removed by `RemoveBackend`.
    pub backends_removed: usize,
    /// Adds of an upstream or backend that was already there, the same.
    pub unchanged: usize,
}

/// One refused change of a batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefusedOp {
    /// Its position in the batch (from 0).
    pub index: usize,
    /// Why it was refused.
    pub error: RegistryError,
}

/// A batch was refused: nothing of it was applied.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{} of {total} changes refused, nothing applied; change {}: {}", .refused.len(), .refused[0].index, .refused[0].error)]
pub struct BatchError {
    /// How many changes the batch had.
    pub total: usize,
    /// The refused changes, in batch order (at least one; at most [`BatchError::MAX_LISTED`]).
    pub refused: Vec<RefusedOp>,
}

impl BatchError {
    /// At most this many refused changes are listed.
    pub const MAX_LISTED: usize = 100;
}

/// An immutable view of the registry, with lookup maps for routing. Persistent maps: cloning a
/// snapshot, or publishing the next one, shares what did not change.
#[derive(Debug, Default, Clone)]
pub struct Snapshot {
    /// Incremented on every published change or batch (0 for the empty initial snapshot).
    pub version: u64,
    /// Upstreams by id, ordered by id.
    pub upstreams: imbl::OrdMap<String, Arc<UpstreamEntry>>,
    /// Prefix segment → the upstreams having it (at most one per listener), ordered by id.
    pub by_prefix: imbl::HashMap<String, Vec<Arc<UpstreamEntry>>>,
    /// Lower-cased hostname (no port) → the upstreams having it, ordered by id.
    pub by_hostname: imbl::HashMap<String, Vec<Arc<UpstreamEntry>>>,
}

impl Snapshot {
    /// The upstream with this id.
    pub fn upstream(&self, id: &str) -> Option<&Arc<UpstreamEntry>> {
        self.upstreams.get(id)
    }

    /// Every upstream (each with its backends), ordered by id.
    pub fn iter(&self) -> impl Iterator<Item = &Arc<UpstreamEntry>> + '_ {
        self.upstreams.values()
    }

    /// How many upstreams there are.
    pub fn len(&self) -> usize {
        self.upstreams.len()
    }

    /// Whether there is no upstream.
    pub fn is_empty(&self) -> bool {
        self.upstreams.is_empty()
    }

    /// The changes that rebuild this snapshot from an empty registry: for each upstream (by
    /// id), `UpstreamAdded` then a `BackendAdded` per backend. Used to bring a restarted router
    /// or loadbalancer plugin up to date.
    pub fn replay(&self) -> Vec<RegistryChange> {
        let mut changes = Vec::new();
        for entry in self.iter() {
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

/// The state behind the writer mutex.
#[derive(Debug, Default)]
struct State {
    version: u64,
    /// The source of truth snapshots are built from.
    data: Data,
    /// The routing maps of the last published snapshot.
    published: Published,
    subscribers: Vec<mpsc::UnboundedSender<RegistryChange>>,
    passive_defaults: PassivePolicy,
}

impl State {
    /// Sends changes to every subscriber, forgetting those that went away.
    fn notify(&mut self, changes: &[RegistryChange]) {
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

/// An upstream as the registry stores it (and as snapshots and subscribers see it): the name
/// defaulted to the id, hostnames lower-cased. Compare with this to tell whether a declaration
/// differs from what is stored.
pub fn stored_form(mut upstream: Upstream) -> Upstream {
    if upstream.name.is_empty() {
        upstream.name = upstream.id.clone();
    }
    for host in &mut upstream.hostnames {
        *host = host.to_ascii_lowercase();
    }
    upstream
}

fn normalize(upstream: Upstream) -> Result<(Upstream, UpstreamSettings), RegistryError> {
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
    for host in &upstream.hostnames {
        if host.is_empty() || host.contains('/') || host.contains(char::is_whitespace) {
            return Err(invalid(&upstream.id, format!("invalid hostname `{host}`")));
        }
    }
    let upstream = stored_form(upstream);
    let settings =
        UpstreamSettings::parse(&upstream).map_err(|reason| invalid(&upstream.id, reason))?;
    Ok((upstream, settings))
}

/// Validates a change and parses its fields (no lock needed).
fn prepare(op: RegistryOp) -> Result<PreparedOp, RegistryError> {
    Ok(match op {
        RegistryOp::AddUpstream(upstream) => {
            let (upstream, settings) = normalize(upstream)?;
            PreparedOp::AddUpstream(upstream, settings)
        }
        RegistryOp::RemoveUpstream { id } => PreparedOp::RemoveUpstream(id),
        RegistryOp::AddBackend {
            upstream_id,
            backend,
        } => PreparedOp::AddBackend(upstream_id, BackendEntry::new(backend)?),
        RegistryOp::RemoveBackend {
            upstream_id,
            backend_id,
        } => PreparedOp::RemoveBackend(upstream_id, backend_id),
    })
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
    /// channel is unbounded (each change is small; a batch sends one per item).
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
            let all: Vec<String> = state.data.upstreams.keys().cloned().collect();
            self.publish(&mut state, all);
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // A poisoned mutex only means a writer panicked; the state is still consistent because
        // every change is validated before it is applied.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Publishes the snapshot with the `dirty` upstreams' entries rebuilt.
    fn publish(&self, state: &mut State, dirty: impl IntoIterator<Item = String>) {
        state.version += 1;
        let State {
            version,
            data,
            published,
            passive_defaults,
            ..
        } = state;
        let snapshot = published.update(data, dirty, *passive_defaults, *version);
        self.current.store(Arc::new(snapshot));
    }

    /// Applies one change; when something changed, publishes a new snapshot and then sends the
    /// change to subscribers (still under the lock, so they arrive in order).
    fn write(&self, op: RegistryOp) -> Result<(), RegistryError> {
        let op = prepare(op)?;
        let mut state = self.lock();
        let (mut changes, mut dirty) = (Vec::new(), BTreeSet::new());
        if state.data.apply(op, &mut changes, &mut dirty)? == Applied::Changed {
            self.publish(&mut state, dirty);
            state.notify(&changes);
        }
        Ok(())
    }

    /// Applies many changes at once, in order, as one: either all of them (one snapshot
    /// published, their changes sent to subscribers in order) or, when any is refused, none
    /// (the error lists every refused change, up to [`BatchError::MAX_LISTED`]; later changes
    /// are checked against the state the accepted earlier ones would have left). Each change
    /// behaves as the method of the same name. An empty batch changes nothing.
    pub fn apply_batch(&self, ops: Vec<RegistryOp>) -> Result<BatchSummary, BatchError> {
        let total = ops.len();
        let mut refused = Vec::new();
        let mut prepared = Vec::with_capacity(total);
        for (index, op) in ops.into_iter().enumerate() {
            match prepare(op) {
                Ok(op) => prepared.push((index, op)),
                Err(error) if refused.len() < BatchError::MAX_LISTED => {
                    refused.push(RefusedOp { index, error })
                }
                Err(_) => {}
            }
        }
        let mut state = self.lock();
        let saved = state.data.clone();
        let (mut changes, mut dirty) = (Vec::new(), BTreeSet::new());
        let mut summary = BatchSummary::default();
        for (index, op) in prepared {
            let counter = match &op {
                PreparedOp::AddUpstream(..) => &mut summary.upstreams_added,
                PreparedOp::RemoveUpstream(_) => &mut summary.upstreams_removed,
                PreparedOp::AddBackend(..) => &mut summary.backends_added,
                PreparedOp::RemoveBackend(..) => &mut summary.backends_removed,
            };
            match state.data.apply(op, &mut changes, &mut dirty) {
                Ok(Applied::Changed) => *counter += 1,
                Ok(Applied::Unchanged) => summary.unchanged += 1,
                Err(error) => {
                    if refused.len() < BatchError::MAX_LISTED {
                        refused.push(RefusedOp { index, error });
                    }
                }
            }
        }
        if !refused.is_empty() {
            state.data = saved;
            refused.sort_by_key(|r| r.index);
            return Err(BatchError { total, refused });
        }
        if !changes.is_empty() {
            self.publish(&mut state, dirty);
            state.notify(&changes);
        }
        Ok(summary)
    }

    /// Adds an upstream. Adding an identical upstream again is a no-op; an upstream with the
    /// same id but different content is a [`RegistryError::Conflict`] (remove it first), as is a
    /// prefix or hostname already used by another upstream on an overlapping set of listeners.
    /// An unknown `balancer` or invalid health settings are a [`RegistryError::InvalidUpstream`].
    pub fn add_upstream(&self, upstream: Upstream) -> Result<(), RegistryError> {
        self.write(RegistryOp::AddUpstream(upstream))
    }

    /// Removes an upstream and its backends (subscribers get a `BackendRemoved` for each
    /// backend, then `UpstreamRemoved`).
    pub fn remove_upstream(&self, id: &str) -> Result<(), RegistryError> {
        self.write(RegistryOp::RemoveUpstream { id: id.to_owned() })
    }

    /// Adds a backend to an upstream. Adding an identical backend again is a no-op; a backend
    /// with the same id but a different address, `weight` or `extra` is a [`RegistryError::Conflict`].
    pub fn add_backend(&self, upstream_id: &str, backend: Backend) -> Result<(), RegistryError> {
        self.write(RegistryOp::AddBackend {
            upstream_id: upstream_id.to_owned(),
            backend,
        })
    }

    /// Removes a backend from an upstream.
    pub fn remove_backend(&self, upstream_id: &str, backend_id: &str) -> Result<(), RegistryError> {
        self.write(RegistryOp::RemoveBackend {
            upstream_id: upstream_id.to_owned(),
            backend_id: backend_id.to_owned(),
        })
    }
}

#[cfg(test)]
mod tests;
