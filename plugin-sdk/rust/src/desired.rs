//! The proxy-side state an upstream plugin wants (its upstreams, each with its backends) and the
//! `apply_batch` changes that turn one such state into another, for plugins that follow an
//! external source (a file, a key-value store, a service registry).
//!
//! Keep the state the proxy last accepted; when the source changes, build the new
//! [`DesiredState`] and either
//!
//! - push it whole: [`DesiredState::whole_batch`] with `replace: true` (the proxy works out the
//!   difference itself; simplest, and right after a restart, when the plugin does not know what
//!   the proxy holds), or
//! - push only the difference: [`DesiredState::changes_to`] without `replace` (smaller batches
//!   for large states), or use it to tell whether anything changed at all (empty) and to log
//!   what.
//!
//! The registry refuses to replace an upstream or backend in place (an existing id with other
//! content is a conflict, `-32011`), so a changed one is removed and added again. The changes
//! come in an order that avoids conflicts and gaps:
//!
//! 1. `remove_upstream` for upstreams that are gone or whose fields changed (first, so a prefix
//!    or hostname they held is free for an upstream added below);
//! 2. `remove_backend` for backends of kept upstreams whose id stays but whose content changed;
//! 3. `add_upstream` for new and changed upstreams, each followed by `add_backend` for all its
//!    backends;
//! 4. `add_backend` for new and changed backends of kept upstreams;
//! 5. `remove_backend` for backends of kept upstreams that are gone (after the additions, so an
//!    upstream whose only backend is replaced never has none).
//!
//! Upstreams are kept by id (changes list them in id order); backends by id within their
//! upstream, in the order they were inserted (the order they are added to the proxy in), but
//! that order does not count: two states that differ only in it are equal and need no change.
//!
//! # Example
//!
//! ```
//! use gatekeeper_plugin_sdk::desired::{DesiredState, DesiredUpstream};
//! use gatekeeper_plugin_sdk::{Backend, Upstream};
//!
//! let backend = |id: &str| Backend {
//!     id: id.into(),
//!     address: format!("http://10.0.0.{id}:80"),
//!     weight: None,
//!     extra: Default::default(),
//! };
//! let api = Upstream { id: "api".into(), prefixes: vec!["api".into()], ..Upstream::default() };
//! let applied: DesiredState =
//!     [DesiredUpstream::with_backends(api.clone(), [backend("1")])].into_iter().collect();
//! let new: DesiredState =
//!     [DesiredUpstream::with_backends(api, [backend("2")])].into_iter().collect();
//!
//! // For `manager.apply_batch(changes, false)`: the new backend first, the old one last.
//! let changes: Vec<String> = applied.changes_to(&new).iter().map(|c| c.to_string()).collect();
//! assert_eq!(
//!     changes,
//!     ["add_backend `2` (http://10.0.0.2:80) to `api`", "remove_backend `1` from `api`"]
//! );
//! // For `manager.apply_batch(changes, true)`: the upstream, then its backend.
//! assert_eq!(new.whole_batch().len(), 2);
//! assert!(new.changes_to(&new).is_empty());
//! ```

use std::collections::BTreeMap;

use gatekeeper_rpc::methods::BatchChange;
use gatekeeper_rpc::types::{Backend, Upstream};
use indexmap::IndexMap;

/// One upstream as the plugin wants it, with its backends by id.
#[derive(Debug, Clone, PartialEq)]
pub struct DesiredUpstream {
    upstream: Upstream,
    /// By backend id, in insertion order; equality ignores the order.
    backends: IndexMap<String, Backend>,
}

impl DesiredUpstream {
    /// `upstream` without backends.
    pub fn new(upstream: Upstream) -> Self {
        DesiredUpstream {
            upstream,
            backends: IndexMap::new(),
        }
    }

    /// `upstream` with `backends`, in their order; a backend whose id came before replaces the
    /// earlier one (see [`insert_backend`](Self::insert_backend)).
    pub fn with_backends(upstream: Upstream, backends: impl IntoIterator<Item = Backend>) -> Self {
        let mut desired = DesiredUpstream::new(upstream);
        for backend in backends {
            desired.insert_backend(backend);
        }
        desired
    }

    /// The upstream's id.
    pub fn id(&self) -> &str {
        &self.upstream.id
    }

    /// The upstream (without backends), as `add_upstream` takes it.
    pub fn upstream(&self) -> &Upstream {
        &self.upstream
    }

