//! Tests of `apply_batch` through the [`RegistryManager`]: replace mode's diff, atomicity, and
//! the ownership a batch records.

#![allow(clippy::unwrap_used)]

use std::sync::Arc;

use gatekeeper_plugin_host::Manager;
use gatekeeper_proxy::Registry;
use gatekeeper_rpc::codes;
use gatekeeper_rpc::methods::{ApplyBatchParams, ApplyBatchRefused, ApplyBatchResult};
use serde_json::{json, Value};

use super::RegistryManager;

fn manager() -> (Arc<Registry>, RegistryManager) {
    let registry = Arc::new(Registry::new());
    (registry.clone(), RegistryManager::new(registry))
}

fn batch(
    manager: &RegistryManager,
    plugin: &str,
    replace: bool,
    changes: Value,
) -> Result<ApplyBatchResult, gatekeeper_rpc::ErrorObject> {
    let params: ApplyBatchParams =
        serde_json::from_value(json!({"changes": changes, "replace": replace})).unwrap();
    manager.apply_batch(plugin, params)
}

fn upstream(id: &str, prefix: &str) -> Value {
    json!({"add_upstream": {"upstream": {"id": id, "prefixes": [prefix]}}})
}

fn backend(upstream_id: &str, id: &str, port: u16) -> Value {
    json!({"add_backend": {"upstream_id": upstream_id,
        "backend": {"id": id, "address": format!("http://127.0.0.1:{port}")}}})
}

/// Every upstream as `id:prefix[backend@port,…]`, ordered by id.
fn state(registry: &Registry) -> Vec<String> {
    registry
        .snapshot()
        .iter()
        .map(|u| {
            let backends: Vec<String> = u
                .backends
                .iter()
                .map(|b| {
                    let port = b.backend.address.rsplit(':').next().unwrap_or_default();
                    format!("{}@{port}", b.backend.id)
                })
                .collect();
            format!(
                "{}:{}[{}]",
                u.upstream.id,
                u.upstream.prefixes.join(","),
                backends.join(",")
            )
        })
        .collect()
}

#[test]
fn replace_removes_what_is_missing_replaces_what_changed_and_leaves_other_plugins_alone() {
    let (registry, manager) = manager();
    let first = json!([
        upstream("a", "a"),
        backend("a", "a1", 1),
        backend("a", "a2", 2),
        upstream("b", "b"),
        backend("b", "b1", 3),
        upstream("c", "c"),
        backend("c", "c1", 4),
        backend("c", "c2", 5),
    ]);
    let result = batch(&manager, "files", true, first.clone()).unwrap();
    assert_eq!((result.upstreams_added, result.backends_added), (3, 5));
    batch(
        &manager,
        "consul",
        false,
        json!([upstream("z", "z"), backend("z", "z1", 9)]),
    )
    .unwrap();

    // The same state again changes nothing.
    let result = batch(&manager, "files", true, first).unwrap();
    assert_eq!(
        result,
        ApplyBatchResult {
            unchanged: 8,
            ..ApplyBatchResult::default()
        }
    );

    // `a` loses a2 and a1 moves; `b` gets another prefix (keeping b1, re-added); `c` is gone;
    // `d` is new; the other plugin's `z` stays.
    let result = batch(
        &manager,
        "files",
        true,
        json!([
            backend("a", "a1", 11),
            upstream("a", "a"),
            upstream("b", "bb"),
            backend("b", "b1", 3),
            upstream("d", "d"),
        ]),
    )
    .unwrap();
    assert_eq!(
        state(&registry),
        ["a:a[a1@11]", "b:bb[b1@3]", "d:d[]", "z:z[z1@9]"]
    );
    assert_eq!(
        result,
        ApplyBatchResult {
            upstreams_added: 2,   // b (again), d
            upstreams_removed: 2, // b (changed), c
            backends_added: 2,    // a1 (changed), b1 (with its new b)
            backends_removed: 2,  // a1 (changed), a2
            unchanged: 1,         // a
        }
    );

    // An empty desired state removes everything the plugin added, and only that.
    batch(&manager, "files", true, json!([])).unwrap();
    assert_eq!(state(&registry), ["z:z[z1@9]"]);
    assert!(manager.sweep("files", u64::MAX).is_empty());
}

