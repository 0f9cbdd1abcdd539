//! Validation of the upstream fields that say how backends are reached: `backend_protocol`,
//! `connect_timeout_ms` and `max_connections_per_backend`.

use gatekeeper_rpc::types::{Upstream, BACKEND_PROTOCOLS};

use super::RegistryError;
use crate::forward::BackendProtocol;

/// Refuses an unknown `backend_protocol` and a `max_connections_per_backend` of 0.
/// (`connect_timeout_ms` of 0 means "the proxy's default", like `timeout_ms`.)
pub(super) fn validate(upstream: &Upstream) -> Result<(), RegistryError> {
    let invalid = |reason: String| RegistryError::InvalidUpstream {
        id: upstream.id.clone(),
        reason,
    };
    if let Some(name) = upstream.backend_protocol.as_deref() {
        if name.parse::<BackendProtocol>().is_err() {
            return Err(invalid(format!(
                "unknown backend_protocol `{name}` (expected one of {})",
                BACKEND_PROTOCOLS.join(", ")
            )));
        }
    }
    if upstream.max_connections_per_backend == Some(0) {
        return Err(invalid(
            "max_connections_per_backend must be at least 1 (leave it out for no limit)".into(),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use gatekeeper_rpc::codes;
    use gatekeeper_rpc::types::Backend;

    use crate::forward::BackendProtocol;
    use crate::registry::tests::upstream;
    use crate::registry::{Registry, RegistryError};

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
}
