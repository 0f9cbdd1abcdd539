//! The registry's writer side: the source of truth that manager calls change ([`Data`]), the
//! four changes applied to it ([`Data::apply`]), and the routing maps published to readers,
//! kept up to date incrementally ([`Published`]).
//!
//! Everything here is made of persistent maps ([`imbl`]): cloning [`Data`] before a batch (to
//! restore it if an item is refused) and handing the routing maps to a new [`Snapshot`] both
//! cost O(1), and a change costs O(log n) in the registry's size plus the size of the upstream
//! it touches. Nothing is rebuilt from scratch on a change.

use std::collections::BTreeSet;
use std::sync::atomic::AtomicUsize;
use std::sync::Arc;

use gatekeeper_rpc::types::{Backend, Upstream};

use super::{BackendEntry, RegistryChange, RegistryError, Snapshot, UpstreamEntry};
use crate::upstream_settings::{PassivePolicy, UpstreamSettings};

/// An upstream in the writer state.
#[derive(Debug, Clone)]
pub(super) struct UpstreamState {
    pub(super) upstream: Upstream,
    /// The upstream's fields, parsed.
    settings: UpstreamSettings,
    round_robin: Arc<AtomicUsize>,
    pub(super) backends: imbl::OrdMap<String, Arc<BackendEntry>>,
}

/// One change, validated (its fields parsed) and ready to apply.
#[derive(Debug)]
pub(super) enum PreparedOp {
    AddUpstream(Upstream, UpstreamSettings),
    RemoveUpstream(String),
    AddBackend(String, BackendEntry),
    RemoveBackend(String, String),
}

/// What [`Data::apply`] did with one change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Applied {
    /// Something changed.
    Changed,
    /// The same upstream or backend was there already.
    Unchanged,
}

/// The writer's source of truth. Cheap to clone (persistent maps).
#[derive(Debug, Clone, Default)]
pub(super) struct Data {
    pub(super) upstreams: imbl::OrdMap<String, UpstreamState>,
    /// Prefix → the ids of the upstreams having it (at most one per listener).
    prefix_owners: imbl::HashMap<String, Vec<String>>,
    /// Hostname → the ids of the upstreams having it.
    hostname_owners: imbl::HashMap<String, Vec<String>>,
    /// (upstream id, backend id) of drained backends that were removed: an operator's drain
    /// holds when the backend comes back (an upstream plugin changing it removes and adds it).
    drained_removed: imbl::HashSet<(String, String)>,
}

fn overlap(a: &[String], b: &[String]) -> bool {
    a.is_empty() || b.is_empty() || a.iter().any(|x| b.contains(x))
}

fn add_owner(owners: &mut imbl::HashMap<String, Vec<String>>, key: &str, id: &str) {
    owners
        .entry(key.to_owned())
        .or_default()
        .push(id.to_owned());
}

fn remove_owner(owners: &mut imbl::HashMap<String, Vec<String>>, key: &str, id: &str) {
    if let Some(ids) = owners.get_mut(key) {
        ids.retain(|other| other != id);
        if ids.is_empty() {
            owners.remove(key);
        }
    }
}

impl Data {
    /// The conflict of `upstream` with another upstream's prefix or hostname, if any: only the
    /// upstreams sharing one of its routes are looked at.
    fn route_conflict(&self, upstream: &Upstream) -> Option<RegistryError> {
        let routes = upstream
            .prefixes
            .iter()
            .map(|p| (&self.prefix_owners, p, "prefix"))
            .chain(
                upstream
                    .hostnames
                    .iter()
                    .map(|h| (&self.hostname_owners, h, "hostname")),
            );
        for (owners, route, kind) in routes {
            for other_id in owners.get(route.as_str()).into_iter().flatten() {
                let Some(other) = self.upstreams.get(other_id) else {
                    continue;
                };
                if other_id != &upstream.id
                    && overlap(&upstream.protocols, &other.upstream.protocols)
                {
                    return Some(RegistryError::Conflict {
                        id: upstream.id.clone(),
                        what: format!("{kind} `{route}`"),
                        other: format!("upstream `{other_id}`"),
                    });
                }
            }
        }
        None
    }

