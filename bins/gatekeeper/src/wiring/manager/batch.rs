//! `apply_batch` for the [`RegistryManager`](super::RegistryManager): a plugin's changes turned
//! into one registry batch ([`Plan`]), with the removals a reload's re-declaration needs and, in
//! replace mode, the diff between the plugin's desired state and what it has in the registry.

use std::collections::HashSet;

use gatekeeper_proxy::{stored_form, BatchError, RegistryOp, Snapshot};
use gatekeeper_rpc::codes;
use gatekeeper_rpc::error::error_object;
use gatekeeper_rpc::methods::{ApplyBatch, BatchChange, Method, RefusedChange};
use gatekeeper_rpc::types::Upstream;
use gatekeeper_rpc::ErrorObject;

use super::Owners;

/// The registry changes a batch becomes, each with the index of the plugin's change it comes
/// from.
#[derive(Debug, Default)]
pub(super) struct Plan {
    /// How many changes the plugin sent.
    pub(super) total: usize,
    /// The registry changes, in order.
    pub(super) ops: Vec<RegistryOp>,
    /// For each of `ops`, the index of the plugin's change it comes from; `total` for the
    /// removals replace mode adds for upstreams the batch no longer has.
    origins: Vec<usize>,
}

/// Which upstream a plan adds or removes, in order: what the owners record once it applied.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Ownership {
    /// The plugin added (or declared again) this upstream.
    Added(String),
    /// This upstream is gone.
    Removed(String),
}

impl Plan {
    fn push(&mut self, origin: usize, op: RegistryOp) {
        self.ops.push(op);
        self.origins.push(origin);
    }

    /// The upstreams the plan adds and removes, in order.
    pub(super) fn ownership(&self) -> Vec<Ownership> {
        self.ops
            .iter()
            .filter_map(|op| match op {
                RegistryOp::AddUpstream(u) => Some(Ownership::Added(u.id.clone())),
                RegistryOp::RemoveUpstream { id } => Some(Ownership::Removed(id.clone())),
                _ => None,
            })
            .collect()
    }

    /// The refused changes of a refused plan, by the index of the plugin's change.
    pub(super) fn refused(&self, error: &BatchError) -> Vec<RefusedChange> {
        let mut refused: Vec<RefusedChange> = error
            .refused
            .iter()
            .map(|r| RefusedChange {
                index: self.origins.get(r.index).copied().unwrap_or(self.total),
                code: r.error.code(),
                message: r.error.to_string(),
            })
            .collect();
        refused.sort_by_key(|r| r.index);
        refused
    }
}

/// Whether the registry has upstream `upstream.id` with other content.
fn differs(snapshot: &Snapshot, upstream: &Upstream) -> bool {
    snapshot
        .upstream(&upstream.id)
        .is_some_and(|existing| existing.upstream != stored_form(upstream.clone()))
}

fn not_allowed_with_replace(index: usize, change: &BatchChange) -> ErrorObject {
    error_object(
        codes::INVALID_PARAMS,
        format!(
            "invalid params for `{}`: change {index}: `{}` is not allowed with `replace: true` (the batch is the whole desired state: leave out what should go)",
            ApplyBatch::NAME,
            change.method()
        ),
    )
}

