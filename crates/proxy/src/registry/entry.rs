//! What a [`Snapshot`](super::Snapshot) holds: upstreams and backends with their parsed fields
//! and the live counters the built-in balancers read (in-flight requests, round-robin position,
//! weights and health), and each backend's connection slots (its upstream's
//! `max_connections_per_backend`).

use std::sync::atomic::{AtomicBool, AtomicI64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use gatekeeper_rpc::types::{Backend, Upstream};
use http::uri::{Authority, Scheme, Uri};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::health_state::{BackendHealth, HealthState};
use super::RegistryError;
use crate::upstream_settings::{
    positive_millis, ActiveCheck, BackendProtocol, BalancerKind, HostHeader, PassivePolicy,
    UpstreamSettings,
};

/// A backend with its address parsed once, when it was added.
///
/// The same `Arc<BackendEntry>` is shared by every snapshot until the backend is removed or
/// replaced, so its in-flight counter and its health survive registry changes.
#[derive(Debug)]
pub struct BackendEntry {
    /// The backend as the plugin sent it.
    pub backend: Backend,
    /// `host:port` to connect to.
    pub authority: Authority,
    /// Path prepended to forwarded paths, without trailing `/` (empty when the address has none).
    pub base_path: String,
    in_flight: AtomicUsize,
    /// One permit per request allowed in flight at once, when the upstream limits it.
    connection_slots: Option<Arc<Semaphore>>,
    /// The backend's weight (`backend.weight`, 1 when absent; never 0).
    pub weight: u32,
    /// Passive and active health.
    health: BackendHealth,
    /// Taken out of rotation by an operator (admin `drain`); in-flight requests finish.
    drained: AtomicBool,
    /// Smooth weighted round robin: this backend's current weight (read and written under the
    /// upstream's round-robin lock).
    pub(crate) swrr_current: AtomicI64,
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
        if backend.weight == Some(0) {
            return Err(RegistryError::InvalidBackend {
                id: backend.id.clone(),
                reason: "weight must be at least 1".into(),
            });
        }
        let weight = backend.weight.unwrap_or(1);
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
            connection_slots: None,
            weight,
            health: BackendHealth::default(),
            drained: AtomicBool::new(false),
            swrr_current: AtomicI64::new(0),
        })
    }

    /// Limits the requests in flight at once to this backend to `limit` (`None`: no limit).
    pub fn with_connection_limit(mut self, limit: Option<u32>) -> Self {
        self.connection_slots = limit.map(|n| Arc::new(Semaphore::new(n as usize)));
        self
    }

    /// The connection slots, when the upstream limits them (see [`InFlight::hold`]).
    pub(crate) fn connection_slots(&self) -> Option<&Arc<Semaphore>> {
        self.connection_slots.as_ref()
    }

    /// The backend's passive and active health (the proxy records outcomes into it).
    pub fn health(&self) -> &BackendHealth {
        &self.health
    }

    /// Whether the built-in balancers may send new requests to this backend: not drained by an
    /// operator, not ejected by passive health (or its cool-down is over) and not failed by
    /// active checks.
    pub fn is_available(&self) -> bool {
        !self.is_drained() && self.health.is_available()
    }

    /// Whether an operator drained the backend (see [`set_drained`](Self::set_drained)).
    pub fn is_drained(&self) -> bool {
        self.drained.load(Ordering::Relaxed)
    }

    /// Drains the backend (`true`: the built-in balancers send it no new requests while another
    /// backend of its upstream is available; requests in flight finish) or puts it back. Like
    /// the health, it lasts as long as the entry: through registry snapshots, until the backend
    /// is removed or replaced.
    pub fn set_drained(&self, drained: bool) {
        self.drained.store(drained, Ordering::Relaxed);
    }

    /// A point-in-time copy of the backend's health, e.g. for an admin interface.
    pub fn health_state(&self) -> HealthState {
        self.health.state()
    }

    /// Requests currently sent to this backend whose response has not finished.
    pub fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::Relaxed)
    }
}

/// Counts one request as in flight to a backend until dropped (when the response body finishes
/// or is dropped, or forwarding fails).
/// It also holds the backend's connection slot, if one was taken ([`InFlight::hold`]).
#[derive(Debug)]
pub struct InFlight(Arc<BackendEntry>, Option<OwnedSemaphorePermit>);

