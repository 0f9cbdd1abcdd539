//! Tests: the registry applies the upstream fields that say how backends are reached
//! (`backend_protocol`, `max_connections_per_backend`; parsed by
//! [`UpstreamSettings`](crate::upstream_settings::UpstreamSettings)).

use gatekeeper_rpc::codes;
use gatekeeper_rpc::types::Backend;

use crate::registry::tests::upstream;
use crate::registry::{Registry, RegistryError};
use crate::upstream_settings::BackendProtocol;

#[test]
fn backend_protocol_is_checked_and_parsed() {
    let r = Registry::new();
    let mut bad = upstream("bad", &["bad"], &[]);
    bad.backend_protocol = Some("h3".into());
    let e = r.add_upstream(bad).unwrap_err();
    assert!(matches!(e, RegistryError::InvalidUpstream { .. }), "{e}");
    assert_eq!(e.code(), codes::INVALID_VALUE);
    assert!(e.to_string().contains("http1, h2c"), "{e}");
    for (id, name, expected) in [
        ("a", None, BackendProtocol::Http1),
        ("b", Some("http1"), BackendProtocol::Http1),
        ("c", Some("h2c"), BackendProtocol::H2c),
    ] {
        let mut u = upstream(id, &[id], &[]);
        u.backend_protocol = name.map(str::to_string);
        r.add_upstream(u).unwrap();
        let snapshot = r.snapshot();
        assert_eq!(snapshot.upstream(id).unwrap().backend_protocol, expected);
    }
}

#[test]
fn connection_limit_applies_to_each_backend() {
    let r = Registry::new();
    let mut zero = upstream("zero", &["zero"], &[]);
    zero.max_connections_per_backend = Some(0);
    let e = r.add_upstream(zero).unwrap_err();
    assert_eq!(e.code(), codes::INVALID_VALUE);
    let mut two = upstream("two", &["two"], &[]);
    two.max_connections_per_backend = Some(2);
    r.add_upstream(two).unwrap();
    r.add_upstream(upstream("free", &["free"], &[])).unwrap();
    for (u, id) in [("two", "a"), ("two", "b"), ("free", "a")] {
        let backend = Backend {
            id: id.into(),
            address: "http://127.0.0.1:1".into(),
            weight: None,
            extra: Default::default(),
        };
        r.add_backend(u, backend).unwrap();
    }
    let snapshot = r.snapshot();
    for b in &snapshot.upstream("two").unwrap().backends {
        assert_eq!(b.connection_slots().unwrap().available_permits(), 2);
    }
    let free = &snapshot.upstream("free").unwrap().backends[0];
    assert!(free.connection_slots().is_none());
}
