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
