//! [`PluginHost`]: owns the private socket directory and every launched plugin; launches a
//! plugin (binds one socket per instance, starts one supervisor per instance, waits for their
//! first starts) and shuts them all down.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use futures::stream::{FuturesUnordered, StreamExt};
use gatekeeper_rpc::methods::PluginType;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::error::{HostError, StartError};
use crate::events::EventSink;
use crate::handle::PluginHandle;
use crate::manager::ManagerService;
use crate::options::LaunchOptions;
use crate::socket_dir::{socket_file_name, SocketDir};
use crate::spec::PluginSpec;
use crate::state::{Instance, Shared};
use crate::supervisor::{Respawn, Supervisor};

/// Runs plugins. Dropping the host (without [`PluginHost::shutdown`]) tells every supervisor to
/// stop its plugin in the background and removes the socket directory at once.
#[derive(Debug)]
pub struct PluginHost {
    dir: SocketDir,
    cancel: CancellationToken,
    shut_down: AtomicBool,
    next_index: AtomicUsize,
    names: Mutex<HashSet<String>>,
    plugins: Mutex<Vec<(PluginHandle, Vec<JoinHandle<()>>)>>,
    /// Per launched plugin: its spec and one restart channel per instance, in instance order.
    respawns: Mutex<Vec<(Arc<PluginSpec>, RespawnSenders)>>,
}