impl InFlight {
    /// Increments the backend's in-flight counter.
    pub fn new(backend: Arc<BackendEntry>) -> Self {
        backend.in_flight.fetch_add(1, Ordering::Relaxed);
        InFlight(backend, None)
    }

    /// Keeps a connection slot of the backend until this guard is dropped.
    pub(crate) fn hold(&mut self, slot: OwnedSemaphorePermit) {
        self.1 = Some(slot);
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
    /// The protocol named by `upstream.backend_protocol`.
    pub backend_protocol: BackendProtocol,
    /// The `Host` its backends receive, read from `upstream.host_header` (checked by the
    /// registry; an invalid value, only possible for entries built elsewhere, preserves).
    pub host_header: HostHeader,
    /// Round-robin position, shared by every snapshot of this upstream.
    round_robin: Arc<AtomicUsize>,
    /// Whether the backends' weights differ (the balancers then weigh their choice).
    pub(crate) weighted: bool,
    /// Running sums of the backends' weights, in order (only when `weighted`).
    pub(crate) cumulative_weights: Vec<u64>,
    /// Serializes smooth weighted round robin (only taken when `weighted`).
    pub(crate) swrr_lock: Mutex<()>,
    /// Passive health settings (the upstream's, completed with the proxy's defaults).
    pub passive_health: PassivePolicy,
    /// Active health checks, when the upstream asks for them.
    pub health_check: Option<Arc<ActiveCheck>>,
    /// Time allowed until a backend's response headers (`timeout_ms`); `None`: the proxy's
    /// default.
    pub timeout: Option<Duration>,
    /// Time allowed to connect to a backend (`connect_timeout_ms`); `None`: the proxy's default.
    pub connect_timeout: Option<Duration>,
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
        // Validated when the upstream was added; an unknown name cannot get here.
        let backend_protocol = BackendProtocol::of(&upstream);
        let (upstream_timeout_ms, upstream_connect_timeout_ms) =
            (upstream.timeout_ms, upstream.connect_timeout_ms);
        let weighted = backends
            .first()
            .is_some_and(|first| backends.iter().any(|b| b.weight != first.weight));
        let cumulative_weights = if weighted {
            backends
                .iter()
                .scan(0u64, |sum, b| {
                    *sum += u64::from(b.weight);
                    Some(*sum)
                })
                .collect()
        } else {
            Vec::new()
        };
        UpstreamEntry {
            host_header: HostHeader::parse(upstream.host_header.as_deref()).unwrap_or_default(),
            upstream,
            backends,
            balancer,
            backend_protocol,
            round_robin,
            weighted,
            cumulative_weights,
            swrr_lock: Mutex::new(()),
            passive_health: PassivePolicy::default(),
            health_check: None,
            timeout: positive_millis(upstream_timeout_ms),
            connect_timeout: positive_millis(upstream_connect_timeout_ms),
        }
    }

    /// The entry the registry publishes: `upstream` with its parsed `settings` (passive health
    /// completed with `passive_defaults`) and these backends (ordered by id); `round_robin` is
    /// the upstream's round-robin position, shared across snapshots.
    pub(crate) fn with_settings(
        upstream: Upstream,
        backends: Vec<Arc<BackendEntry>>,
        settings: &UpstreamSettings,
        passive_defaults: PassivePolicy,
        round_robin: Arc<AtomicUsize>,
    ) -> Self {
        let mut entry = UpstreamEntry::new(upstream, backends, settings.balancer, round_robin);
        entry.backend_protocol = settings.backend_protocol;
        entry.host_header = settings.host_header.clone();
        entry.passive_health = settings.passive_policy(passive_defaults);
        entry.health_check = settings.health_check.clone();
        entry.timeout = settings.timeout;
        entry.connect_timeout = settings.connect_timeout;
        entry
    }

    /// Sets the passive health settings and the active checks (the registry does, when it
    /// builds a snapshot).
    pub fn with_health(
        mut self,
        passive_health: PassivePolicy,
        health_check: Option<Arc<ActiveCheck>>,
    ) -> Self {
        self.passive_health = passive_health;
        self.health_check = health_check;
        self
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
