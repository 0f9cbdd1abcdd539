//! [`PluginHost`]: owns the private socket directory and every launched plugin; launches a
//! plugin (binds its socket, starts its supervisor, waits for its first start) and shuts them all
//! down.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use gatekeeper_rpc::methods::PluginType;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::error::{HostError, StartError};
use crate::handle::{PluginHandle, Shared};
use crate::manager::{Manager, ManagerService};
use crate::socket_dir::{socket_file_name, SocketDir};
use crate::spec::PluginSpec;
use crate::supervisor::Supervisor;

/// Runs plugins. Dropping the host (without [`PluginHost::shutdown`]) tells every supervisor to
/// stop its plugin in the background and removes the socket directory at once.
#[derive(Debug)]
pub struct PluginHost {
    dir: SocketDir,
    cancel: CancellationToken,
    shut_down: AtomicBool,
    next_index: AtomicUsize,
    names: Mutex<HashSet<String>>,
    plugins: Mutex<Vec<(PluginHandle, Option<JoinHandle<()>>)>>,
}

impl PluginHost {
    /// Creates the host and its private socket directory (mode 0700), named
    /// `gatekeeper-<pid>-<random>` under `socket_root`, or else under `$XDG_RUNTIME_DIR`, or else
    /// under the system temp dir.
    pub fn new(socket_root: Option<PathBuf>) -> Result<PluginHost, HostError> {
        let dir = SocketDir::create(socket_root)
            .map_err(|(root, source)| HostError::SocketDir { root, source })?;
        tracing::debug!(path = %dir.path().display(), "created the plugin socket directory");
        Ok(PluginHost {
            dir,
            cancel: CancellationToken::new(),
            shut_down: AtomicBool::new(false),
            next_index: AtomicUsize::new(0),
            names: Mutex::new(HashSet::new()),
            plugins: Mutex::new(Vec::new()),
        })
    }

    /// The private socket directory.
    pub fn socket_dir(&self) -> &Path {
        self.dir.path()
    }

    /// Launches a plugin and returns once it is started (spawned, handshaken, configured and
    /// started), or with the reason its first start failed. From then on it is supervised and
    /// restarted when it goes down, until [`PluginHost::shutdown`].
    ///
    /// `manager` serves `add_upstream` & co. to an upstream plugin; other plugin types, and
    /// upstream plugins launched without one, get `method not found` for those methods.
    pub async fn launch(
        &self,
        spec: PluginSpec,
        manager: Option<Arc<dyn Manager>>,
    ) -> Result<PluginHandle, HostError> {
        if self.shut_down.load(Ordering::Acquire) {
            return Err(HostError::ShutDown);
        }
        if !lock(&self.names).insert(spec.name.clone()) {
            return Err(HostError::DuplicateName(spec.name));
        }
        // Frees the name if the launch fails or its future is dropped.
        let mut reservation = Reservation {
            names: &self.names,
            name: Some(spec.name.clone()),
        };
        let outcome = self.launch_reserved(spec, manager).await;
        if outcome.is_ok() {
            reservation.name = None;
        }
        outcome
    }

    async fn launch_reserved(
        &self,
        spec: PluginSpec,
        manager: Option<Arc<dyn Manager>>,
    ) -> Result<PluginHandle, HostError> {
        let index = self.next_index.fetch_add(1, Ordering::Relaxed);
        let (listener, socket_path) = self
            .dir
            .bind(&socket_file_name(index, &spec.name))
            .map_err(|(path, source)| HostError::Bind {
                plugin: spec.name.clone(),
                path,
                source,
            })?;
        let manager = match (spec.plugin_type, manager) {
            (PluginType::Upstream, Some(manager)) => {
                Some(Arc::new(ManagerService::new(&spec.name, manager)))
            }
            (_, Some(_)) => {
                tracing::debug!(plugin = %spec.name, "ignoring the manager: only upstream plugins may use it");
                None
            }
            (_, None) => None,
        };
        let shared = Arc::new(Shared::new(
            &spec.name,
            spec.plugin_type,
            spec.hook_timeout,
            socket_path.clone(),
        ));
        let handle = PluginHandle {
            shared: shared.clone(),
        };
        let name = spec.name.clone();
        let supervisor = Supervisor {
            spec,
            shared,
            listener,
            manager,
            cancel: self.cancel.child_token(),
        };
        let (first_tx, first_rx) = oneshot::channel();
        let task = tokio::spawn(supervisor.run(first_tx));
        let first = first_rx.await.unwrap_or(Err(StartError::Closed));
        match first {
            Ok(()) => {
                lock(&self.plugins).push((handle.clone(), Some(task)));
                Ok(handle)
            }
            Err(source) => {
                let _ = std::fs::remove_file(&socket_path);
                Err(HostError::Start {
                    plugin: name,
                    source,
                })
            }
        }
    }

    /// Every launched plugin, in launch order.
    pub fn plugins(&self) -> Vec<PluginHandle> {
        lock(&self.plugins).iter().map(|(h, _)| h.clone()).collect()
    }

    /// The launched plugin with this name.
    pub fn plugin(&self, name: &str) -> Option<PluginHandle> {
        lock(&self.plugins)
            .iter()
            .find(|(h, _)| h.name() == name)
            .map(|(h, _)| h.clone())
    }

    /// Stops every plugin (all at once): `stop` with the spec's stop timeout, then up to the stop
    /// timeout for the process to exit, then kill. No restart happens afterwards, no launch
    /// succeeds, and the socket directory is removed. Idempotent.
    pub async fn shutdown(&self) {
        self.shut_down.store(true, Ordering::Release);
        self.cancel.cancel();
        let tasks: Vec<_> = lock(&self.plugins)
            .iter_mut()
            .filter_map(|(handle, task)| {
                let name = handle.name().to_owned();
                let task = task.take()?;
                Some(async move {
                    if let Err(e) = task.await {
                        tracing::error!(plugin = %name, error = %e, "plugin supervisor failed");
                    }
                })
            })
            .collect();
        futures::future::join_all(tasks).await;
        self.dir.remove();
    }
}

impl Drop for PluginHost {
    fn drop(&mut self) {
        self.cancel.cancel();
    }
}

/// A plugin name taken in [`PluginHost::launch`]; released on drop unless the launch succeeded.
struct Reservation<'a> {
    names: &'a Mutex<HashSet<String>>,
    name: Option<String>,
}

impl Drop for Reservation<'_> {
    fn drop(&mut self) {
        if let Some(name) = self.name.take() {
            lock(self.names).remove(&name);
        }
    }
}

/// Locks a mutex, recovering the data if a holder panicked (every critical section here is a
/// single collection operation, so the data stays consistent).
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}
