//! The difference between two versions of the upstreams file, as the manager calls that would
//! turn the proxy's registry from one into the other. The plugin pushes whole versions (the proxy
//! computes the same difference, see [`crate::push`]); this one tells whether a new version
//! changes anything and what (logged).
//!
//! The registry refuses to replace an upstream or backend in place (an existing id with other
//! content is a conflict, `-32011`), so a changed one is removed and added again. The calls come
//! in an order that avoids conflicts and gaps:
//!
//! 1. `remove_upstream` for upstreams that are gone or whose fields changed (first, so a prefix
//!    or hostname they held is free for an upstream added below);
//! 2. `remove_backend` for backends of kept upstreams whose id stays but whose content changed;
//! 3. `add_upstream` for new and changed upstreams, each followed by `add_backend` for all its
//!    backends;
//! 4. `add_backend` for new and changed backends of kept upstreams;
//! 5. `remove_backend` for backends of kept upstreams that are gone (after the additions, so an
//!    upstream whose only backend is replaced never has none).

use std::collections::BTreeMap;

use gatekeeper_plugin_sdk::{Backend, Upstream};

use crate::file::StaticUpstream;

/// Upstreams (with their backends) by id: what the proxy has, or what a file asks for.
pub type State = BTreeMap<String, StaticUpstream>;

/// Indexes a parsed file by upstream id.
pub fn index(upstreams: Vec<StaticUpstream>) -> State {
    upstreams
        .into_iter()
        .map(|u| (u.upstream.id.clone(), u))
        .collect()
}

/// One manager call.
#[derive(Debug, Clone, PartialEq)]
pub enum Change {
    /// `remove_upstream` (with all its backends).
    RemoveUpstream(String),
    /// `add_upstream` (without backends).
    AddUpstream(Upstream),
    /// `add_backend`.
    AddBackend {
        /// The upstream's id.
        upstream_id: String,
        /// The backend.
        backend: Backend,
    },
    /// `remove_backend`.
    RemoveBackend {
        /// The upstream's id.
        upstream_id: String,
        /// The backend's id.
        backend_id: String,
    },
}

impl Change {
    /// Records the effect of this change in `state` (for tests: applying the difference to the
    /// old version gives the new one).
    #[cfg(test)]
    pub fn apply_to(&self, state: &mut State) {
        match self {
            Change::RemoveUpstream(id) => {
                state.remove(id);
            }
            Change::AddUpstream(upstream) => {
                state.insert(
                    upstream.id.clone(),
                    StaticUpstream {
                        upstream: upstream.clone(),
                        backends: Vec::new(),
                    },
                );
            }
            Change::AddBackend {
                upstream_id,
                backend,
            } => {
                if let Some(entry) = state.get_mut(upstream_id) {
                    match entry.backends.iter_mut().find(|b| b.id == backend.id) {
                        Some(existing) => *existing = backend.clone(),
                        None => entry.backends.push(backend.clone()),
                    }
                }
            }
            Change::RemoveBackend {
                upstream_id,
                backend_id,
            } => {
                if let Some(entry) = state.get_mut(upstream_id) {
                    entry.backends.retain(|b| b.id != *backend_id);
                }
            }
        }
    }
}

impl std::fmt::Display for Change {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Change::RemoveUpstream(id) => write!(f, "remove_upstream `{id}`"),
            Change::AddUpstream(upstream) => write!(f, "add_upstream `{}`", upstream.id),
            Change::AddBackend {
                upstream_id,
                backend,
            } => write!(
                f,
                "add_backend `{}` ({}) to `{upstream_id}`",
                backend.id, backend.address
            ),
            Change::RemoveBackend {
                upstream_id,
                backend_id,
            } => write!(f, "remove_backend `{backend_id}` from `{upstream_id}`"),
        }
    }
}

