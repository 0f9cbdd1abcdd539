//! [`PluginHandle`]: what callers hold to call one plugin. Cheap to clone and lock-free on the
//! call path: each instance's current connections are one atomic pointer ([`arc_swap`]) that its
//! supervisor swaps on every (re)start, and calls pick an instance and a connection with atomic
//! round-robin cursors. The call path itself (waiting for a restarting instance, sending a call
//! again after a crash or a stall, judging results) is in [`routing`]; the rate-limited warnings
//! are [`gatekeeper_rpc::warnings`].

use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use tokio::time::Instant;

use gatekeeper_rpc::methods::{Configure, Heartbeat, PluginType, Start, Stop};
use gatekeeper_rpc::parts::RequestPart;
#[cfg(doc)]
use gatekeeper_rpc::CallError;
use gatekeeper_rpc::Method;

use crate::error::PluginCallError;
use crate::state::{Declared, Shared};
use routing::{pick_peer, Target};

mod routing;
#[cfg(test)]
mod tests;

/// Where a plugin (or one instance of it) is in its lifecycle.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PluginStatus {
    /// Being spawned, handshaken, configured and started for the first time.
    Starting,
    /// Started and answering calls.
    Ready,
    /// Down and being started again now (calls wait for it, within their timeout).
    Restarting,
    /// Down in a crash loop: waiting for its restart backoff (calls fail at once).
    Backoff,
    /// Stopped for good (host shut down, or the first start failed).
    Stopped,
}

/// A snapshot of one instance of a plugin.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstanceState {
    /// Which instance (from 0).
    pub index: usize,
    /// Where the instance is in its lifecycle.
    pub status: PluginStatus,
    /// The process id of its current process, if one is running.
    pub pid: Option<u32>,
    /// How many times it was restarted.
    pub restarts: u64,
    /// How many of its processes were replaced make-before-break (`max_memory`,
    /// `recycle_after`).
    pub recycles: u64,
    /// Its listening socket.
    pub socket_path: PathBuf,
}

/// A snapshot of a plugin's state, for admin and status pages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PluginState {
    /// The plugin as a whole: `Ready` if any instance is, else `Starting` if any instance is,
    /// else `Restarting` if any is, else `Backoff` if any is, else `Stopped`.
    pub status: PluginStatus,
    /// The process id of the first instance that has a process running.
    pub pid: Option<u32>,
    /// Restarts of all instances together.
    pub restarts: u64,
    /// Recycles (make-before-break replacements) of all instances together.
    pub recycles: u64,
    /// Spare processes started and ready right now (`standby`).
    pub standby_ready: usize,
    /// Each instance, in index order.
    pub instances: Vec<InstanceState>,
    /// Calls made through the handles ([`PluginHandle::call`], [`PluginHandle::call_all`]).
    pub calls: u64,
    /// Those of the calls that failed, for any reason (timeouts and unavailability included).
    pub errors: u64,
    /// Those of the calls that timed out.
    pub timeouts: u64,
    /// Those of the calls answered with a result of the wrong shape.
    pub bad_results: u64,
    /// Calls sent a second time, to another instance (or a restarted one), after the first
    /// went down with them or stalled past half the hook timeout (hedged).
    pub retries: u64,
    /// Time spent in those calls, all together, in microseconds (divide by `calls` for the
    /// mean latency).
    pub latency_us_total: u64,
    /// The config the plugin last reported rejecting with `config_status` (it keeps serving
    /// with its last good config), until it reports the config accepted again or a new process
    /// of it starts.
    pub config_error: Option<crate::ConfigRejection>,
    /// The low-latency mode's budget its last started process runs with (`busy_poll_us`; 0:
    /// off).
    pub busy_poll_us: u32,
    /// Busy-poll spins of its connections that found the answer (or request) they waited for.
    pub busy_poll_data: u64,
    /// Busy-poll spins of its connections that gave up with nothing read.
    pub busy_poll_timeouts: u64,
}

/// A handle on one launched plugin. Cheap to clone; all clones see the same plugin.
#[derive(Debug, Clone)]
pub struct PluginHandle {
    pub(crate) shared: Arc<Shared>,
}

/// Methods every plugin answers, whatever hooks it declared (never sent twice).
const LIFECYCLE: [&str; 4] = [Configure::NAME, Start::NAME, Heartbeat::NAME, Stop::NAME];

impl PluginHandle {
    /// The plugin's name.
    pub fn name(&self) -> &str {
        &self.shared.name
    }

    /// The plugin's type.
    pub fn plugin_type(&self) -> PluginType {
        self.shared.plugin_type
    }

