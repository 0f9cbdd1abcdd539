//! [`PluginHost`]: owns the private socket directory and every launched plugin; launches a
//! plugin (names one socket per instance, starts one supervisor per instance and the standby
//! pool, waits for the instances' first starts, each tried up to `start_attempts` times), restarts one with new settings, replaces or stops one while the others run
//! (a configuration reload), and shuts them all down.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use futures::stream::{FuturesUnordered, StreamExt};
use gatekeeper_rpc::methods::PluginType;
use tokio::sync::{mpsc, oneshot};
use tokio::task::{JoinHandle, JoinSet};
use tokio_util::sync::CancellationToken;

use crate::error::{HostError, StartError};
use crate::events::EventSink;
use crate::handle::PluginHandle;
use crate::manager::ManagerService;
use crate::options::LaunchOptions;
use crate::socket_dir::{socket_file_name, SocketDir};
use crate::spec::PluginSpec;
use crate::state::{Instance, Shared};
use crate::supervisor::standby::{Standby, StandbyPool};
use crate::supervisor::starter::Starter;
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
    /// Every running plugin, in launch order. While [`PluginHost::launch_replacement`] and
    /// [`PluginHost::stop`] replace a plugin, two entries have its name; the newer one counts.
    plugins: Mutex<Vec<Launched>>,
}

/// One launched plugin and what the host needs to restart or stop it.
#[derive(Debug)]
struct Launched {
    handle: PluginHandle,
    /// One supervisor task per instance.
    tasks: Vec<JoinHandle<()>>,
    /// Stops this plugin's supervisors (a child of the host's token).
    cancel: CancellationToken,
    /// The settings its instances run with.
    spec: Arc<PluginSpec>,
    /// One restart channel per instance, in instance order.
    respawns: RespawnSenders,
    /// The standby pool, with `standby`.
    standby: Option<Standby>,
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

    /// Launches a second plugin under the name of a running one, with new settings (any: type
    /// and instances too), leaving the running one alone: the caller moves its traffic to the
    /// returned handle, then [`stop`](Self::stop)s the old one. Until then, [`plugin`](Self::plugin)
    /// and [`reconfigure`](Self::reconfigure) by name address the new one. Fails like
    /// [`launch`](Self::launch) (the old one keeps running), or with
    /// [`HostError::UnknownPlugin`] when no plugin has this name.
    pub async fn launch_replacement(
        &self,
        spec: PluginSpec,
        options: LaunchOptions,
    ) -> Result<PluginHandle, HostError> {
        if self.shut_down.load(Ordering::Acquire) {
            return Err(HostError::ShutDown);
        }
        if !lock(&self.names).contains(&spec.name) {
            return Err(HostError::UnknownPlugin(spec.name));
        }
        self.launch_reserved(spec, options).await
    }

    /// Stops one plugin while the others keep running: `stop`, then up to the stop timeout for
    /// each process to exit, then kill (as at shutdown); its sockets are removed and its handles
    /// answer [`crate::PluginCallError::Unavailable`] from then on. Its name is free again
    /// unless a replacement runs under it. Returns [`HostError::UnknownPlugin`] if this handle's
    /// plugin is not running on this host (e.g. stopped already).
    pub async fn stop(&self, handle: &PluginHandle) -> Result<(), HostError> {
        let launched = {
            let mut plugins = lock(&self.plugins);
            let Some(position) = plugins
                .iter()
                .position(|l| Arc::ptr_eq(&l.handle.shared, &handle.shared))
            else {
                return Err(HostError::UnknownPlugin(handle.name().to_owned()));
            };
            let launched = plugins.remove(position);
            if !plugins.iter().any(|l| l.handle.name() == handle.name()) {
                lock(&self.names).remove(handle.name());
            }
            launched
        };
        launched.cancel.cancel();
        join_supervisors(handle.name(), launched.tasks).await;
        remove_sockets(&launched.handle.shared.instances);
        Ok(())
    }

