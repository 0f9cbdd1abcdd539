//! The [`Manager`]: an upstream plugin's handle on the proxy's registry of upstreams and backends.

use std::time::Duration;

use gatekeeper_rpc::methods::{
    AddBackend, AddBackendParams, AddUpstream, AddUpstreamParams, RemoveBackend,
    RemoveBackendParams, RemoveUpstream, RemoveUpstreamParams,
};
use gatekeeper_rpc::types::{Backend, Upstream};
use gatekeeper_rpc::{CallError, Peer};

/// How long a manager call waits for the proxy by default.
pub const DEFAULT_MANAGER_TIMEOUT: Duration = Duration::from_secs(10);

/// Adds and removes upstreams and backends in the proxy (the `add_upstream`, `remove_upstream`,
/// `add_backend` and `remove_backend` methods, called by the plugin on the proxy).
///
/// Cheap to clone: keep a clone in a background task to push changes as they are discovered.
/// Errors are the proxy's own (e.g. [`codes::UNKNOWN_UPSTREAM`](crate::codes::UNKNOWN_UPSTREAM),
/// [`codes::INVALID_VALUE`](crate::codes::INVALID_VALUE) in [`CallError::Remote`]), or a timeout
/// or closed connection.
#[derive(Debug, Clone)]
pub struct Manager {
    peer: Peer,
    timeout: Duration,
}

impl Manager {
    /// A manager that calls the proxy through `peer`, waiting up to
    /// [`DEFAULT_MANAGER_TIMEOUT`] per call.
    pub fn new(peer: Peer) -> Self {
        Manager {
            peer,
            timeout: DEFAULT_MANAGER_TIMEOUT,
        }
    }

    /// The same manager with another per-call timeout.
    #[must_use]
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Adds an upstream, or replaces the one with the same id.
    pub async fn add_upstream(&self, upstream: Upstream) -> Result<(), CallError> {
        self.peer
            .request::<AddUpstream>(&AddUpstreamParams { upstream }, self.timeout)
            .await
            .map(drop)
    }

    /// Removes an upstream and all its backends.
    pub async fn remove_upstream(&self, id: impl Into<String>) -> Result<(), CallError> {
        let params = RemoveUpstreamParams { id: id.into() };
        self.peer
            .request::<RemoveUpstream>(&params, self.timeout)
            .await
            .map(drop)
    }

    /// Adds a backend to an upstream, or replaces the one with the same id.
    pub async fn add_backend(
        &self,
        upstream_id: impl Into<String>,
        backend: Backend,
    ) -> Result<(), CallError> {
        let params = AddBackendParams {
            upstream_id: upstream_id.into(),
            backend,
        };
        self.peer
            .request::<AddBackend>(&params, self.timeout)
            .await
            .map(drop)
    }

    /// Removes a backend from an upstream.
    pub async fn remove_backend(
        &self,
        upstream_id: impl Into<String>,
        backend_id: impl Into<String>,
    ) -> Result<(), CallError> {
        let params = RemoveBackendParams {
            upstream_id: upstream_id.into(),
            backend_id: backend_id.into(),
        };
        self.peer
            .request::<RemoveBackend>(&params, self.timeout)
            .await
            .map(drop)
    }
}
