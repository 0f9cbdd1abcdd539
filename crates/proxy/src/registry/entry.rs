//! What a [`Snapshot`](super::Snapshot) holds: upstreams and backends with their parsed fields
//! and the live counters the built-in balancers read (in-flight requests, round-robin position).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use gatekeeper_rpc::types::{Backend, Upstream};
use http::uri::{Authority, Scheme, Uri};

use super::RegistryError;
use crate::balancer::BalancerKind;
use crate::forwarded::HostHeader;

/// A backend with its address parsed once, when it was added.
///
/// The same `Arc<BackendEntry>` is shared by every snapshot until the backend is removed or
/// replaced, so its in-flight counter survives registry changes.
#[derive(Debug)]
pub struct BackendEntry {
    /// The backend as the plugin sent it.
    pub backend: Backend,
    /// `host:port` to connect to.
    pub authority: Authority,
    /// Path prepended to forwarded paths, without trailing `/` (empty when the address has none).
    pub base_path: String,
    in_flight: AtomicUsize,
}

impl PartialEq for BackendEntry {
    /// Compares the backend and its parsed address (not the in-flight counter).
    fn eq(&self, other: &Self) -> bool {
        self.backend == other.backend
    }
}

impl BackendEntry {
    /// Validates a backend and parses its address (`http://host[:port][/path]`).
    pub fn new(backend: Backend) -> Result<Self, RegistryError> {
        let invalid = |reason: &str| RegistryError::InvalidAddress {
            id: backend.id.clone(),
            address: backend.address.clone(),
            reason: reason.to_string(),
        };
        if backend.id.is_empty() {
            return Err(invalid("empty backend id"));
        }
        let uri: Uri = backend
            .address
            .parse()
            .map_err(|e: http::uri::InvalidUri| invalid(&e.to_string()))?;
        match uri.scheme() {
            Some(s) if *s == Scheme::HTTP => {}
            Some(s) if *s == Scheme::HTTPS => {
                return Err(invalid("https backends are not supported yet"))
            }
            Some(_) => return Err(invalid("scheme must be http")),
            None => return Err(invalid("expected http://host:port")),
        }
        let authority = uri
            .authority()
            .cloned()
            .ok_or_else(|| invalid("missing host"))?;
        if authority.host().is_empty() || authority.as_str().contains('@') {
            return Err(invalid("expected http://host:port"));
        }
        if uri.query().is_some() {
            return Err(invalid("a query is not allowed"));
        }
        let base_path = uri.path().trim_end_matches('/').to_string();
        Ok(BackendEntry {
            backend,
            authority,
            base_path,
            in_flight: AtomicUsize::new(0),
        })
    }

    /// Requests currently sent to this backend whose response has not finished.
    pub fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::Relaxed)
    }
}

/// Counts one request as in flight to a backend until dropped (when the response body finishes
/// or is dropped, or forwarding fails).
#[derive(Debug)]
pub struct InFlight(Arc<BackendEntry>);

impl InFlight {
    /// Increments the backend's in-flight counter.
    pub fn new(backend: Arc<BackendEntry>) -> Self {
        backend.in_flight.fetch_add(1, Ordering::Relaxed);
        InFlight(backend)
    }

    /// The backend.
    pub fn backend(&self) -> &Arc<BackendEntry> {
        &self.0
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

/// An upstream with its backends, as stored in a [`Snapshot`](super::Snapshot).
#[derive(Debug)]
pub struct UpstreamEntry {
    /// The upstream as the plugin sent it (hostnames lower-cased, name defaulted to the id).
    pub upstream: Upstream,
    /// Its backends, ordered by id.
    pub backends: Vec<Arc<BackendEntry>>,
    /// The built-in balancer named by `upstream.balancer`.
    pub balancer: BalancerKind,
    /// The `Host` its backends receive, read from `upstream.host_header` (checked by the
    /// registry; an invalid value, only possible for entries built elsewhere, preserves).
    pub host_header: HostHeader,
    /// Round-robin position, shared by every snapshot of this upstream.
    round_robin: Arc<AtomicUsize>,
}

impl UpstreamEntry {
    /// An entry for `upstream` with these backends (ordered by id) and balancer; `round_robin`
    /// is the upstream's round-robin position (shared across snapshots by the registry).
    pub fn new(
        upstream: Upstream,
        backends: Vec<Arc<BackendEntry>>,
        balancer: BalancerKind,
        round_robin: Arc<AtomicUsize>,
    ) -> Self {
        UpstreamEntry {
            host_header: HostHeader::parse(upstream.host_header.as_deref()).unwrap_or_default(),
            upstream,
            backends,
            balancer,
            round_robin,
        }
    }

    /// Whether a listener may route to this upstream (an empty `protocols` list allows all).
    pub fn allows_listener(&self, listener: &str) -> bool {
        self.upstream.protocols.is_empty() || self.upstream.protocols.iter().any(|p| p == listener)
    }

    /// The backend with this id (backends are ordered by id: a binary search).
    pub fn backend(&self, id: &str) -> Option<&Arc<BackendEntry>> {
        self.backends
            .binary_search_by(|b| b.backend.id.as_str().cmp(id))
            .ok()
            .and_then(|i| self.backends.get(i))
    }

    /// The next round-robin position (wrapping).
    pub(crate) fn next_round_robin(&self) -> usize {
        self.round_robin.fetch_add(1, Ordering::Relaxed)
    }
}
