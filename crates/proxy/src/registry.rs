//! The registry of upstreams and their backends.
//!
//! Writers (the manager methods called by upstream plugins) serialize on a mutex, build a new
//! immutable [`Snapshot`] and publish it with [`arc_swap::ArcSwap`]. The request path only calls
//! [`Registry::snapshot`], an atomic load: it never takes a lock and never sees a half-applied
//! change.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use arc_swap::ArcSwap;
use gatekeeper_rpc::codes;
use gatekeeper_rpc::types::{Backend, Upstream};
use http::uri::{Authority, Scheme, Uri};

/// Why a registry change was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RegistryError {
    /// The upstream named in the call does not exist.
    #[error("unknown upstream `{0}`")]
    UnknownUpstream(String),
    /// The backend named in the call does not exist in its upstream.
    #[error("unknown backend `{backend}` in upstream `{upstream}`")]
    UnknownBackend {
        /// The upstream id.
        upstream: String,
        /// The backend id.
        backend: String,
    },
    /// A field of the upstream has a value that cannot be used.
    #[error("invalid upstream `{id}`: {reason}")]
    InvalidUpstream {
        /// The upstream id (may be empty).
        id: String,
        /// What is wrong.
        reason: String,
    },
    /// A field of the backend (id or address) has a value that cannot be used.
    #[error("invalid backend `{id}` address `{address}`: {reason}")]
    InvalidAddress {
        /// The backend id.
        id: String,
        /// The address as given.
        address: String,
        /// What is wrong.
        reason: String,
    },
    /// A prefix or hostname is already claimed by another upstream on an overlapping set of
    /// listeners.
    #[error("upstream `{id}`: {what} is already used by upstream `{other}`")]
    Conflict {
        /// The upstream being added.
        id: String,
        /// The contested route, e.g. ``prefix `api` ``.
        what: String,
        /// The upstream that already has it.
        other: String,
    },
}

impl RegistryError {
    /// The JSON-RPC error code (from [`gatekeeper_rpc::codes`]) a manager method answers with.
    pub fn code(&self) -> i32 {
        match self {
            RegistryError::UnknownUpstream(_) => codes::UNKNOWN_UPSTREAM,
            RegistryError::UnknownBackend { .. } => codes::UNKNOWN_BACKEND,
            RegistryError::Conflict { .. } => codes::CONFLICT,
            RegistryError::InvalidUpstream { .. } | RegistryError::InvalidAddress { .. } => {
                codes::INVALID_VALUE
            }
        }
    }
}

/// A backend with its address parsed once, when it was added.
#[derive(Debug, Clone, PartialEq)]
pub struct BackendEntry {
    /// The backend as the plugin sent it.
    pub backend: Backend,
    /// `host:port` to connect to.
    pub authority: Authority,
    /// Path prepended to forwarded paths, without trailing `/` (empty when the address has none).
    pub base_path: String,
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
        })
    }
}

/// An upstream with its backends, as stored in a [`Snapshot`].
#[derive(Debug, Clone, PartialEq)]
pub struct UpstreamEntry {
    /// The upstream as the plugin sent it (hostnames lower-cased).
    pub upstream: Upstream,
    /// Its backends, ordered by id.
    pub backends: Vec<Arc<BackendEntry>>,
}

impl UpstreamEntry {
    /// Whether a listener may route to this upstream (an empty `protocols` list allows all).
    pub fn allows_listener(&self, listener: &str) -> bool {
        self.upstream.protocols.is_empty() || self.upstream.protocols.iter().any(|p| p == listener)
    }
}

/// An immutable view of the registry, with lookup maps for routing.
#[derive(Debug, Default)]
pub struct Snapshot {
    /// Incremented on every published change (0 for the empty initial snapshot).
    pub version: u64,
    /// Upstreams by id.
    pub upstreams: HashMap<String, Arc<UpstreamEntry>>,
    /// Prefix segment → the upstreams having it (at most one per listener), ordered by id.
    pub by_prefix: HashMap<String, Vec<Arc<UpstreamEntry>>>,
    /// Lower-cased hostname (no port) → the upstreams having it, ordered by id.
    pub by_hostname: HashMap<String, Vec<Arc<UpstreamEntry>>>,
}

