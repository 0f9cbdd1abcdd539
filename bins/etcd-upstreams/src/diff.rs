//! The proxy-side state this plugin wants (upstreams with their backends) and the manager changes
//! that turn one state into another.
//!
//! The registry refuses to replace an upstream or backend in place (an existing id with other
//! content is a conflict, `-32011`), so a changed one is removed and added again. The changes
//! come in an order that avoids conflicts and gaps (as static-upstreams' diff):
//!
//! 1. `remove_upstream` for upstreams that are gone or changed (first, so a prefix or hostname
//!    they held is free for an upstream added below);
//! 2. `remove_backend` for backends of kept upstreams whose content changed;
//! 3. `add_upstream` for new and changed upstreams, each followed by all its backends;
//! 4. `add_backend` for new and changed backends of kept upstreams;
//! 5. `remove_backend` for backends of kept upstreams that are gone (after the additions, so an
//!    upstream whose only backend is replaced never has none).

use std::collections::BTreeMap;

use gatekeeper_plugin_sdk::{Backend, BatchChange, Upstream};

use crate::keys::Item;

/// One upstream and its backends by id.
#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    /// The upstream.
    pub upstream: Upstream,
    /// Its backends by id.
    pub backends: BTreeMap<String, Backend>,
}

/// Upstreams by id: what the proxy has from this plugin, or what etcd asks for.
pub type State = BTreeMap<String, Entry>;

/// The changes of a `replace: true` batch declaring `state` whole: each upstream, then its
/// backends.
pub fn whole_state(state: &State) -> Vec<BatchChange> {
    let mut changes = Vec::with_capacity(state.values().map(|e| 1 + e.backends.len()).sum());
    for (id, entry) in state {
        changes.push(BatchChange::add_upstream(entry.upstream.clone()));
        changes.extend(
            entry
                .backends
                .values()
                .map(|b| BatchChange::add_backend(id, b.clone())),
        );
    }
    changes
}

/// The changes (for a batch without `replace`) that turn `old` into `new`, in the order of the
/// module docs; empty when they are the same.
pub fn diff(old: &State, new: &State) -> Vec<BatchChange> {
    let kept: Vec<(&Entry, &Entry)> = new
        .iter()
        .filter_map(|(id, n)| {
            old.get(id)
                .filter(|o| o.upstream == n.upstream)
                .map(|o| (o, n))
        })
        .collect();
    let mut changes = Vec::new();
    // 1. Upstreams gone or changed.
    for (id, o) in old {
        if new.get(id).is_none_or(|n| n.upstream != o.upstream) {
            changes.push(BatchChange::remove_upstream(id));
        }
    }
    // 2. Backends of kept upstreams whose content changed under the same id.
    for (o, n) in &kept {
        for (id, backend) in &n.backends {
            if o.backends.get(id).is_some_and(|b| b != backend) {
                changes.push(BatchChange::remove_backend(&n.upstream.id, id));
            }
        }
    }
    // 3. New and changed upstreams, with all their backends.
    for (id, n) in new {
        if old.get(id).is_none_or(|o| o.upstream != n.upstream) {
            changes.push(BatchChange::add_upstream(n.upstream.clone()));
            changes.extend(
                n.backends
                    .values()
                    .map(|b| BatchChange::add_backend(id, b.clone())),
            );
        }
    }
    // 4. New and changed backends of kept upstreams.
    for (o, n) in &kept {
        for (id, backend) in &n.backends {
            if o.backends.get(id) != Some(backend) {
                changes.push(BatchChange::add_backend(&n.upstream.id, backend.clone()));
            }
        }
    }
    // 5. Backends of kept upstreams that are gone.
    for (o, n) in &kept {
        for id in o.backends.keys() {
            if !n.backends.contains_key(id) {
                changes.push(BatchChange::remove_backend(&n.upstream.id, id));
            }
        }
    }
    changes
}

