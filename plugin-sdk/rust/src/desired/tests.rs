#![allow(clippy::unwrap_used)]

use super::*;

/// An upstream for [`state`]: `(upstream id, prefix, [(backend id, address)])`.
type Spec<'a> = (&'a str, &'a str, &'a [(&'a str, &'a str)]);

fn upstream(id: &str, prefix: &str) -> Upstream {
    Upstream {
        id: id.into(),
        prefixes: vec![prefix.into()],
        ..Upstream::default()
    }
}

fn backend(id: &str, address: &str) -> Backend {
    Backend {
        id: id.into(),
        address: address.into(),
        weight: None,
        extra: Default::default(),
    }
}

fn desired((id, prefix, backends): Spec<'_>) -> DesiredUpstream {
    DesiredUpstream::with_backends(
        upstream(id, prefix),
        backends.iter().map(|(b, address)| backend(b, address)),
    )
}

/// A state from upstream specs.
fn state(specs: &[Spec<'_>]) -> DesiredState {
    specs.iter().copied().map(desired).collect()
}

/// Changes as short strings: `-up id`, `+up id`, `+be up/id=address`, `-be up/id`.
fn show(changes: &[BatchChange]) -> Vec<String> {
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

/// Applies changes to a state as the registry would (a backend of an unknown upstream is
/// ignored: the registry refuses it).
fn apply(state: &mut DesiredState, changes: &[BatchChange]) {
    for change in changes {
        match change {
            BatchChange::RemoveUpstream(p) => {
                state.remove(&p.id);
            }
            BatchChange::AddUpstream(p) => {
                state.insert(DesiredUpstream::new(p.upstream.clone()));
            }
            BatchChange::AddBackend(p) => {
                if let Some(mut entry) = state.remove(&p.upstream_id) {
                    entry.insert_backend(p.backend.clone());
                    state.insert(entry);
                }
            }
            BatchChange::RemoveBackend(p) => {
                if let Some(mut entry) = state.remove(&p.upstream_id) {
                    entry.remove_backend(&p.backend_id);
                    state.insert(entry);
                }
            }
        }
    }
}

/// Asserts that applying `old.changes_to(new)` to `old` gives `new` (up to backend order).
fn assert_converges(old: &DesiredState, new: &DesiredState) {
    let mut applied = old.clone();
    apply(&mut applied, &old.changes_to(new));
    assert_eq!(&applied, new);
    assert!(applied.changes_to(new).is_empty());
}

const API: Spec<'static> = ("api", "api", &[("a", "http://a:1"), ("b", "http://b:1")]);

#[test]
fn the_same_state_changes_nothing() {
    assert!(state(&[API]).changes_to(&state(&[API])).is_empty());
    assert!(DesiredState::new()
        .changes_to(&DesiredState::new())
        .is_empty());
}

#[test]
fn reordered_backends_are_equal_and_change_nothing() {
    let reordered = state(&[("api", "api", &[("b", "http://b:1"), ("a", "http://a:1")])]);
    assert_eq!(state(&[API]), reordered);
    assert!(state(&[API]).changes_to(&reordered).is_empty());
}

#[test]
fn everything_new_is_added_from_nothing_backends_in_their_order() {
    let new = state(&[("api", "api", &[("b", "http://b:1"), ("a", "http://a:1")])]);
    assert_eq!(
        show(&DesiredState::new().changes_to(&new)),
        ["+up api", "+be api/b=http://b:1", "+be api/a=http://a:1"]
    );
}

#[test]
fn a_removed_upstream_is_removed_alone() {
    let two = state(&[API, ("web", "web", &[("w", "http://w:1")])]);
    assert_eq!(show(&two.changes_to(&state(&[API]))), ["-up web"]);
    assert_eq!(
        show(&state(&[API]).changes_to(&DesiredState::new())),
        ["-up api"]
    );
}

#[test]
fn backend_changes_add_first_then_remove() {
    let changed = state(&[("api", "api", &[("b", "http://b:1"), ("c", "http://c:1")])]);
    assert_eq!(
        show(&state(&[API]).changes_to(&changed)),
        ["+be api/c=http://c:1", "-be api/a"]
    );
    assert_converges(&state(&[API]), &changed);
}

#[test]
fn a_changed_backend_is_removed_then_added() {
    let old = state(&[("a", "a", &[("1", "http://a:1")])]);
    let new = state(&[("a", "a", &[("1", "http://a:9")])]);
    assert_eq!(
        show(&old.changes_to(&new)),
        ["-be a/1", "+be a/1=http://a:9"]
    );
    assert_converges(&old, &new);
}

#[test]
fn a_changed_upstream_is_removed_and_added_with_its_backends() {
    let old = state(&[API, ("b", "b", &[])]);
    let new = state(&[("api", "v2", &[("a", "http://a:1")])]);
    assert_eq!(
        show(&old.changes_to(&new)),
        ["-up api", "-up b", "+up api", "+be api/a=http://a:1"]
    );
    assert_converges(&old, &new);
}

#[test]
fn removals_come_before_additions_so_prefixes_can_move() {
    let old = state(&[("a", "x", &[]), ("b", "y", &[])]);
    let swapped = state(&[("a", "y", &[]), ("b", "x", &[])]);
    assert_eq!(
        show(&old.changes_to(&swapped)),
        ["-up a", "-up b", "+up a", "+up b"]
    );
    let moved = state(&[("c", "x", &[]), ("b", "y", &[])]);
    assert_eq!(show(&old.changes_to(&moved)), ["-up a", "+up c"]);
}

#[test]
fn a_mixed_change_converges() {
    let old = state(&[
        ("a", "a", &[("1", "http://1:1"), ("2", "http://2:1")]),
        ("b", "b", &[("3", "http://3:1")]),
        ("c", "c", &[]),
    ]);
    let mut new = state(&[
        (
            "a",
            "a",
            &[
                ("2", "http://2:1"),
                ("4", "http://4:1"),
                ("4#2", "http://4:1"),
            ],
        ),
        ("d", "c", &[("5", "http://5:1")]),
    ]);
    let timed = Upstream {
        timeout_ms: Some(1000),
        ..upstream("b", "b")
    };
    new.insert(DesiredUpstream::with_backends(
        timed,
        [backend("3", "http://3:1")],
    ));
    assert_eq!(
        show(&old.changes_to(&new)),
        [
            "-up b",
            "-up c",
            "+up b",
            "+be b/3=http://3:1",
            "+up d",
            "+be d/5=http://5:1",
            "+be a/4=http://4:1",
            "+be a/4#2=http://4:1",
            "-be a/1",
        ]
    );
    assert_converges(&old, &new);
}

#[test]
fn the_whole_batch_is_each_upstream_by_id_then_its_backends_in_order() {
    let s = state(&[
        ("b", "b", &[("1", "http://b:1")]),
        ("a", "a", &[("2", "http://a:2"), ("1", "http://a:1")]),
    ]);
    assert_eq!(
        show(&s.whole_batch()),
        [
            "+up a",
            "+be a/2=http://a:2",
            "+be a/1=http://a:1",
            "+up b",
            "+be b/1=http://b:1"
        ]
    );
    assert!(DesiredState::new().whole_batch().is_empty());
}

#[test]
fn a_backend_id_given_again_replaces_the_first_in_its_place() {
    let mut api = desired(("api", "api", &[("a", "http://a:1"), ("b", "http://b:1")]));
    let replaced = api.insert_backend(backend("a", "http://a:9"));
    assert_eq!(replaced.map(|b| b.address), Some("http://a:1".to_owned()));
    let order: Vec<&str> = api.backends().map(|b| b.address.as_str()).collect();
    assert_eq!(order, ["http://a:9", "http://b:1"]);
    assert!(api.remove_backend("a").is_some());
    assert!(api.remove_backend("a").is_none());
    assert_eq!(api.backend("b").map(|b| b.id.as_str()), Some("b"));
    assert_eq!(api.id(), "api");
}

#[test]
fn an_upstream_id_given_again_replaces_the_first() {
    let s = state(&[("api", "x", &[]), ("api", "y", &[])]);
    assert_eq!(s.len(), 1);
    assert_eq!(
        s.get("api").map(|u| u.upstream().prefixes.clone()),
        Some(vec!["y".to_owned()])
    );
}

#[test]
fn apply_ignores_backends_of_unknown_upstreams() {
    let mut applied = DesiredState::new();
    apply(
        &mut applied,
        &[
            BatchChange::add_backend("ghost", backend("x", "http://x")),
            BatchChange::remove_backend("ghost", "x"),
        ],
    );
    assert!(applied.is_empty());
}
