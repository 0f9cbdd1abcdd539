//! The standby pool of one plugin (`standby = N`): a task that keeps N spare processes spawned,
//! handshaken, configured and started (not published, no hook calls, no replay), checks them for
//! exit every heartbeat interval (at most every second) and replaces a dead one, and hands a
//! live spare to an instance's supervisor that asks for one ([`Standby::take`]); a new spare is
//! then started. [`Shared::standby_ready`] counts the ready spares. Spares that fail to start
//! are tried again with the restart backoff; new settings ([`Standby::renew`], on a
//! reconfigure) replace every spare.

use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use tokio::sync::{mpsc, oneshot};
use tokio::time::{sleep_until, timeout, Instant};

use crate::error::StartError;
use crate::socket_dir::generation_path;
use crate::spec::PluginSpec;
use crate::state::Shared;

use super::starter::{ProcessSocket, ReplayFor, Running, Starter};
use super::Supervisor;
use crate::events::PluginEventKind;

/// How long a supervisor waits for the pool to answer a take.
const TAKE_TIMEOUT: Duration = Duration::from_secs(1);

/// What the pool is asked.
enum Request {
    /// A live spare, if one is ready.
    Take(oneshot::Sender<Running>),
    /// New settings (a reconfigure): the spares are replaced by ones started with them.
    Renew(Arc<PluginSpec>),
}

/// The way to the pool, for supervisors and the host.
#[derive(Debug, Clone)]
pub(crate) struct Standby {
    requests: mpsc::UnboundedSender<Request>,
}

impl Standby {
    /// A live spare, if one is ready now.
    pub(crate) async fn take(&self) -> Option<Running> {
        let (reply, spare) = oneshot::channel();
        self.requests.send(Request::Take(reply)).ok()?;
        timeout(TAKE_TIMEOUT, spare).await.ok()?.ok()
    }

    /// Replaces the spares by ones started with `spec`.
    pub(crate) fn renew(&self, spec: Arc<PluginSpec>) {
        let _ = self.requests.send(Request::Renew(spec));
    }
}

/// The pool task's state.
pub(crate) struct StandbyPool {
    pub(crate) spec: Arc<PluginSpec>,
    pub(crate) starter: Arc<Starter>,
    /// Spares' sockets are named after this one (see [`generation_path`]).
    pub(crate) base_socket: PathBuf,
    requests: mpsc::UnboundedReceiver<Request>,
}

impl StandbyPool {
    /// A pool and the handle supervisors use to take spares from it.
    pub(crate) fn new(
        spec: Arc<PluginSpec>,
        starter: Arc<Starter>,
        base_socket: PathBuf,
    ) -> (StandbyPool, Standby) {
        let (requests_tx, requests) = mpsc::unbounded_channel();
        let pool = StandbyPool {
            spec,
            starter,
            base_socket,
            requests,
        };
        (
            pool,
            Standby {
                requests: requests_tx,
            },
        )
    }

    fn shared(&self) -> &Shared {
        &self.starter.plugin
    }