/// The changes that turn `old` into `new`, in the order of the module docs; empty when they
/// are the same (backend order within an upstream does not count).
pub fn diff(old: &State, new: &State) -> Vec<Change> {
    // Upstreams present in both with the same fields: only their backends may differ.
    let kept: Vec<(&StaticUpstream, &StaticUpstream)> = new
        .iter()
        .filter_map(|(id, n)| {
            old.get(id)
                .filter(|o| o.upstream == n.upstream)
                .map(|o| (o, n))
        })
        .collect();
    let find = |list: &'_ [Backend], id: &str| list.iter().find(|b| b.id == id).cloned();
    let mut changes = Vec::new();

    // 1. Upstreams gone or changed.
    for (id, o) in old {
        if new.get(id).is_none_or(|n| n.upstream != o.upstream) {
            changes.push(Change::RemoveUpstream(id.clone()));
        }
    }
    // 2. Backends of kept upstreams whose content changed under the same id.
    for (o, n) in &kept {
        for backend in &n.backends {
            if find(&o.backends, &backend.id).is_some_and(|b| b != *backend) {
                changes.push(Change::RemoveBackend {
                    upstream_id: n.upstream.id.clone(),
                    backend_id: backend.id.clone(),
                });
            }
        }
    }
    // 3. New and changed upstreams, with all their backends.
    for (id, n) in new {
        if old.get(id).is_none_or(|o| o.upstream != n.upstream) {
            changes.push(Change::AddUpstream(n.upstream.clone()));
            changes.extend(n.backends.iter().map(|backend| Change::AddBackend {
                upstream_id: id.clone(),
                backend: backend.clone(),
            }));
        }
    }
    // 4. New and changed backends of kept upstreams.
    for (o, n) in &kept {
        for backend in &n.backends {
            if find(&o.backends, &backend.id).as_ref() != Some(backend) {
                changes.push(Change::AddBackend {
                    upstream_id: n.upstream.id.clone(),
                    backend: backend.clone(),
                });
            }
        }
    }
    // 5. Backends of kept upstreams that are gone.
    for (o, n) in &kept {
        for backend in &o.backends {
            if find(&n.backends, &backend.id).is_none() {
                changes.push(Change::RemoveBackend {
                    upstream_id: n.upstream.id.clone(),
                    backend_id: backend.id.clone(),
                });
            }
        }
    }
    changes
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::file::{parse, BackendIds};

    fn state(yaml: &str) -> State {
        index(parse(yaml, BackendIds::Url).unwrap())
    }

    fn state_by_index(yaml: &str) -> State {
        index(parse(yaml, BackendIds::Index).unwrap())
    }

    /// The changes as short strings: `-up id`, `+up id`, `+be up/id=address`, `-be up/id`.
    fn show(changes: &[Change]) -> Vec<String> {
        changes
            .iter()
            .map(|c| match c {
                Change::RemoveUpstream(id) => format!("-up {id}"),
                Change::AddUpstream(u) => format!("+up {}", u.id),
                Change::AddBackend {
                    upstream_id,
                    backend,
                } => format!("+be {upstream_id}/{}={}", backend.id, backend.address),
                Change::RemoveBackend {
                    upstream_id,
                    backend_id,
                } => format!("-be {upstream_id}/{backend_id}"),
            })
            .collect()
    }

    /// Asserts that applying `diff(old, new)` to `old` gives `new` (up to backend order).
    fn assert_converges(old: &State, new: &State) {
        let mut applied = old.clone();
        for change in diff(old, new) {
            change.apply_to(&mut applied);
        }
        assert!(diff(&applied, new).is_empty(), "{applied:?} vs {new:?}");
        assert_eq!(
            applied.keys().collect::<Vec<_>>(),
            new.keys().collect::<Vec<_>>()
        );
    }

    const API: &str = "api:\n  prefixes: [api]\n  backends: [http://a:1, http://b:1]\n";

    #[test]
    fn the_same_file_changes_nothing() {
        assert!(diff(&state(API), &state(API)).is_empty());
        assert!(diff(&State::new(), &State::new()).is_empty());
    }

    #[test]
    fn reordered_backends_change_nothing() {
        let reordered = "api:\n  prefixes: [api]\n  backends: [http://b:1, http://a:1]\n";
        assert!(diff(&state(API), &state(reordered)).is_empty());
    }

    #[test]
    fn everything_new_is_added_from_nothing() {
        let changes = diff(&State::new(), &state(API));
        assert_eq!(
            show(&changes),
            [
                "+up api",
                "+be api/http://a:1=http://a:1",
                "+be api/http://b:1=http://b:1"
            ]
        );
    }

    #[test]
    fn a_removed_upstream_is_removed_alone() {
        let two = format!("{API}web:\n  prefixes: [web]\n  backends: [http://w:1]\n");
        assert_eq!(show(&diff(&state(&two), &state(API))), ["-up web"]);
        assert_eq!(show(&diff(&state(API), &State::new())), ["-up api"]);
    }

    #[test]
    fn backend_changes_add_first_then_remove() {
        let changed = "api:\n  prefixes: [api]\n  backends: [http://b:1, http://c:1]\n";
        assert_eq!(
            show(&diff(&state(API), &state(changed))),
            ["+be api/http://c:1=http://c:1", "-be api/http://a:1"]
        );
        assert_converges(&state(API), &state(changed));
    }

    #[test]
    fn a_changed_upstream_is_removed_and_added_with_its_backends() {
        let changed = "api:\n  prefixes: [api, v2]\n  backends: [http://a:1]\n";
        assert_eq!(
            show(&diff(&state(API), &state(changed))),
            ["-up api", "+up api", "+be api/http://a:1=http://a:1"]
        );
        assert_converges(&state(API), &state(changed));
    }

    #[test]
    fn removals_come_before_additions_so_prefixes_can_move() {
        let old = "a:\n  prefixes: [x]\nb:\n  prefixes: [y]\n";
        let swapped = "a:\n  prefixes: [y]\nb:\n  prefixes: [x]\n";
        assert_eq!(
            show(&diff(&state(old), &state(swapped))),
            ["-up a", "-up b", "+up a", "+up b"]
        );
        let moved = "c:\n  prefixes: [x]\nb:\n  prefixes: [y]\n";
        assert_eq!(show(&diff(&state(old), &state(moved))), ["-up a", "+up c"]);
    }

    #[test]
    fn a_duplicate_url_added_or_removed_touches_only_its_copy() {
        let twice = "api:\n  backends: [http://a:1, http://a:1]\n";
        let once = "api:\n  backends: [http://a:1]\n";
        assert_eq!(
            show(&diff(&state(once), &state(twice))),
            ["+be api/http://a:1#2=http://a:1"]
        );
        assert_eq!(
            show(&diff(&state(twice), &state(once))),
            ["-be api/http://a:1#2"]
        );
    }

    #[test]
    fn with_index_ids_a_changed_address_is_removed_then_added() {
        let old = state_by_index("api:\n  backends: [http://a:1, http://b:1]\n");
        let new = state_by_index("api:\n  backends: [http://a:1, http://c:1]\n");
        assert_eq!(
            show(&diff(&old, &new)),
            ["-be api/1", "+be api/1=http://c:1"]
        );
        assert_converges(&old, &new);
    }

    #[test]
    fn a_mixed_change_converges() {
        let old = state(
            "a:\n  prefixes: [a]\n  backends: [http://1:1, http://2:1]\n\
             b:\n  prefixes: [b]\n  backends: [http://3:1]\n\
             c:\n  prefixes: [c]\n",
        );
        let new = state(
            "a:\n  prefixes: [a]\n  backends: [http://2:1, http://4:1, http://4:1]\n\
             b:\n  prefixes: [b]\n  timeout: 1s\n  backends: [http://3:1]\n\
             d:\n  prefixes: [c]\n  backends: [http://5:1]\n",
        );
        assert_eq!(
            show(&diff(&old, &new)),
            [
                "-up b",
                "-up c",
                "+up b",
                "+be b/http://3:1=http://3:1",
                "+up d",
                "+be d/http://5:1=http://5:1",
                "+be a/http://4:1=http://4:1",
                "+be a/http://4:1#2=http://4:1",
                "-be a/http://1:1",
            ]
        );
        assert_converges(&old, &new);
    }

    #[test]
    fn apply_to_ignores_backends_of_unknown_upstreams() {
        let mut applied = State::new();
        Change::AddBackend {
            upstream_id: "ghost".into(),
            backend: Backend {
                id: "x".into(),
                address: "http://x".into(),
                weight: None,
                extra: Default::default(),
            },
        }
        .apply_to(&mut applied);
        Change::RemoveBackend {
            upstream_id: "ghost".into(),
            backend_id: "x".into(),
        }
        .apply_to(&mut applied);
        assert!(applied.is_empty());
    }
}
