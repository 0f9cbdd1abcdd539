//! The [`Manager`]: an upstream plugin's handle on the proxy's registry of upstreams and backends.

use std::time::Duration;

use gatekeeper_rpc::methods::{
    AddBackend, AddBackendParams, AddUpstream, AddUpstreamParams, ApplyBatch, ApplyBatchParams,
    ApplyBatchResult, BatchChange, ConfigStatus, ConfigStatusParams, RemoveBackend,
    RemoveBackendParams, RemoveUpstream, RemoveUpstreamParams,
};
use gatekeeper_rpc::types::{Backend, Upstream};
use gatekeeper_rpc::{CallError, Peer};

/// How long a manager call waits for the proxy by default.
pub const DEFAULT_MANAGER_TIMEOUT: Duration = Duration::from_secs(10);

/// Adds and removes upstreams and backends in the proxy (the `add_upstream`, `remove_upstream`,
/// `add_backend` and `remove_backend` methods, called by the plugin on the proxy), one at a time
/// or many as one ([`apply_batch`](Self::apply_batch)).
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

    /// The [`ConfigReporter`] on the same connection (for a plugin that hands it to a task).
    pub fn config_reporter(&self) -> ConfigReporter {
        ConfigReporter {
            peer: self.peer.clone(),
            timeout: self.timeout,
        }
    }

    /// Reports that the plugin rejected a config change it made on its own (a watched file):
    /// `message` says what is wrong (file, line and key where there are some); the plugin keeps
    /// its last good config. See [`ConfigReporter::report_config_error`].
    pub async fn report_config_error(&self, message: impl Into<String>) -> Result<(), CallError> {
        self.config_reporter().report_config_error(message).await
    }

    /// Reports that the current config is accepted (clears an earlier rejection).
    pub async fn report_config_ok(&self) -> Result<(), CallError> {
        self.config_reporter().report_config_ok().await
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

    /// Applies many changes as one, in order, all or none: readers never see half of it. Build
    /// the changes with [`BatchChange::add_upstream`], [`BatchChange::remove_upstream`],
    /// [`BatchChange::add_backend`] and [`BatchChange::remove_backend`].
    ///
    /// With `replace`, the changes are the plugin's whole desired state (adds only): the proxy
    /// removes the upstreams this plugin added that the batch does not have and the backends of
    /// its upstreams that it does not list, and replaces what changed.
    ///
    /// A refused batch changes nothing; its [`CallError::Remote`] error has the first refused
    /// change's code, and [`ApplyBatchRefused::from_error`](crate::ApplyBatchRefused::from_error)
    /// lists every refused change with its index.
    pub async fn apply_batch(
        &self,
        changes: Vec<BatchChange>,
        replace: bool,
    ) -> Result<ApplyBatchResult, CallError> {
        self.peer
            .request::<ApplyBatch>(&ApplyBatchParams { changes, replace }, self.timeout)
            .await
    }
}

/// Reports the plugin's config state to the proxy (`config_status`), for a plugin of any type
/// that changes its config on its own (e.g. it watches a file): the proxy logs a rejection once,
/// and shows it in `gatekeeper ctl plugins` and its metrics until it is cleared. Send a report
/// when the state changes, not on every poll. Cheap to clone.
///
/// A plugin gets one through [`Plugin::config_reporter`](crate::Plugin::config_reporter) (any
/// type) or [`Manager::config_reporter`] (upstream plugins).
#[derive(Debug, Clone)]
pub struct ConfigReporter {
    peer: Peer,
    timeout: Duration,
}

impl ConfigReporter {
    /// A reporter that calls the proxy through `peer`, waiting up to
    /// [`DEFAULT_MANAGER_TIMEOUT`] per call.
    pub fn new(peer: Peer) -> Self {
        ConfigReporter {
            peer,
            timeout: DEFAULT_MANAGER_TIMEOUT,
        }
    }

    /// The new config was rejected (the plugin keeps its last good one): `message` says what is
    /// wrong, with file, line and key where there are some.
    pub async fn report_config_error(&self, message: impl Into<String>) -> Result<(), CallError> {
        self.send(Some(message.into())).await
    }

    /// The current config is accepted (clears an earlier rejection).
    pub async fn report_config_ok(&self) -> Result<(), CallError> {
        self.send(None).await
    }

    async fn send(&self, error: Option<String>) -> Result<(), CallError> {
        self.peer
            .request::<ConfigStatus>(&ConfigStatusParams { error }, self.timeout)
            .await
            .map(drop)
    }
}
