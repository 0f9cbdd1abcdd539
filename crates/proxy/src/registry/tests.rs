//! Unit tests of the registry: validation, idempotence and conflicts, the change feed.

use super::*;
use crate::upstream_settings::{BalancerKind, HostHeader};

pub(crate) fn upstream(id: &str, prefixes: &[&str], hostnames: &[&str]) -> Upstream {
    Upstream {
        id: id.into(),
        name: String::new(),
        timeout_ms: None,
        protocols: vec![],
        hostnames: hostnames.iter().map(|s| s.to_string()).collect(),
        prefixes: prefixes.iter().map(|s| s.to_string()).collect(),
        balancer: None,
        backend_protocol: None,
        connect_timeout_ms: None,
        max_connections_per_backend: None,
        passive_health: None,
        health_check: None,
        host_header: None,
        extra: Default::default(),
    }
}

pub(crate) fn backend(id: &str, address: &str) -> Backend {
    Backend {
        id: id.into(),
        address: address.into(),
        weight: None,
        extra: Default::default(),
    }
}

#[test]
fn validation_errors() {
    let r = Registry::new();
    let e = r.add_upstream(upstream("", &[], &[])).unwrap_err();
    assert_eq!(e.code(), codes::INVALID_VALUE);
    let e = r.add_upstream(upstream("a", &["x/y"], &[])).unwrap_err();
    assert!(matches!(e, RegistryError::InvalidUpstream { .. }));
    let e = r
        .add_backend("nope", backend("b", "http://127.0.0.1:1"))
        .unwrap_err();
    assert_eq!(e, RegistryError::UnknownUpstream("nope".into()));
    assert_eq!(e.code(), codes::UNKNOWN_UPSTREAM);
    r.add_upstream(upstream("a", &["api"], &[])).unwrap();
    for bad in [
        "not a uri",
        "127.0.0.1:80",
        "https://x:443",
        "ftp://x",
        "http://x:1/?q=1",
    ] {
        let e = r.add_backend("a", backend("b", bad)).unwrap_err();
        assert!(
            matches!(e, RegistryError::InvalidAddress { .. }),
            "{bad}: {e}"
        );
    }
    let e = r.remove_upstream("zzz").unwrap_err();
    assert_eq!(e, RegistryError::UnknownUpstream("zzz".into()));
    assert!(r.remove_backend("a", "zzz").is_err());
    let e = r.add_upstream(upstream("b", &["api"], &[])).unwrap_err();
    assert_eq!(e.code(), codes::CONFLICT);
}

#[test]
fn backend_address_parsing() {
    let e = BackendEntry::new(backend("b", "http://10.0.0.1:8080/base/")).unwrap();
    assert_eq!(e.authority.as_str(), "10.0.0.1:8080");
    assert_eq!(e.base_path, "/base");
    let e = BackendEntry::new(backend("b", "http://localhost:80")).unwrap();
    assert_eq!(e.base_path, "");
}

#[test]
fn remove_upstream_removes_backends() {
    let r = Registry::new();
    r.add_upstream(upstream("a", &["api"], &["Example.COM"]))
        .unwrap();
    r.add_backend("a", backend("b1", "http://127.0.0.1:1"))
        .unwrap();
    let s = r.snapshot();
    assert_eq!(s.upstream("a").unwrap().backends.len(), 1);
    assert!(s.by_hostname.contains_key("example.com"));
    r.remove_upstream("a").unwrap();
    let s = r.snapshot();
    assert!(s.upstreams.is_empty() && s.by_prefix.is_empty() && s.by_hostname.is_empty());
    // Re-adding it does not resurrect the old backends.
    r.add_upstream(upstream("a", &["api"], &[])).unwrap();
    assert!(r.snapshot().upstream("a").unwrap().backends.is_empty());
}