    /// Keeps the spares until the plugin stops; then stops them.
    pub(crate) async fn run(mut self) {
        let label: Arc<str> = Arc::from(format!("{}~spare", self.spec.name));
        let env_instance = self.spec.instances.max(1);
        let mut spares: Vec<Running> = Vec::new();
        let mut starting: Option<BoxFuture<'static, Result<Running, StartError>>> = None;
        let mut generation = 0u64;
        let mut backoff = self.spec.restart_backoff_min;
        let mut next_start = Instant::now();
        let every = self
            .spec
            .heartbeat_interval
            .min(Duration::from_secs(1))
            .max(Duration::from_millis(10));
        let mut checks = tokio::time::interval(every);
        checks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let wanted = self.spec.standby;
            if starting.is_none() && spares.len() < wanted && Instant::now() >= next_start {
                generation += 1;
                let path = generation_path(&self.base_socket, 's', generation);
                let starter = self.starter.clone();
                let spec = self.spec.clone();
                let label = label.clone();
                starting = Some(Box::pin(async move {
                    let socket = ProcessSocket::bind(path)?;
                    starter
                        .start(&spec, &label, env_instance, socket, None)
                        .await
                }));
            }
            let waiting = starting.is_none() && spares.len() < wanted;
            tokio::select! {
                biased;
                () = self.starter.cancel.cancelled() => break,
                Some(request) = self.requests.recv() => match request {
                    Request::Take(reply) => {
                        drop_dead(&self.spec.name, &mut spares).await;
                        if let Some(spare) = spares.pop() {
                            if let Err(spare) = reply.send(spare) {
                                spares.push(spare);
                            }
                        }
                    }
                    Request::Renew(spec) => {
                        tracing::info!(plugin = %self.spec.name, "replacing the standby processes with ones on the new settings");
                        self.spec = spec;
                        starting = None;
                        for spare in spares.drain(..) {
                            spare.discard().await;
                        }
                        backoff = self.spec.restart_backoff_min;
                        next_start = Instant::now();
                    }
                },
                outcome = async {
                    match starting.as_mut() {
                        Some(start) => start.await,
                        None => std::future::pending().await,
                    }
                }, if starting.is_some() => {
                    starting = None;
                    match outcome {
                        Ok(spare) => {
                            tracing::info!(plugin = %self.spec.name, pid = spare.pid, "standby process ready");
                            backoff = self.spec.restart_backoff_min;
                            spares.push(spare);
                        }
                        Err(StartError::ShutDown) => break,
                        Err(e) => {
                            tracing::warn!(plugin = %self.spec.name, error = %e, next_attempt_in = ?backoff, "a standby process did not start");
                            next_start = Instant::now() + backoff;
                            backoff = backoff.saturating_mul(2).min(self.spec.restart_backoff_max);
                        }
                    }
                }
                _ = checks.tick() => drop_dead(&self.spec.name, &mut spares).await,
                () = sleep_until(next_start), if waiting => {}
            }
            self.shared()
                .standby_ready
                .store(spares.len(), Ordering::Relaxed);
        }
        self.shared().standby_ready.store(0, Ordering::Relaxed);
        drop(starting);
        for spare in spares {
            spare.discard().await;
        }
    }
}

/// Removes (and reaps) the spares that died.
async fn drop_dead(plugin: &str, spares: &mut Vec<Running>) {
    let mut index = 0;
    while index < spares.len() {
        if spares[index].is_dead() {
            let dead = spares.swap_remove(index);
            let pid = dead.pid;
            let status = dead.discard().await;
            tracing::warn!(%plugin, ?pid, exit_status = %status, "a standby process died; starting another");
        } else {
            index += 1;
        }
    }
}

impl Supervisor {
    /// A ready spare from the standby pool, replayed and published, if there is one.
    pub(super) async fn take_spare(&mut self) -> Option<Running> {
        let standby = self.standby.as_ref()?;
        let mut spare = standby.take().await?;
        let restarts = self.instance.count_restart();
        let replay = ReplayFor {
            instance: self.instance.index,
            restarts,
        };
        let replayed = self
            .starter
            .replay(&self.spec, &spare.control, &spare.hooks, spare.pid, replay)
            .await;
        if let Err(e) = replayed {
            tracing::warn!(plugin = %self.instance.label, error = %e, pid = spare.pid, "a standby process failed its replay; restarting normally");
            self.events.emit(PluginEventKind::Failed {
                reason: format!("standby takeover failed: {e}"),
            });
            spare.discard().await;
            return None;
        }
        spare.ready_at = Instant::now();
        self.publish(&mut spare);
        tracing::info!(plugin = %self.instance.label, pid = spare.pid, restarts, "a standby process took over");
        self.events.emit(PluginEventKind::TakenOver {
            restarts,
            pid: spare.pid,
        });
        Some(spare)
    }
}