    async fn launch_reserved(
        &self,
        spec: PluginSpec,
        options: LaunchOptions,
    ) -> Result<PluginHandle, HostError> {
        let index = self.next_index.fetch_add(1, Ordering::Relaxed);
        let count = spec.instances.max(1);
        let instances: Vec<Arc<Instance>> = (0..count)
            .map(|i| {
                let label: Arc<str> = if count == 1 {
                    Arc::from(spec.name.as_str())
                } else {
                    Arc::from(format!("{}#{i}", spec.name))
                };
                let socket_path = self
                    .dir
                    .path()
                    .join(socket_file_name(index, i, count, &spec.name));
                Arc::new(Instance::new(i, label, socket_path))
            })
            .collect();
        let spare_socket = self
            .dir
            .path()
            .join(socket_file_name(index, 0, 1, &spec.name));
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
            spec.restart_after_errors,
            instances.clone(),
        ));
        let handle = PluginHandle {
            shared: shared.clone(),
        };
        let spec = Arc::new(spec);
        let cancel = self.cancel.child_token();
        // Stops every instance if the launch fails or its future is dropped.
        let mut abandon = Abandon(Some(cancel.clone()));
        let mut tasks = Vec::with_capacity(count + 1);
        let mut firsts = FuturesUnordered::new();
        let mut respawn_senders = Vec::with_capacity(count);
        let starter = Arc::new(Starter {
            plugin: shared.clone(),
            manager,
            before_ready: options.before_ready.clone(),
            cancel: cancel.clone(),
        });
        let standby = (spec.standby > 0).then(|| {
            let (pool, standby) = StandbyPool::new(spec.clone(), starter.clone(), spare_socket);
            tasks.push(tokio::spawn(pool.run()));
            standby
        });
        for instance in &instances {
            let (respawn_tx, respawn_rx) = mpsc::unbounded_channel();
            respawn_senders.push(respawn_tx);
            let supervisor = Supervisor {
                spec: spec.clone(),
                starter: starter.clone(),
                instance: instance.clone(),
                events: EventSink {
                    events: options.events.clone(),
                    plugin: shared.name.clone(),
                    instance: instance.index,
                },
                respawns: Some(respawn_rx),
                standby: standby.clone(),
                generation: 0,
                retiring: JoinSet::new(),
            };
            let (first_tx, first_rx) = oneshot::channel();
            tasks.push(tokio::spawn(supervisor.run(first_tx)));
            let label = instance.label.clone();
            firsts.push(async move {
                (
                    label,
                    first_rx.await.unwrap_or(Err((StartError::Closed, 0))),
                )
            });
        }
        let mut failure = None;
        while let Some((label, first)) = firsts.next().await {
            if let Err(failure_of_instance) = first {
                failure = Some((label, failure_of_instance));
                break;
            }
        }
        match failure {
            None => {
                abandon.0 = None;
                lock(&self.plugins).push(Launched {
                    handle: handle.clone(),
                    tasks,
                    cancel,
                    spec,
                    respawns: respawn_senders,
                    standby,
                });
                Ok(handle)
            }
            Some((label, (source, attempts))) => {
                cancel.cancel();
                join_supervisors(&spec.name, tasks).await;
                remove_sockets(&instances);
                Err(HostError::Start {
                    plugin: label.to_string(),
                    attempts,
                    source,
                })
            }
        }
    }

    /// Every running plugin, in launch order.
    pub fn plugins(&self) -> Vec<PluginHandle> {
        lock(&self.plugins)
            .iter()
            .map(|l| l.handle.clone())
            .collect()
    }

    /// The running plugin with this name (the replacement, while one is being replaced).
    pub fn plugin(&self, name: &str) -> Option<PluginHandle> {
        lock(&self.plugins)
            .iter()
            .rev()
            .find(|l| l.handle.name() == name)
            .map(|l| l.handle.clone())
    }

    /// Restarts a running plugin with new settings (`spec.name` names it), one instance after
    /// the other: each gets `stop` and exits, then a process with the new spec is started and
    /// made ready (configure, start, the launch's before-ready replay) before the next instance
    /// restarts, so a plugin with several instances keeps serving. Its handles stay valid. The
    /// type and the number of instances cannot change this way, nor the hook timeout and
    /// timeout limits the handles apply (they keep those of the launch): use
    /// [`launch_replacement`](Self::launch_replacement) for those. Returns an error if an
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
        let (target, senders, standby) = {
            let plugins = lock(&self.plugins);
            let Some(launched) = plugins.iter().rev().find(|l| l.spec.name == spec.name) else {
                return Err(HostError::UnknownPlugin(spec.name.clone()));
            };
            let old = &launched.spec;
            if old.plugin_type != spec.plugin_type || old.instances.max(1) != spec.instances.max(1)
            {
                return Err(refuse(
                    "its type or number of instances changed (use launch_replacement)".into(),
                ));
            }
            (
                launched.handle.shared.clone(),
                launched.respawns.clone(),
                launched.standby.clone(),
            )
        };
        let spec = Arc::new(spec);
        if let Some(standby) = &standby {
            standby.renew(spec.clone());
        }
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
        if let Some(launched) = lock(&self.plugins)
            .iter_mut()
            .find(|l| Arc::ptr_eq(&l.handle.shared, &target))
        {
            launched.spec = spec;
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
            .map(|l| (l.handle.name().to_owned(), std::mem::take(&mut l.tasks)))
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