#[test]
fn snapshot_swap_and_idempotent_add() {
    let r = Registry::new();
    let empty = r.snapshot();
    assert_eq!(empty.version, 0);
    r.add_upstream(upstream("a", &["api"], &[])).unwrap();
    r.add_backend("a", backend("b1", "http://127.0.0.1:1"))
        .unwrap();
    let s1 = r.snapshot();
    assert_eq!(s1.version, 2);
    // An old snapshot is unaffected by later changes.
    assert!(empty.upstreams.is_empty());
    // Same content: no new snapshot.
    r.add_upstream(upstream("a", &["api"], &[])).unwrap();
    r.add_backend("a", backend("b1", "http://127.0.0.1:1"))
        .unwrap();
    assert_eq!(r.snapshot().version, 2);
    r.remove_backend("a", "b1").unwrap();
    assert!(r.snapshot().upstream("a").unwrap().backends.is_empty());
    assert_eq!(s1.upstream("a").unwrap().backends.len(), 1);
}

#[test]
fn same_id_with_different_content_conflicts() {
    let r = Registry::new();
    r.add_upstream(upstream("a", &["api"], &["A.example"]))
        .unwrap();
    // Normalized content (lower-cased hostname, defaulted name) counts as the same.
    r.add_upstream(upstream("a", &["api"], &["a.example"]))
        .unwrap();
    let e = r.add_upstream(upstream("a", &["v2"], &[])).unwrap_err();
    assert!(matches!(e, RegistryError::Conflict { .. }), "{e}");
    assert_eq!(e.code(), codes::CONFLICT);
    assert!(r.snapshot().by_prefix.contains_key("api"));
    r.add_backend("a", backend("b1", "http://127.0.0.1:1"))
        .unwrap();
    r.add_backend("a", backend("b1", "http://127.0.0.1:1"))
        .unwrap();
    let e = r
        .add_backend("a", backend("b1", "http://127.0.0.1:2"))
        .unwrap_err();
    assert_eq!(e.code(), codes::CONFLICT, "{e}");
    let mut extra = backend("b1", "http://127.0.0.1:1");
    extra.extra.insert("weight".into(), 2.into());
    assert_eq!(
        r.add_backend("a", extra).unwrap_err().code(),
        codes::CONFLICT
    );
    assert_eq!(r.snapshot().version, 2);
    // Unknown balancer.
    let mut bad = upstream("c", &["c"], &[]);
    bad.balancer = Some("fastest".into());
    let e = r.add_upstream(bad).unwrap_err();
    assert!(matches!(e, RegistryError::InvalidUpstream { .. }), "{e}");
    let mut rr = upstream("c", &["c"], &[]);
    rr.balancer = Some("round_robin".into());
    r.add_upstream(rr).unwrap();
    assert_eq!(
        r.snapshot().upstream("c").unwrap().balancer,
        BalancerKind::RoundRobin
    );
}

#[test]
fn change_feed_in_order() {
    let r = Registry::new();
    r.add_upstream(upstream("old", &["old"], &[])).unwrap();
    let mut rx = r.subscribe();
    let mut rx2 = r.subscribe();
    r.add_upstream(upstream("a", &["api"], &[])).unwrap();
    r.add_upstream(upstream("a", &["api"], &[])).unwrap(); // no-op: no change sent
    r.add_backend("a", backend("b2", "http://127.0.0.1:2"))
        .unwrap();
    r.add_backend("a", backend("b1", "http://127.0.0.1:1"))
        .unwrap();
    assert!(r.add_upstream(upstream("x", &["api"], &[])).is_err());
    let snap = r.snapshot();
    let ids: Vec<_> = snap.iter().map(|u| u.upstream.id.as_str()).collect();
    assert_eq!(ids, ["a", "old"]);
    assert_eq!(snap.replay().len(), 4);
    r.remove_backend("a", "b2").unwrap();
    r.add_backend("a", backend("b2", "http://127.0.0.1:2"))
        .unwrap();
    r.remove_upstream("a").unwrap();
    let mut got = Vec::new();
    while let Ok(c) = rx.try_recv() {
        got.push(c);
    }
    let added = |id: &str, addr: &str| RegistryChange::BackendAdded {
        upstream_id: "a".into(),
        backend: backend(id, addr),
    };
    let removed = |id: &str| RegistryChange::BackendRemoved {
        upstream_id: "a".into(),
        backend_id: id.into(),
    };
    let mut a = upstream("a", &["api"], &[]);
    a.name = "a".into();
    assert_eq!(
        got,
        [
            RegistryChange::UpstreamAdded(a),
            added("b2", "http://127.0.0.1:2"),
            added("b1", "http://127.0.0.1:1"),
            removed("b2"),
            added("b2", "http://127.0.0.1:2"),
            removed("b1"),
            removed("b2"),
            RegistryChange::UpstreamRemoved { id: "a".into() },
        ]
    );
    let mut n = 0;
    while rx2.try_recv().is_ok() {
        n += 1;
    }
    assert_eq!(n, got.len());
    // A dropped subscriber is forgotten.
    drop(rx2);
    let (snap, mut rx3) = r.subscribe_with_snapshot();
    assert_eq!(snap.iter().count(), 1);
    r.remove_upstream("old").unwrap();
    assert_eq!(
        rx3.try_recv().unwrap(),
        RegistryChange::UpstreamRemoved { id: "old".into() }
    );
    assert_eq!(r.lock().subscribers.len(), 2);
}