/// Turns `plugin`'s batch into registry changes, given the registry's `snapshot` and who owns
/// which upstream.
///
/// Without `replace`, the changes are the plugin's, plus, before an `add_upstream` that
/// re-declares one of its upstreams with other content after a reload, its removal (as
/// `add_upstream` does). With `replace`, first the removals of the upstreams `plugin` owns that
/// the batch does not have; then, for each of the batch's upstreams that `plugin` owns, the
/// removal of the upstream if its content changed (its backends go with it: the batch re-adds
/// those it lists) or else of the backends the batch does not list or lists with other content.
pub(super) fn plan(
    plugin: &str,
    changes: Vec<BatchChange>,
    replace: bool,
    snapshot: &Snapshot,
    owners: &Owners,
) -> Result<Plan, ErrorObject> {
    let total = changes.len();
    let mut plan = Plan {
        total,
        ops: Vec::with_capacity(total),
        origins: Vec::with_capacity(total),
    };
    if !replace {
        for (index, change) in changes.into_iter().enumerate() {
            let op = match change {
                BatchChange::AddUpstream(p) => {
                    if owners.redeclares(plugin, &p.upstream.id) && differs(snapshot, &p.upstream) {
                        let id = p.upstream.id.clone();
                        plan.push(index, RegistryOp::RemoveUpstream { id });
                    }
                    RegistryOp::AddUpstream(p.upstream)
                }
                BatchChange::RemoveUpstream(p) => RegistryOp::RemoveUpstream { id: p.id },
                BatchChange::AddBackend(p) => RegistryOp::AddBackend {
                    upstream_id: p.upstream_id,
                    backend: p.backend,
                },
                BatchChange::RemoveBackend(p) => RegistryOp::RemoveBackend {
                    upstream_id: p.upstream_id,
                    backend_id: p.backend_id,
                },
            };
            plan.push(index, op);
        }
        return Ok(plan);
    }

    let mut desired_upstreams: HashSet<&str> = HashSet::new();
    let mut desired_backends: HashSet<(&str, &str)> = HashSet::new();
    for (index, change) in changes.iter().enumerate() {
        match change {
            BatchChange::AddUpstream(p) => {
                desired_upstreams.insert(&p.upstream.id);
            }
            BatchChange::AddBackend(p) => {
                desired_backends.insert((&p.upstream_id, &p.backend.id));
            }
            other => return Err(not_allowed_with_replace(index, other)),
        }
    }
    let mut gone: Vec<&String> = owners
        .upstreams
        .iter()
        .filter(|(id, (owner, _))| {
            owner == plugin
                && !desired_upstreams.contains(id.as_str())
                && snapshot.upstream(id).is_some()
        })
        .map(|(id, _)| id)
        .collect();
    gone.sort();
    for id in gone {
        plan.push(total, RegistryOp::RemoveUpstream { id: id.clone() });
    }

    let owned = |id: &str| owners.owner(id) == Some(plugin);
    // The upstreams removed to be added again (their backends go with them), and what was
    // looked at already (an id given twice is compared once).
    let mut replaced: HashSet<&str> = HashSet::new();
    let mut seen_upstreams: HashSet<&str> = HashSet::new();
    let mut stale_backends = Vec::new();
    for (index, change) in changes.iter().enumerate() {
        let BatchChange::AddUpstream(p) = change else {
            continue;
        };
        let id = p.upstream.id.as_str();
        let first = seen_upstreams.insert(id);
        let Some(existing) = snapshot.upstream(id).filter(|_| first && owned(id)) else {
            continue;
        };
        if existing.upstream != stored_form(p.upstream.clone()) {
            plan.push(index, RegistryOp::RemoveUpstream { id: id.to_owned() });
            replaced.insert(id);
        } else {
            stale_backends.extend(
                existing
                    .backends
                    .iter()
                    .filter(|b| !desired_backends.contains(&(id, b.backend.id.as_str())))
                    .map(|b| (index, id.to_owned(), b.backend.id.clone())),
            );
        }
    }
    let mut seen_backends: HashSet<(&str, &str)> = HashSet::new();
    for (index, change) in changes.iter().enumerate() {
        let BatchChange::AddBackend(p) = change else {
            continue;
        };
        let (upstream_id, backend) = (p.upstream_id.as_str(), &p.backend);
        let first = seen_backends.insert((upstream_id, &backend.id));
        if !first || replaced.contains(upstream_id) || !owned(upstream_id) {
            continue;
        }
        let existing = snapshot.upstream(upstream_id).and_then(|u| {
            u.backends
                .binary_search_by(|b| b.backend.id.as_str().cmp(&backend.id))
                .ok()
                .and_then(|i| u.backends.get(i))
        });
        if existing.is_some_and(|b| b.backend != *backend) {
            stale_backends.push((index, upstream_id.to_owned(), backend.id.clone()));
        }
    }
    // Stale backends go before the adds, so a changed backend is removed, then added again.
    for (index, upstream_id, backend_id) in stale_backends {
        plan.push(
            index,
            RegistryOp::RemoveBackend {
                upstream_id,
                backend_id,
            },
        );
    }
    // The upstreams, then their backends (a backend listed before its upstream still finds it).
    let mut backends = Vec::new();
    for (index, change) in changes.into_iter().enumerate() {
        match change {
            BatchChange::AddUpstream(p) => plan.push(index, RegistryOp::AddUpstream(p.upstream)),
            BatchChange::AddBackend(p) => backends.push((
                index,
                RegistryOp::AddBackend {
                    upstream_id: p.upstream_id,
                    backend: p.backend,
                },
            )),
            other => return Err(not_allowed_with_replace(index, &other)),
        }
    }
    for (index, op) in backends {
        plan.push(index, op);
    }
    Ok(plan)
}