    /// Applies one change, adding what subscribers are told to `changes` and the ids of the
    /// upstreams whose snapshot entry must be rebuilt to `dirty`. A refused change changes
    /// nothing.
    pub(super) fn apply(
        &mut self,
        op: PreparedOp,
        changes: &mut Vec<RegistryChange>,
        dirty: &mut BTreeSet<String>,
    ) -> Result<Applied, RegistryError> {
        match op {
            PreparedOp::AddUpstream(upstream, settings) => {
                if let Some(existing) = self.upstreams.get(&upstream.id) {
                    if existing.upstream == upstream {
                        return Ok(Applied::Unchanged);
                    }
                    return Err(RegistryError::Conflict {
                        id: upstream.id.clone(),
                        what: "the id".into(),
                        other: "an upstream with different content (remove it first)".into(),
                    });
                }
                if let Some(conflict) = self.route_conflict(&upstream) {
                    return Err(conflict);
                }
                for prefix in &upstream.prefixes {
                    add_owner(&mut self.prefix_owners, prefix, &upstream.id);
                }
                for host in &upstream.hostnames {
                    add_owner(&mut self.hostname_owners, host, &upstream.id);
                }
                dirty.insert(upstream.id.clone());
                self.upstreams.insert(
                    upstream.id.clone(),
                    UpstreamState {
                        upstream: upstream.clone(),
                        settings,
                        round_robin: Arc::default(),
                        backends: imbl::OrdMap::new(),
                    },
                );
                changes.push(RegistryChange::UpstreamAdded(upstream));
            }
            PreparedOp::RemoveUpstream(id) => {
                let Some(removed) = self.upstreams.remove(&id) else {
                    return Err(RegistryError::UnknownUpstream(id));
                };
                for prefix in &removed.upstream.prefixes {
                    remove_owner(&mut self.prefix_owners, prefix, &id);
                }
                for host in &removed.upstream.hostnames {
                    remove_owner(&mut self.hostname_owners, host, &id);
                }
                for (backend_id, entry) in removed.backends {
                    if entry.is_drained() {
                        self.drained_removed
                            .insert((id.clone(), backend_id.clone()));
                    }
                    changes.push(RegistryChange::BackendRemoved {
                        upstream_id: id.clone(),
                        backend_id,
                    });
                }
                changes.push(RegistryChange::UpstreamRemoved { id: id.clone() });
                dirty.insert(id);
            }
            PreparedOp::AddBackend(upstream_id, entry) => {
                let Some(upstream) = self.upstreams.get_mut(&upstream_id) else {
                    return Err(RegistryError::UnknownUpstream(upstream_id));
                };
                if let Some(existing) = upstream.backends.get(&entry.backend.id) {
                    if existing.backend == entry.backend {
                        return Ok(Applied::Unchanged);
                    }
                    return Err(RegistryError::Conflict {
                        id: upstream_id,
                        what: format!("backend id `{}`", entry.backend.id),
                        other:
                            "a backend with a different address, weight or extra (remove it first)"
                                .into(),
                    });
                }
                let backend: Backend = entry.backend.clone();
                let entry =
                    entry.with_connection_limit(upstream.settings.max_connections_per_backend);
                let key = (upstream_id.clone(), backend.id.clone());
                if self.drained_removed.remove(&key).is_some() {
                    entry.set_drained(true);
                }
                upstream
                    .backends
                    .insert(backend.id.clone(), Arc::new(entry));
                dirty.insert(upstream_id.clone());
                changes.push(RegistryChange::BackendAdded {
                    upstream_id,
                    backend,
                });
            }
            PreparedOp::RemoveBackend(upstream_id, backend_id) => {
                let Some(upstream) = self.upstreams.get_mut(&upstream_id) else {
                    return Err(RegistryError::UnknownUpstream(upstream_id));
                };
                let Some(removed) = upstream.backends.remove(&backend_id) else {
                    return Err(RegistryError::UnknownBackend {
                        upstream: upstream_id,
                        backend: backend_id,
                    });
                };
                if removed.is_drained() {
                    self.drained_removed
                        .insert((upstream_id.clone(), backend_id.clone()));
                }
                dirty.insert(upstream_id.clone());
                changes.push(RegistryChange::BackendRemoved {
                    upstream_id,
                    backend_id,
                });
            }
        }
        Ok(Applied::Changed)
    }
}

/// The routing maps readers get in each [`Snapshot`], updated in place (persistent maps) for
/// the upstreams a change touched.
#[derive(Debug, Clone, Default)]
pub(super) struct Published {
    upstreams: imbl::OrdMap<String, Arc<UpstreamEntry>>,
    by_prefix: imbl::HashMap<String, Vec<Arc<UpstreamEntry>>>,
    by_hostname: imbl::HashMap<String, Vec<Arc<UpstreamEntry>>>,
}

fn unroute(map: &mut imbl::HashMap<String, Vec<Arc<UpstreamEntry>>>, key: &str, id: &str) {
    if let Some(entries) = map.get_mut(key) {
        entries.retain(|e| e.upstream.id != id);
        if entries.is_empty() {
            map.remove(key);
        }
    }
}

fn route(
    map: &mut imbl::HashMap<String, Vec<Arc<UpstreamEntry>>>,
    key: &str,
    entry: &Arc<UpstreamEntry>,
) {
    let entries = map.entry(key.to_owned()).or_default();
    // Ordered by id, so that the first allowed one is the same in every snapshot.
    let at = entries.partition_point(|e| e.upstream.id < entry.upstream.id);
    entries.insert(at, entry.clone());
}

impl Published {
    /// Rebuilds the entries of the `dirty` upstreams from `data` (dropping those that are gone)
    /// and returns the snapshot of the result.
    pub(super) fn update(
        &mut self,
        data: &Data,
        dirty: impl IntoIterator<Item = String>,
        passive_defaults: PassivePolicy,
        version: u64,
    ) -> Snapshot {
        for id in dirty {
            if let Some(old) = self.upstreams.remove(&id) {
                for prefix in &old.upstream.prefixes {
                    unroute(&mut self.by_prefix, prefix, &id);
                }
                for host in &old.upstream.hostnames {
                    unroute(&mut self.by_hostname, host, &id);
                }
            }
            let Some(state) = data.upstreams.get(&id) else {
                continue;
            };
            let entry = Arc::new(UpstreamEntry::with_settings(
                state.upstream.clone(),
                state.backends.values().cloned().collect(),
                &state.settings,
                passive_defaults,
                state.round_robin.clone(),
            ));
            for prefix in &state.upstream.prefixes {
                route(&mut self.by_prefix, prefix, &entry);
            }
            for host in &state.upstream.hostnames {
                route(&mut self.by_hostname, host, &entry);
            }
            self.upstreams.insert(id, entry);
        }
        Snapshot {
            version,
            upstreams: self.upstreams.clone(),
            by_prefix: self.by_prefix.clone(),
            by_hostname: self.by_hostname.clone(),
        }
    }
}