#[test]
fn replace_does_not_change_another_plugins_upstream() {
    let (registry, manager) = manager();
    batch(
        &manager,
        "consul",
        false,
        json!([upstream("z", "z"), backend("z", "z1", 9)]),
    )
    .unwrap();
    // Declaring it with other content is a conflict, as for single calls; nothing changes.
    let error = batch(&manager, "files", true, json!([upstream("z", "other")])).unwrap_err();
    assert_eq!(error.code(), codes::CONFLICT);
    assert_eq!(state(&registry), ["z:z[z1@9]"]);
    // The same content is accepted and its backends are not pruned; as after add_upstream, it
    // is the declaring plugin's from then on.
    batch(&manager, "files", true, json!([upstream("z", "z")])).unwrap();
    assert_eq!(state(&registry), ["z:z[z1@9]"]);
    assert!(manager.sweep("consul", u64::MAX).is_empty());
}

#[test]
fn a_refused_batch_changes_neither_the_registry_nor_the_ownership() {
    let (registry, manager) = manager();
    batch(
        &manager,
        "files",
        true,
        json!([upstream("a", "a"), backend("a", "a1", 1)]),
    )
    .unwrap();
    batch(&manager, "consul", false, json!([upstream("z", "z")])).unwrap();
    let before = state(&registry);
    let version = registry.snapshot().version;

    let error = batch(
        &manager,
        "files",
        true,
        json!([
            upstream("b", "b"),
            backend("b", "b1", 2),
            upstream("c", "z"),
            backend("nope", "x", 3),
            json!({"add_backend": {"upstream_id": "b", "backend": {"id": "bad", "address": "ftp://x"}}}),
        ]),
    )
    .unwrap_err();
    assert_eq!(error.code(), codes::CONFLICT);
    assert!(
        error
            .message()
            .starts_with("3 of 5 changes refused, nothing applied; change 2: "),
        "{}",
        error.message()
    );
    let data: ApplyBatchRefused = serde_json::from_str(error.data().unwrap().get()).unwrap();
    assert_eq!(data.total, 5);
    let refused: Vec<(usize, i32)> = data.refused.iter().map(|r| (r.index, r.code)).collect();
    assert_eq!(
        refused,
        [
            (2, codes::CONFLICT),
            (3, codes::UNKNOWN_UPSTREAM),
            (4, codes::INVALID_VALUE)
        ]
    );
    assert_eq!(state(&registry), before);
    assert_eq!(registry.snapshot().version, version);
    // The ownership is as before: `files` owns `a` only, `consul` owns `z`.
    assert_eq!(manager.sweep("files", u64::MAX), ["a"]);
    assert_eq!(manager.sweep("consul", u64::MAX), ["z"]);
}

#[test]
fn a_batch_is_applied_in_order_and_records_its_owners() {
    let (registry, manager) = manager();
    let result = batch(
        &manager,
        "files",
        false,
        json!([
            upstream("a", "a"),
            backend("a", "a1", 1),
            upstream("b", "b"),
            {"remove_upstream": {"id": "b"}},
            upstream("c", "c"),
            backend("c", "c1", 2),
            {"remove_backend": {"upstream_id": "c", "backend_id": "c1"}},
            upstream("a", "a"),
        ]),
    )
    .unwrap();
    assert_eq!(
        result,
        ApplyBatchResult {
            upstreams_added: 3,
            upstreams_removed: 1,
            backends_added: 2,
            backends_removed: 1,
            unchanged: 1,
        }
    );
    assert_eq!(state(&registry), ["a:a[a1@1]", "c:c[]"]);
    let mut owned = manager.sweep("files", u64::MAX);
    owned.sort();
    assert_eq!(owned, ["a", "c"]);
    assert!(state(&registry).is_empty());
}

#[test]
fn after_a_reload_a_batch_replaces_the_plugins_changed_upstreams() {
    let (registry, manager) = manager();
    batch(
        &manager,
        "files",
        false,
        json!([upstream("a", "a"), upstream("b", "b")]),
    )
    .unwrap();
    // A restart with new settings declares `a` anew with another prefix, as add_upstream may.
    let mark = manager.mark("files");
    batch(&manager, "files", false, json!([upstream("a", "new")])).unwrap();
    assert_eq!(manager.sweep("files", mark), ["b"]);
    assert_eq!(state(&registry), ["a:new[]"]);
    // Without a new mark, other content is a conflict.
    let error = batch(&manager, "files", false, json!([upstream("a", "x")])).unwrap_err();
    assert_eq!(error.code(), codes::CONFLICT);
}

#[test]
fn replace_allows_only_adds() {
    let (registry, manager) = manager();
    let error = batch(
        &manager,
        "files",
        true,
        json!([upstream("a", "a"), {"remove_upstream": {"id": "a"}}]),
    )
    .unwrap_err();
    assert_eq!(error.code(), codes::INVALID_PARAMS);
    assert!(
        error.message().contains("change 1: "),
        "{}",
        error.message()
    );
    assert!(registry.snapshot().is_empty());
}