    /// How many instances (processes) the plugin runs.
    pub fn instances(&self) -> usize {
        self.shared.instances.len()
    }

    /// Whether the plugin declared `hook` in its handshake: a ready instance's declaration, or
    /// while none is ready, the last one seen. A plugin that is down keeps its hooks, so the
    /// caller applies its failure policy (a call waits for a restart or fails with
    /// [`PluginCallError::Unavailable`]) instead of skipping it. False before the first start.
    pub fn has_hook(&self, hook: &str) -> bool {
        self.declares(|declared| declared.contains(hook))
    }

    /// Whether the plugin declared in its handshake that `hook` wants the body (see
    /// [`has_hook`](Self::has_hook) for which declaration counts while the plugin is down).
    pub fn wants_body(&self, hook: &str) -> bool {
        self.declares(|declared| declared.wants_body(hook))
    }

    /// The request parts the plugin declared `hook` needs (`None`: the whole request), by a
    /// ready instance's declaration or, while none is ready, the last declaration seen.
    pub fn request_parts(&self, hook: &str) -> Option<Arc<[RequestPart]>> {
        let instances = &self.shared.instances;
        let ready = instances.iter().find_map(|instance| {
            let connections = instance.connections.load();
            connections.as_ref().map(|c| c.hooks.parts(hook))
        });
        match ready {
            Some(parts) => parts,
            None => instances
                .iter()
                .find_map(|instance| instance.declared.load().as_ref().map(|d| d.parts(hook)))
                .flatten(),
        }
    }

    /// Whether `test` holds for a ready instance's declaration or, while none is ready, for the
    /// last declaration seen.
    fn declares(&self, test: impl Fn(&Declared) -> bool) -> bool {
        let instances = &self.shared.instances;
        let ready = instances.iter().any(|instance| {
            instance
                .connections
                .load()
                .as_ref()
                .is_some_and(|c| test(&c.hooks))
        });
        ready
            || instances
                .iter()
                .any(|instance| instance.declared.load().as_ref().is_some_and(|d| test(d)))
    }

    /// Whether a call can be answered now or soon: an instance is ready, starting or restarting
    /// (calls wait for it within their timeout). False while every instance is in backoff or
    /// stopped: calls then fail at once with [`PluginCallError::Unavailable`].
    pub fn is_available(&self) -> bool {
        self.shared.instances.iter().any(|instance| {
            instance.connections.load().is_some()
                || !matches!(
                    instance.status(),
                    PluginStatus::Backoff | PluginStatus::Stopped
                )
        })
    }

    /// Whether at least one instance is started and answering calls.
    pub fn is_ready(&self) -> bool {
        self.shared
            .instances
            .iter()
            .any(|instance| instance.connections.load().is_some())
    }

    /// How many times the plugin's instances were restarted, all together.
    pub fn restarts(&self) -> u64 {
        self.shared.instances.iter().map(|i| i.restarts()).sum()
    }

    /// The process id of the first instance that has a process running.
    pub fn pid(&self) -> Option<u32> {
        self.shared.instances.iter().find_map(|i| i.pid())
    }

    /// A snapshot of the plugin's state.
    pub fn state(&self) -> PluginState {
        let instances: Vec<InstanceState> = self
            .shared
            .instances
            .iter()
            .map(|instance| InstanceState {
                index: instance.index,
                status: instance.status(),
                pid: instance.pid(),
                restarts: instance.restarts(),
                recycles: instance.recycles.load(Ordering::Relaxed),
                socket_path: instance.current_socket_path(),
            })
            .collect();
        let any = |status| instances.iter().any(|i| i.status == status);
        let status = [
            PluginStatus::Ready,
            PluginStatus::Starting,
            PluginStatus::Restarting,
            PluginStatus::Backoff,
        ]
        .into_iter()
        .find(|&s| any(s))
        .unwrap_or(PluginStatus::Stopped);
        PluginState {
            status,
            pid: instances.iter().find_map(|i| i.pid),
            restarts: instances.iter().map(|i| i.restarts).sum(),
            recycles: instances.iter().map(|i| i.recycles).sum(),
            standby_ready: self.shared.standby_ready.load(Ordering::Relaxed),
            instances,
            calls: self.shared.calls.load(Ordering::Relaxed),
            errors: self.shared.errors.load(Ordering::Relaxed),
            timeouts: self.shared.timeouts.load(Ordering::Relaxed),
            bad_results: self.shared.bad_results.load(Ordering::Relaxed),
            retries: self.shared.retries.load(Ordering::Relaxed),
            latency_us_total: self.shared.latency_us.load(Ordering::Relaxed),
            config_error: self.shared.config_status.rejection(),
            busy_poll_us: self.shared.busy_poll_us.load(Ordering::Relaxed),
            busy_poll_data: self.shared.busy_poll.data.load(Ordering::Relaxed),
            busy_poll_timeouts: self.shared.busy_poll.timed_out.load(Ordering::Relaxed),
        }
    }