#[test]
fn same_prefix_on_disjoint_listeners() {
    let r = Registry::new();
    let mut a = upstream("a", &["api"], &[]);
    a.protocols = vec!["public".into()];
    let mut b = upstream("b", &["api"], &[]);
    b.protocols = vec!["internal".into()];
    r.add_upstream(a).unwrap();
    r.add_upstream(b).unwrap();
    assert_eq!(r.snapshot().by_prefix["api"].len(), 2);
}

#[test]
fn weights_and_health_settings_are_validated() {
    let r = Registry::new();
    r.add_upstream(upstream("a", &["api"], &[])).unwrap();
    let mut zero = backend("b", "http://127.0.0.1:1");
    zero.weight = Some(0);
    let e = r.add_backend("a", zero).unwrap_err();
    assert!(matches!(e, RegistryError::InvalidBackend { .. }), "{e}");
    assert_eq!(e.code(), codes::INVALID_VALUE);
    let mut heavy = backend("b", "http://127.0.0.1:1");
    heavy.weight = Some(5);
    r.add_backend("a", heavy).unwrap();
    assert_eq!(r.snapshot().upstream("a").unwrap().backends[0].weight, 5);
    // Another weight under the same id is a conflict, like another address.
    let mut other = backend("b", "http://127.0.0.1:1");
    other.weight = Some(6);
    assert_eq!(
        r.add_backend("a", other).unwrap_err().code(),
        codes::CONFLICT
    );

    let bad = [
        Upstream {
            passive_health: Some(gatekeeper_rpc::types::PassiveHealth {
                failures: Some(2),
                cooldown_ms: Some(0),
            }),
            ..upstream("p", &["p"], &[])
        },
        Upstream {
            health_check: Some(gatekeeper_rpc::types::HealthCheck {
                expected_status: Some("nope".into()),
                ..Default::default()
            }),
            ..upstream("h", &["h"], &[])
        },
    ];
    for u in bad {
        let e = r.add_upstream(u).unwrap_err();
        assert_eq!(e.code(), codes::INVALID_VALUE, "{e}");
    }
}

#[test]
fn passive_defaults_apply_to_upstreams_without_their_own() {
    use crate::upstream_settings::PassivePolicy;
    use std::time::Duration;
    let r = Registry::new();
    r.add_upstream(upstream("a", &["a"], &[])).unwrap();
    r.add_upstream(Upstream {
        passive_health: Some(gatekeeper_rpc::types::PassiveHealth {
            failures: Some(7),
            cooldown_ms: None,
        }),
        ..upstream("b", &["b"], &[])
    })
    .unwrap();
    let policy = |id: &str| r.snapshot().upstream(id).unwrap().passive_health;
    assert_eq!(policy("a"), PassivePolicy::default());
    let defaults = PassivePolicy {
        failures: 1,
        cooldown: Duration::from_secs(2),
    };
    r.set_passive_health_defaults(defaults);
    assert_eq!(policy("a"), defaults);
    assert_eq!(
        policy("b"),
        PassivePolicy {
            failures: 7,
            cooldown: Duration::from_secs(2)
        }
    );
}