/// One restart channel per instance of a plugin, in instance order.
type RespawnSenders = Vec<mpsc::UnboundedSender<Respawn>>;

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
            respawns: Mutex::new(Vec::new()),
        })
    }

    /// The private socket directory.
    pub fn socket_dir(&self) -> &Path {
        self.dir.path()
    }

    /// Launches a plugin and returns once every instance of it is started (spawned,
    /// handshaken, configured, started and replayed through [`LaunchOptions::before_ready`]), or
    /// with the reason the first start of an instance failed (the other instances are then
    /// stopped). From then on each instance is supervised and restarted when it goes down, until
    /// [`PluginHost::shutdown`].
    pub async fn launch(
        &self,
        spec: PluginSpec,
        options: LaunchOptions,
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
        let outcome = self.launch_reserved(spec, options).await;
        if outcome.is_ok() {
            reservation.name = None;
        }
        outcome
    }

    async fn launch_reserved(
        &self,
        spec: PluginSpec,
        options: LaunchOptions,
    ) -> Result<PluginHandle, HostError> {
        let index = self.next_index.fetch_add(1, Ordering::Relaxed);
        let count = spec.instances.max(1);
        let mut instances = Vec::with_capacity(count);
        let mut listeners = Vec::with_capacity(count);
        for i in 0..count {
            let file_name = socket_file_name(index, i, count, &spec.name);
            match self.dir.bind(&file_name) {
                Ok((listener, socket_path)) => {
                    let label: Arc<str> = if count == 1 {
                        Arc::from(spec.name.as_str())
                    } else {
                        Arc::from(format!("{}#{i}", spec.name))
                    };
                    instances.push(Arc::new(Instance::new(i, label, socket_path)));
                    listeners.push(listener);
                }
                Err((path, source)) => {
                    remove_sockets(&instances);
                    return Err(HostError::Bind {
                        plugin: spec.name.clone(),
                        path,
                        source,
                    });
                }
            }
        }
        let manager = match (spec.plugin_type, options.manager) {
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
            spec.restart_after_timeouts,
            instances.clone(),
        ));
        let handle = PluginHandle {
            shared: shared.clone(),
        };
        let spec = Arc::new(spec);
        let cancel = self.cancel.child_token();
        // Stops every instance if the launch fails or its future is dropped.
        let mut abandon = Abandon(Some(cancel.clone()));
        let mut tasks = Vec::with_capacity(count);
        let mut firsts = FuturesUnordered::new();
        let mut respawn_senders = Vec::with_capacity(count);
        for (instance, listener) in instances.iter().zip(listeners) {
            let (respawn_tx, respawn_rx) = mpsc::unbounded_channel();
            respawn_senders.push(respawn_tx);
            let supervisor = Supervisor {
                spec: spec.clone(),
                plugin: shared.clone(),
                instance: instance.clone(),
                listener,
                manager: manager.clone(),
                before_ready: options.before_ready.clone(),
                events: EventSink {
                    events: options.events.clone(),
                    plugin: shared.name.clone(),
                    instance: instance.index,
                },
                cancel: cancel.clone(),
                respawns: Some(respawn_rx),
            };
            let (first_tx, first_rx) = oneshot::channel();
            tasks.push(tokio::spawn(supervisor.run(first_tx)));
            let label = instance.label.clone();
            firsts.push(async move { (label, first_rx.await.unwrap_or(Err(StartError::Closed))) });
        }
        let mut failure = None;
        while let Some((label, first)) = firsts.next().await {
            if let Err(source) = first {
                failure = Some((label, source));
                break;
            }
        }
        match failure {
            None => {
                abandon.0 = None;
                lock(&self.plugins).push((handle.clone(), tasks));
                lock(&self.respawns).push((spec.clone(), respawn_senders));
                Ok(handle)
            }
            Some((label, source)) => {
                cancel.cancel();
                join_supervisors(&spec.name, tasks).await;
                remove_sockets(&instances);
                Err(HostError::Start {
                    plugin: label.to_string(),
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

    /// Restarts a running plugin with new settings (`spec.name` names it), one instance after
    /// the other: each gets `stop` and exits, then a process with the new spec is started and
    /// made ready (configure, start, the launch's before-ready replay) before the next instance
    /// restarts, so a plugin with several instances keeps serving. Its handles stay valid. The
    /// type and the number of instances cannot change this way, nor the hook timeout and
    /// timeout limits the handles apply (they keep those of the launch). Returns an error if an
    /// instance did not start with the new settings: that instance then goes back to the
    /// previous settings (restarted like a crashed one) and the later instances are left alone;
    /// instances restarted before it keep the new settings.
    pub async fn reconfigure(&self, spec: PluginSpec) -> Result<(), HostError> {
        if self.shut_down.load(Ordering::Acquire) {
            return Err(HostError::ShutDown);
        }
        let name = spec.name.clone();
        let refuse = |reason: String| HostError::Reconfigure {
            plugin: name.clone(),
            reason,
        };
        let senders = {
            let respawns = lock(&self.respawns);
            let Some((old, senders)) = respawns.iter().find(|(s, _)| s.name == spec.name) else {
                return Err(HostError::UnknownPlugin(spec.name.clone()));
            };
            if old.plugin_type != spec.plugin_type || old.instances.max(1) != spec.instances.max(1)
            {
                return Err(refuse(
                    "its type or number of instances changed (restart gatekeeper)".into(),
                ));
            }
            senders.clone()
        };
        let spec = Arc::new(spec);
        for sender in senders {
            let (done, outcome) = oneshot::channel();
            let request = Respawn {
                spec: spec.clone(),
                done,
            };
            if sender.send(request).is_err() {
                return Err(refuse("the plugin is stopped".into()));
            }
            match outcome.await {
                Ok(Ok(())) => {}
                Ok(Err(reason)) => return Err(refuse(reason)),
                Err(_) => return Err(refuse("the plugin stopped meanwhile".into())),
            }
        }
        if let Some(entry) = lock(&self.respawns)
            .iter_mut()
            .find(|(s, _)| s.name == spec.name)
        {
            entry.0 = spec;
        }
        Ok(())
    }

    /// Stops every plugin (all at once): `stop` with the spec's stop timeout, then up to the stop
    /// timeout for the process to exit, then kill. No restart happens afterwards, no launch
    /// succeeds, and the socket directory is removed. Idempotent.
    pub async fn shutdown(&self) {
        self.shut_down.store(true, Ordering::Release);
        self.cancel.cancel();
        let plugins: Vec<_> = lock(&self.plugins)
            .iter_mut()
            .map(|(handle, tasks)| (handle.name().to_owned(), std::mem::take(tasks)))
            .collect();
        let tasks = plugins
            .into_iter()
            .map(|(name, tasks)| async move { join_supervisors(&name, tasks).await });
        futures::future::join_all(tasks).await;
        self.dir.remove();
    }
}

impl Drop for PluginHost {
    fn drop(&mut self) {
        self.cancel.cancel();
    }
}

/// Waits for supervisor tasks to end.
async fn join_supervisors(plugin: &str, tasks: Vec<JoinHandle<()>>) {
    for task in tasks {
        if let Err(e) = task.await {
            tracing::error!(%plugin, error = %e, "plugin supervisor failed");
        }
    }
}

/// Removes the socket files of instances whose launch failed.
fn remove_sockets(instances: &[Arc<Instance>]) {
    for instance in instances {
        let _ = std::fs::remove_file(&instance.socket_path);
    }
}

/// Cancels a launch's supervisors when dropped armed (the launch failed or was abandoned).
struct Abandon(Option<CancellationToken>);

impl Drop for Abandon {
    fn drop(&mut self) {
        if let Some(cancel) = self.0.take() {
            cancel.cancel();
        }
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