impl Snapshot {
    /// The upstream with this id.
    pub fn upstream(&self, id: &str) -> Option<&Arc<UpstreamEntry>> {
        self.upstreams.get(id)
    }
}

/// The mutable state behind the writer mutex: the source of truth snapshots are built from.
#[derive(Debug, Default)]
struct State {
    version: u64,
    upstreams: BTreeMap<String, Upstream>,
    backends: BTreeMap<String, BTreeMap<String, Arc<BackendEntry>>>,
}

impl State {
    fn build(&self) -> Snapshot {
        let mut snap = Snapshot {
            version: self.version,
            ..Snapshot::default()
        };
        for (id, upstream) in &self.upstreams {
            let backends = self
                .backends
                .get(id)
                .map(|b| b.values().cloned().collect())
                .unwrap_or_default();
            let entry = Arc::new(UpstreamEntry {
                upstream: upstream.clone(),
                backends,
            });
            for prefix in &upstream.prefixes {
                snap.by_prefix
                    .entry(prefix.clone())
                    .or_default()
                    .push(entry.clone());
            }
            for host in &upstream.hostnames {
                snap.by_hostname
                    .entry(host.clone())
                    .or_default()
                    .push(entry.clone());
            }
            snap.upstreams.insert(id.clone(), entry);
        }
        snap
    }
}

/// Upstreams and backends, readable without locks through [`Registry::snapshot`].
#[derive(Debug, Default)]
pub struct Registry {
    current: ArcSwap<Snapshot>,
    state: Mutex<State>,
}

fn overlap(a: &[String], b: &[String]) -> bool {
    a.is_empty() || b.is_empty() || a.iter().any(|x| b.contains(x))
}

fn normalize(mut upstream: Upstream) -> Result<Upstream, RegistryError> {
    let invalid = |id: &str, reason: String| RegistryError::InvalidUpstream {
        id: id.to_string(),
        reason,
    };
    if upstream.id.is_empty() {
        return Err(invalid("", "empty upstream id".into()));
    }
    for prefix in &upstream.prefixes {
        if prefix.is_empty() || prefix.contains('/') {
            return Err(invalid(
                &upstream.id,
                format!("prefix `{prefix}` must be one non-empty path segment without '/'"),
            ));
        }
    }
    for host in &mut upstream.hostnames {
        if host.is_empty() || host.contains('/') || host.contains(char::is_whitespace) {
            return Err(invalid(&upstream.id, format!("invalid hostname `{host}`")));
        }
        *host = host.to_ascii_lowercase();
    }
    if upstream.name.is_empty() {
        upstream.name = upstream.id.clone();
    }
    Ok(upstream)
}

impl Registry {
    /// An empty registry.
    pub fn new() -> Self {
        Self::default()
    }