#[test]
fn backend_health_survives_other_changes() {
    use crate::upstream_settings::PassivePolicy;
    let r = Registry::new();
    r.add_upstream(upstream("a", &["a"], &[])).unwrap();
    r.add_backend("a", backend("b", "http://127.0.0.1:1"))
        .unwrap();
    let entry = r.snapshot().upstream("a").unwrap().backends[0].clone();
    let policy = PassivePolicy {
        failures: 1,
        ..PassivePolicy::default()
    };
    entry.health().record_failure(&policy);
    assert!(!entry.is_available());
    let backend_b = || {
        r.snapshot()
            .upstream("a")
            .unwrap()
            .backend("b")
            .unwrap()
            .clone()
    };
    // Unrelated changes publish new snapshots that share the same backend entry.
    r.add_upstream(upstream("c", &["c"], &[])).unwrap();
    r.add_backend("a", backend("d", "http://127.0.0.1:2"))
        .unwrap();
    let now = backend_b();
    assert!(Arc::ptr_eq(&entry, &now));
    assert!(!now.is_available());
    // Removed and added again: a fresh entry, healthy.
    r.remove_backend("a", "b").unwrap();
    r.add_backend("a", backend("b", "http://127.0.0.1:1"))
        .unwrap();
    let fresh = backend_b();
    assert!(fresh.is_available());
}

#[test]
fn host_header_is_checked_and_parsed() {
    let r = Registry::new();
    let mut bad = upstream("a", &["a"], &[]);
    bad.host_header = Some("not a host".into());
    let e = r.add_upstream(bad).unwrap_err();
    assert!(matches!(e, RegistryError::InvalidUpstream { .. }), "{e}");
    assert_eq!(e.code(), codes::INVALID_VALUE);
    let mut literal = upstream("a", &["a"], &[]);
    literal.host_header = Some("api.internal:8080".into());
    r.add_upstream(literal).unwrap();
    let mut backend_host = upstream("b", &["b"], &[]);
    backend_host.host_header = Some("backend".into());
    r.add_upstream(backend_host).unwrap();
    let snapshot = r.snapshot();
    assert_eq!(
        snapshot.upstream("a").unwrap().host_header,
        HostHeader::Literal(http::HeaderValue::from_static("api.internal:8080"))
    );
    assert_eq!(
        snapshot.upstream("b").unwrap().host_header,
        HostHeader::Backend
    );
}

#[test]
fn a_drained_backend_is_unavailable_through_snapshots_until_enabled() {
    let r = Registry::new();
    r.add_upstream(upstream("a", &["a"], &[])).unwrap();
    r.add_backend("a", backend("b", "http://127.0.0.1:1"))
        .unwrap();
    let entry = r.snapshot().upstream("a").unwrap().backends[0].clone();
    assert!(entry.is_available() && !entry.is_drained());
    entry.set_drained(true);
    assert!(!entry.is_available());
    r.add_backend("a", backend("d", "http://127.0.0.1:2"))
        .unwrap();
    let later = r.snapshot();
    let now = later.upstream("a").unwrap().backend("b").unwrap();
    assert!(now.is_drained() && !now.is_available());
    assert!(later
        .upstream("a")
        .unwrap()
        .backend("d")
        .unwrap()
        .is_available());
    now.set_drained(false);
    assert!(entry.is_available());
}

#[test]
fn a_drain_holds_when_the_backend_is_removed_and_added_again() {
    let r = Registry::new();
    r.add_upstream(upstream("a", &["a"], &[])).unwrap();
    r.add_backend("a", backend("b", "http://127.0.0.1:1"))
        .unwrap();
    let drained = |r: &Registry| {
        r.snapshot()
            .upstream("a")
            .and_then(|u| u.backend("b").map(|b| b.is_drained()))
    };
    r.snapshot().upstream("a").unwrap().backends[0].set_drained(true);
    // Changed by its plugin: removed, then added with another address.
    r.remove_backend("a", "b").unwrap();
    r.add_backend("a", backend("b", "http://127.0.0.1:2"))
        .unwrap();
    assert_eq!(drained(&r), Some(true));
    // Its upstream replaced: the drain holds too.
    r.remove_upstream("a").unwrap();
    r.add_upstream(upstream("a", &["a"], &[])).unwrap();
    r.add_backend("a", backend("b", "http://127.0.0.1:2"))
        .unwrap();
    assert_eq!(drained(&r), Some(true));
    // Enabled, removed and added: not drained.
    r.snapshot().upstream("a").unwrap().backends[0].set_drained(false);
    r.remove_backend("a", "b").unwrap();
    r.add_backend("a", backend("b", "http://127.0.0.1:2"))
        .unwrap();
    assert_eq!(drained(&r), Some(false));
}