/// The etcd item an added upstream or backend comes from (`None` for a removal).
pub fn item_of(change: &BatchChange) -> Option<Item> {
    match change {
        BatchChange::AddUpstream(p) => Some(Item::Upstream(p.upstream.id.clone())),
        BatchChange::AddBackend(p) => {
            Some(Item::Backend(p.upstream_id.clone(), p.backend.id.clone()))
        }
        BatchChange::RemoveUpstream(_) | BatchChange::RemoveBackend(_) => None,
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// An upstream for [`state`]: `(upstream id, prefix, [(backend id, address)])`.
    pub(crate) type Spec<'a> = (&'a str, &'a str, &'a [(&'a str, &'a str)]);

    /// A state from upstream specs.
    pub(crate) fn state(items: &[Spec<'_>]) -> State {
        items
            .iter()
            .map(|(id, prefix, backends)| {
                let upstream = Upstream {
                    id: (*id).into(),
                    prefixes: vec![(*prefix).into()],
                    ..Upstream::default()
                };
                let backends = backends
                    .iter()
                    .map(|(b, address)| {
                        (
                            (*b).to_owned(),
                            Backend {
                                id: (*b).into(),
                                address: (*address).into(),
                                weight: None,
                                extra: Default::default(),
                            },
                        )
                    })
                    .collect();
                ((*id).to_owned(), Entry { upstream, backends })
            })
            .collect()
    }

    /// Changes as short strings: `-up id`, `+up id`, `+be up/id=address`, `-be up/id`.
    pub(crate) fn show(changes: &[BatchChange]) -> Vec<String> {
        changes
            .iter()
            .map(|c| match c {
                BatchChange::RemoveUpstream(p) => format!("-up {}", p.id),
                BatchChange::AddUpstream(p) => format!("+up {}", p.upstream.id),
                BatchChange::AddBackend(p) => {
                    format!(
                        "+be {}/{}={}",
                        p.upstream_id, p.backend.id, p.backend.address
                    )
                }
                BatchChange::RemoveBackend(p) => format!("-be {}/{}", p.upstream_id, p.backend_id),
            })
            .collect()
    }

    /// Applies changes to a state as the registry would.
    fn apply(state: &mut State, changes: &[BatchChange]) {
        for change in changes {
            match change {
                BatchChange::RemoveUpstream(p) => {
                    state.remove(&p.id);
                }
                BatchChange::AddUpstream(p) => {
                    state.insert(
                        p.upstream.id.clone(),
                        Entry {
                            upstream: p.upstream.clone(),
                            backends: BTreeMap::new(),
                        },
                    );
                }
                BatchChange::AddBackend(p) => {
                    if let Some(e) = state.get_mut(&p.upstream_id) {
                        e.backends.insert(p.backend.id.clone(), p.backend.clone());
                    }
                }
                BatchChange::RemoveBackend(p) => {
                    if let Some(e) = state.get_mut(&p.upstream_id) {
                        e.backends.remove(&p.backend_id);
                    }
                }
            }
        }
    }

    fn assert_converges(old: &State, new: &State) {
        let mut applied = old.clone();
        apply(&mut applied, &diff(old, new));
        assert_eq!(&applied, new);
    }

    #[test]
    fn nothing_changes_nothing() {
        let s = state(&[("a", "a", &[("1", "http://a:1")])]);
        assert!(diff(&s, &s).is_empty());
        assert!(diff(&State::new(), &State::new()).is_empty());
    }

    #[test]
    fn backends_are_added_before_removals() {
        let old = state(&[("a", "a", &[("1", "http://a:1")])]);
        let new = state(&[("a", "a", &[("2", "http://a:2")])]);
        assert_eq!(show(&diff(&old, &new)), ["+be a/2=http://a:2", "-be a/1"]);
        assert_converges(&old, &new);
    }

    #[test]
    fn a_changed_backend_is_removed_then_added() {
        let old = state(&[("a", "a", &[("1", "http://a:1")])]);
        let new = state(&[("a", "a", &[("1", "http://a:9")])]);
        assert_eq!(show(&diff(&old, &new)), ["-be a/1", "+be a/1=http://a:9"]);
        assert_converges(&old, &new);
    }

    #[test]
    fn a_changed_upstream_comes_back_with_its_backends() {
        let old = state(&[("a", "a", &[("1", "http://a:1")]), ("b", "b", &[])]);
        let new = state(&[("a", "z", &[("1", "http://a:1")])]);
        assert_eq!(
            show(&diff(&old, &new)),
            ["-up a", "-up b", "+up a", "+be a/1=http://a:1"]
        );
        assert_converges(&old, &new);
    }

    #[test]
    fn whole_state_lists_everything_and_items_name_keys() {
        let s = state(&[("a", "a", &[("1", "http://a:1"), ("2", "http://a:2")])]);
        let changes = whole_state(&s);
        assert_eq!(
            show(&changes),
            ["+up a", "+be a/1=http://a:1", "+be a/2=http://a:2"]
        );
        assert_eq!(item_of(&changes[0]), Some(Item::Upstream("a".into())));
        assert_eq!(
            item_of(&changes[2]),
            Some(Item::Backend("a".into(), "2".into()))
        );
        assert_eq!(item_of(&BatchChange::remove_upstream("a")), None);
    }
}