    /// The backends, in insertion order.
    pub fn backends(&self) -> impl ExactSizeIterator<Item = &Backend> + '_ {
        self.backends.values()
    }

    /// The backend with id `id`.
    pub fn backend(&self, id: &str) -> Option<&Backend> {
        self.backends.get(id)
    }

    /// Adds `backend`, or replaces the one with its id (keeping that one's place); returns the
    /// replaced one.
    pub fn insert_backend(&mut self, backend: Backend) -> Option<Backend> {
        self.backends.insert(backend.id.clone(), backend)
    }

    /// Removes the backend with id `id` (the others keep their order); returns it.
    pub fn remove_backend(&mut self, id: &str) -> Option<Backend> {
        self.backends.shift_remove(id)
    }
}

/// Every upstream a plugin wants the proxy to have from it, by id.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct DesiredState {
    upstreams: BTreeMap<String, DesiredUpstream>,
}

impl DesiredState {
    /// No upstreams.
    pub fn new() -> Self {
        DesiredState::default()
    }

    /// Adds `upstream`, or replaces the one with its id; returns the replaced one.
    pub fn insert(&mut self, upstream: DesiredUpstream) -> Option<DesiredUpstream> {
        self.upstreams.insert(upstream.id().to_owned(), upstream)
    }

    /// Removes the upstream with id `id`; returns it.
    pub fn remove(&mut self, id: &str) -> Option<DesiredUpstream> {
        self.upstreams.remove(id)
    }

    /// The upstream with id `id`.
    pub fn get(&self, id: &str) -> Option<&DesiredUpstream> {
        self.upstreams.get(id)
    }

    /// The upstreams, by id.
    pub fn upstreams(&self) -> impl ExactSizeIterator<Item = &DesiredUpstream> + '_ {
        self.upstreams.values()
    }

    /// How many upstreams.
    pub fn len(&self) -> usize {
        self.upstreams.len()
    }

    /// Whether there is no upstream.
    pub fn is_empty(&self) -> bool {
        self.upstreams.is_empty()
    }

    /// The changes of an `apply_batch` with `replace: true` that declares this state whole:
    /// each upstream (by id), then its backends.
    pub fn whole_batch(&self) -> Vec<BatchChange> {
        let size = self.upstreams().map(|u| 1 + u.backends.len()).sum();
        let mut changes = Vec::with_capacity(size);
        for desired in self.upstreams() {
            changes.push(BatchChange::add_upstream(desired.upstream.clone()));
            changes.extend(
                desired
                    .backends()
                    .map(|b| BatchChange::add_backend(desired.id(), b.clone())),
            );
        }
        changes
    }

    /// The changes of an `apply_batch` without `replace` that turn this state (what the proxy
    /// has) into `new`, in the order of the module docs; empty when the two are equal.
    pub fn changes_to(&self, new: &DesiredState) -> Vec<BatchChange> {
        let old = self;
        // Upstreams in both with the same fields: only their backends may differ.
        let kept: Vec<(&DesiredUpstream, &DesiredUpstream)> = new
            .upstreams()
            .filter_map(|n| {
                old.get(n.id())
                    .filter(|o| o.upstream == n.upstream)
                    .map(|o| (o, n))
            })
            .collect();
        let mut changes = Vec::new();
        // 1. Upstreams gone or changed.
        for o in old.upstreams() {
            if new.get(o.id()).is_none_or(|n| n.upstream != o.upstream) {
                changes.push(BatchChange::remove_upstream(o.id()));
            }
        }
        // 2. Backends of kept upstreams whose content changed under the same id.
        for (o, n) in &kept {
            for backend in n.backends() {
                if o.backend(&backend.id).is_some_and(|b| b != backend) {
                    changes.push(BatchChange::remove_backend(n.id(), &backend.id));
                }
            }
        }
        // 3. New and changed upstreams, with all their backends.
        for n in new.upstreams() {
            if old.get(n.id()).is_none_or(|o| o.upstream != n.upstream) {
                changes.push(BatchChange::add_upstream(n.upstream.clone()));
                changes.extend(
                    n.backends()
                        .map(|b| BatchChange::add_backend(n.id(), b.clone())),
                );
            }
        }
        // 4. New and changed backends of kept upstreams.
        for (o, n) in &kept {
            for backend in n.backends() {
                if o.backend(&backend.id) != Some(backend) {
                    changes.push(BatchChange::add_backend(n.id(), backend.clone()));
                }
            }
        }
        // 5. Backends of kept upstreams that are gone.
        for (o, n) in &kept {
            for backend in o.backends() {
                if n.backend(&backend.id).is_none() {
                    changes.push(BatchChange::remove_backend(n.id(), &backend.id));
                }
            }
        }
        changes
    }
}

impl FromIterator<DesiredUpstream> for DesiredState {
    /// The upstreams by id; of two with one id, the later stays.
    fn from_iter<I: IntoIterator<Item = DesiredUpstream>>(upstreams: I) -> Self {
        let mut state = DesiredState::new();
        for upstream in upstreams {
            state.insert(upstream);
        }
        state
    }
}

#[cfg(test)]
mod tests;