    /// Asks every ready instance's supervisor to restart its process now (`stop`, then a
    /// fresh start, without the backoff). Returns how many instances were asked; instances that
    /// are not ready (starting, restarting, stopped) are left alone.
    pub fn restart(&self) -> usize {
        let mut asked = 0;
        for instance in &self.shared.instances {
            if instance.status() == PluginStatus::Ready {
                instance.restart_pending.store(true, Ordering::Release);
                instance.restart_requested.notify_one();
                asked += 1;
            }
        }
        asked
    }

    /// The listening socket of the first instance.
    pub fn socket_path(&self) -> &Path {
        self.shared
            .instances
            .first()
            .map_or(Path::new(""), |i| i.socket_path.as_path())
    }

    /// Calls a method on the plugin with the spec's hook timeout.
    ///
    /// Hooks (every method but the lifecycle ones) must have been declared in the handshake.
    /// Calls are spread round-robin over the ready instances, and within an instance over the
    /// connections it opened. While no instance is ready but one is starting or restarting, the
    /// call waits for it within the timeout; while all are in backoff or stopped, it fails at
    /// once with [`PluginCallError::Unavailable`]. A hook call whose process dies with it, or
    /// that stalls past half the timeout while another instance is ready, is sent once more
    /// (unless the plugin declared the hook `no_retry`). A `null` result reads as `{}`.
    pub async fn call<M: Method>(&self, params: &M::Params) -> Result<M::Result, PluginCallError> {
        self.call_parsed(M::NAME, params, |raw| serde_json::from_str(raw))
            .await
    }

    /// Calls `method` by name like [`call`](Self::call), with params already in any
    /// serialisable form (e.g. a [`serde_json::value::RawValue`]) and the result read by
    /// `parse` from its JSON text (`{}` for a `null` result). A result that `parse` refuses
    /// fails the call ([`CallError::InvalidResult`]) without closing anything; only
    /// `restart_after_errors` of them in a row from one process restart it.
    pub async fn call_parsed<P, R>(
        &self,
        method: &'static str,
        params: &P,
        parse: impl FnOnce(&str) -> Result<R, serde_json::Error>,
    ) -> Result<R, PluginCallError>
    where
        P: serde::Serialize + ?Sized,
    {
        let started = Instant::now();
        let deadline = started + self.shared.hook_timeout;
        let outcome = match self.route(method, params, deadline).await {
            Ok((target, raw)) => self.judge(&target, method, &raw, parse),
            Err(error) => Err(error),
        };
        self.count(&outcome, started);
        outcome
    }

    /// Calls a method on every ready instance at once (e.g. `add_upstream` on every instance of
    /// a router plugin), with the hook timeout. Returns each ready instance's index and outcome;
    /// instances that are down are skipped (bring them up to date in
    /// [`crate::BeforeReady`]); nothing is sent twice. Empty when no instance is ready.
    pub async fn call_all<M: Method>(
        &self,
        params: &M::Params,
    ) -> Vec<(usize, Result<M::Result, PluginCallError>)> {
        let calls = self.shared.instances.iter().filter_map(|instance| {
            let connections = instance.connections.load_full()?;
            let peer = pick_peer(instance, &connections)?;
            let target = Target {
                instance: instance.as_ref(),
                connections,
                peer,
            };
            Some(async move {
                let started = Instant::now();
                let deadline = started + self.shared.hook_timeout;
                let parse = |raw: &str| serde_json::from_str(raw);
                let outcome = match self.send(target, M::NAME, params, deadline).await {
                    (target, Ok(raw)) => self.judge(&target, M::NAME, &raw, parse),
                    (_, Err(error)) => Err(error),
                };
                self.count(&outcome, started);
                (instance.index, outcome)
            })
        });
        futures::future::join_all(calls).await
    }

    fn count<T>(&self, outcome: &Result<T, PluginCallError>, started: Instant) {
        self.shared.calls.fetch_add(1, Ordering::Relaxed);
        let took = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX);
        self.shared.latency_us.fetch_add(took, Ordering::Relaxed);
        if let Err(error) = outcome {
            self.shared.errors.fetch_add(1, Ordering::Relaxed);
            if let PluginCallError::Timeout { .. } = error {
                self.shared.timeouts.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}