    /// The current snapshot: an atomic load, no lock.
    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.current.load_full()
    }

    fn write<T>(
        &self,
        f: impl FnOnce(&mut State) -> Result<(bool, T), RegistryError>,
    ) -> Result<T, RegistryError> {
        // A poisoned mutex only means a writer panicked; the state is still consistent because
        // every change is validated before it is applied.
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let (changed, out) = f(&mut state)?;
        if changed {
            state.version += 1;
            self.current.store(Arc::new(state.build()));
        }
        Ok(out)
    }

    /// Adds an upstream, or replaces the one with the same id (keeping its backends). Adding an
    /// identical upstream again is a no-op. A prefix or hostname already used by another
    /// upstream on an overlapping set of listeners is a [`RegistryError::Conflict`].
    pub fn add_upstream(&self, upstream: Upstream) -> Result<(), RegistryError> {
        let upstream = normalize(upstream)?;
        self.write(|state| {
            if state.upstreams.get(&upstream.id) == Some(&upstream) {
                return Ok((false, ()));
            }
            for other in state.upstreams.values().filter(|o| o.id != upstream.id) {
                if !overlap(&upstream.protocols, &other.protocols) {
                    continue;
                }
                let clash = upstream
                    .prefixes
                    .iter()
                    .find(|p| other.prefixes.contains(p))
                    .map(|p| format!("prefix `{p}`"))
                    .or_else(|| {
                        upstream
                            .hostnames
                            .iter()
                            .find(|h| other.hostnames.contains(h))
                            .map(|h| format!("hostname `{h}`"))
                    });
                if let Some(what) = clash {
                    return Err(RegistryError::Conflict {
                        id: upstream.id.clone(),
                        what,
                        other: other.id.clone(),
                    });
                }
            }
            state.upstreams.insert(upstream.id.clone(), upstream);
            Ok((true, ()))
        })
    }

    /// Removes an upstream and its backends.
    pub fn remove_upstream(&self, id: &str) -> Result<(), RegistryError> {
        self.write(|state| {
            if state.upstreams.remove(id).is_none() {
                return Err(RegistryError::UnknownUpstream(id.to_string()));
            }
            state.backends.remove(id);
            Ok((true, ()))
        })
    }

    /// Adds a backend to an upstream, or replaces the one with the same id. Adding an identical
    /// backend again is a no-op.
    pub fn add_backend(&self, upstream_id: &str, backend: Backend) -> Result<(), RegistryError> {
        let entry = BackendEntry::new(backend)?;
        self.write(|state| {
            if !state.upstreams.contains_key(upstream_id) {
                return Err(RegistryError::UnknownUpstream(upstream_id.to_string()));
            }
            let backends = state.backends.entry(upstream_id.to_string()).or_default();
            if backends.get(&entry.backend.id).map(|b| &b.backend) == Some(&entry.backend) {
                return Ok((false, ()));
            }
            backends.insert(entry.backend.id.clone(), Arc::new(entry));
            Ok((true, ()))
        })
    }

    /// Removes a backend from an upstream.
    pub fn remove_backend(&self, upstream_id: &str, backend_id: &str) -> Result<(), RegistryError> {
        self.write(|state| {
            if !state.upstreams.contains_key(upstream_id) {
                return Err(RegistryError::UnknownUpstream(upstream_id.to_string()));
            }
            let removed = state
                .backends
                .get_mut(upstream_id)
                .and_then(|b| b.remove(backend_id));
            if removed.is_none() {
                return Err(RegistryError::UnknownBackend {
                    upstream: upstream_id.to_string(),
                    backend: backend_id.to_string(),
                });
            }
            Ok((true, ()))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn upstream(id: &str, prefixes: &[&str], hostnames: &[&str]) -> Upstream {
        Upstream {
            id: id.into(),
            name: String::new(),
            timeout_ms: None,
            protocols: vec![],
            hostnames: hostnames.iter().map(|s| s.to_string()).collect(),
            prefixes: prefixes.iter().map(|s| s.to_string()).collect(),
            balancer: None,
            extra: Default::default(),
        }
    }

    fn backend(id: &str, address: &str) -> Backend {
        Backend {
            id: id.into(),
            address: address.into(),
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
    fn snapshot_swap_and_replace() {
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
        // Replace keeps the backends, updates the lookup maps.
        r.add_upstream(upstream("a", &["v2"], &[])).unwrap();
        let s = r.snapshot();
        assert_eq!(s.version, 3);
        assert!(s.by_prefix.contains_key("v2") && !s.by_prefix.contains_key("api"));
        assert_eq!(s.upstream("a").unwrap().backends.len(), 1);
        r.remove_backend("a", "b1").unwrap();
        assert!(r.snapshot().upstream("a").unwrap().backends.is_empty());
        assert_eq!(s1.upstream("a").unwrap().backends.len(), 1);
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
}
