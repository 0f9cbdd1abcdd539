//! The call path of a [`PluginHandle`]: where a hook call goes and what happens when it goes
//! wrong there. It owns
//! - picking a ready instance and connection, round-robin, and waiting (within the call's
//!   timeout) for one while an instance is starting or restarting;
//! - sending a call once more when the process it went to dies with it (its connection closes)
//!   or stalls past half the timeout while another instance is ready (hedging: the first answer
//!   wins), unless the hook is `no_retry` or a lifecycle method;
//! - judging the answer: a `null` result is `{}`; a result of the wrong shape fails its call
//!   (counted, warned about at most once per interval) and only `restart_after_errors` of them in
//!   a row restart the process; `restart_after_timeouts` timed-out or stalled calls in a row take
//!   the process as hung and restart it.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use gatekeeper_rpc::peer::{lenient_result, CloseReason};
use gatekeeper_rpc::CallError;
use serde_json::value::RawValue;
use tokio::time::Instant;

use super::{PluginHandle, LIFECYCLE};
use crate::error::PluginCallError;
use crate::state::{Connections, Instance};

/// How often a call waiting for an instance to become ready looks again whether one is still
/// coming (an instance may go from restarting into backoff: the call then fails at once).
const RECHECK: Duration = Duration::from_millis(20);

/// One place a call can go: an instance, the connections of its current process and which of
/// them.
#[derive(Clone)]
pub(super) struct Target<'a> {
    pub(super) instance: &'a Instance,
    pub(super) connections: Arc<Connections>,
    pub(super) peer: usize,
}

/// A raw answer and where it came from.
pub(super) type Answered<'a> = (Target<'a>, Result<Box<RawValue>, PluginCallError>);

impl PluginHandle {
    /// Sends a call to a ready instance (waiting for one within the timeout while an instance is
    /// coming up), again once if it went down with it or stalled, and returns the raw answer and
    /// the instance that gave it.
    pub(super) async fn route<P>(
        &self,
        method: &'static str,
        params: &P,
        deadline: Instant,
    ) -> Result<(Target<'_>, Box<RawValue>), PluginCallError>
    where
        P: serde::Serialize + ?Sized,
    {
        let first = match self.pick(|_, _| false) {
            Some(target) => target,
            None => self
                .wait_for_ready(|_, _| false, deadline)
                .await
                .ok_or_else(|| self.unavailable())?,
        };
        let may_retry = !LIFECYCLE.contains(&method) && first.connections.hooks.may_retry(method);
        let (target, outcome, sent_twice) = self
            .send_hedged(first, method, params, deadline, may_retry)
            .await;
        let error = match outcome {
            Ok(raw) => return Ok((target, raw)),
            Err(error) if may_retry && !sent_twice && went_down(&error) => error,
            Err(error) => return Err(error),
        };
        // Another instance, or this one's next process: not the connections that went down.
        let gone = target.connections.clone();
        let other = |_: &Instance, connections: &Arc<Connections>| Arc::ptr_eq(connections, &gone);
        let second = match self.pick(other) {
            Some(target) => target,
            None => match self.wait_for_ready(other, deadline).await {
                Some(target) => target,
                None => return Err(error),
            },
        };
        self.shared.retries.fetch_add(1, Ordering::Relaxed);
        tracing::debug!(plugin = %self.shared.name, hook = method, from = %target.instance.label, to = %second.instance.label, "sending a call again after its process went down");
        let (target, outcome) = self.send(second, method, params, deadline).await;
        outcome.map(|raw| (target, raw))
    }

    /// Sends a call to `first`; if it is not answered within half the hook timeout and
    /// `may_hedge`, sends it to another ready instance too, and the first answer wins. Returns
    /// the answer, where it came from and whether the call was sent twice.
    async fn send_hedged<'a, P>(
        &'a self,
        first: Target<'a>,
        method: &'static str,
        params: &P,
        deadline: Instant,
        may_hedge: bool,
    ) -> (Target<'a>, Result<Box<RawValue>, PluginCallError>, bool)
    where
        P: serde::Serialize + ?Sized,
    {
        if !may_hedge || self.shared.instances.len() < 2 {
            // No hedge possible: one plain send, no timer and no clone of the target.
            let (target, outcome) = self.send(first, method, params, deadline).await;
            return (target, outcome, false);
        }
        let stalled = first.clone();
        let first_call = self.send(first, method, params, deadline);
        tokio::pin!(first_call);
        let hedge_at = deadline
            .checked_sub(self.shared.hook_timeout / 2)
            .unwrap_or(deadline);
        tokio::select! {
            (target, outcome) = &mut first_call => return (target, outcome, false),
            () = tokio::time::sleep_until(hedge_at) => {}
        }
        let elsewhere = stalled.instance.index;
        let Some(second) = self.pick(|instance, _| instance.index == elsewhere) else {
            let (target, outcome) = first_call.await;
            return (target, outcome, false);
        };
        self.shared.retries.fetch_add(1, Ordering::Relaxed);
        let second_call = self.send(second, method, params, deadline);
        tokio::pin!(second_call);
        let answered = tokio::select! {
            (target, outcome) = &mut first_call => match outcome {
                Ok(raw) => (target, Ok(raw)),
                Err(_) => second_call.await,
            },
            (target, outcome) = &mut second_call => match outcome {
                Ok(raw) => {
                    // The stalled attempt is given up: it counts as a timeout of its process.
                    self.note_timeout(stalled.instance, &stalled.connections);
                    (target, Ok(raw))
                }
                Err(_) => first_call.await,
            },
        };
        (answered.0, answered.1, true)
    }

    /// Sends a call on one connection with what is left of the call's time, and keeps the
    /// timed-out-in-a-row count of its instance.
    pub(super) async fn send<'a, P>(
        &'a self,
        target: Target<'a>,
        method: &'static str,
        params: &P,
        deadline: Instant,
    ) -> Answered<'a>
    where
        P: serde::Serialize + ?Sized,
    {
        let plugin = || self.shared.name.clone();
        let connections = &target.connections;
        if !LIFECYCLE.contains(&method) && !connections.hooks.contains(method) {
            let error = PluginCallError::NotDeclared {
                plugin: plugin(),
                hook: method,
            };
            return (target, Err(error));
        }
        let Some(connection) = connections.peers.get(target.peer) else {
            return (target, Err(self.unavailable()));
        };
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            // The call's time went on waiting for this process: not its fault.
            let error = PluginCallError::Timeout {
                plugin: plugin(),
                hook: method,
                timeout: self.shared.hook_timeout,
            };
            return (target, Err(error));
        }
        let outcome = connection.call_raw(method, params, left).await;
        if matches!(outcome, Err(CallError::Timeout { .. })) {
            self.note_timeout(target.instance, connections);
        } else if !matches!(outcome, Err(CallError::Closed { .. })) {
            target
                .instance
                .consecutive_timeouts
                .store(0, Ordering::Relaxed);
        }
        let outcome = outcome.map_err(|source| match source {
            CallError::Timeout { .. } => PluginCallError::Timeout {
                plugin: plugin(),
                hook: method,
                timeout: self.shared.hook_timeout,
            },
            source => PluginCallError::Failed {
                plugin: plugin(),
                source,
            },
        });
        (target, outcome)
    }

    /// Reads an answer with `parse` (a `null` result as `{}`). A result `parse` refuses fails
    /// the call ([`CallError::InvalidResult`]); after `restart_after_errors` of them in a row
    /// from one process, that process is restarted. A good answer resets the count.
    pub(super) fn judge<R>(
        &self,
        target: &Target<'_>,
        method: &'static str,
        raw: &RawValue,
        parse: impl FnOnce(&str) -> Result<R, serde_json::Error>,
    ) -> Result<R, PluginCallError> {
        let instance = target.instance;
        match parse(lenient_result(raw)) {
            Ok(result) => {
                instance.consecutive_bad_results.store(0, Ordering::Relaxed);
                // What `recycle_after = <calls>` counts, per process.
                target.connections.calls.fetch_add(1, Ordering::Relaxed);
                Ok(result)
            }
            Err(source) => {
                let source = CallError::InvalidResult {
                    method: method.to_owned(),
                    source,
                };
                self.note_bad_result(instance, &target.connections, &source);
                Err(PluginCallError::Failed {
                    plugin: self.shared.name.clone(),
                    source,
                })
            }
        }
    }

    /// Counts a result of the wrong shape; after `restart_after_errors` in a row the process is
    /// restarted (its control connection closed, not as a protocol violation).
    fn note_bad_result(&self, instance: &Instance, connections: &Connections, error: &CallError) {
        self.shared.bad_results.fetch_add(1, Ordering::Relaxed);
        let in_a_row = instance
            .consecutive_bad_results
            .fetch_add(1, Ordering::Relaxed)
            + 1;
        if let Some(calls) = self
            .shared
            .bad_result_warning
            .affected(std::time::Instant::now())
        {
            tracing::warn!(plugin = %instance.label, %error, in_a_row, calls, "plugin answered with a result of the wrong shape: the call failed (calls affected since the last warning: {calls})");
        }
        let limit = self.shared.restart_after_errors;
        if limit == 0 || in_a_row < limit {
            return;
        }
        instance.consecutive_bad_results.store(0, Ordering::Relaxed);
        if let Some(control) = connections.peers.first() {
            tracing::warn!(plugin = %instance.label, in_a_row, "results of the wrong shape keep coming: restarting the plugin");
            control.close_with(CloseReason::Failing(format!(
                "{in_a_row} results of the wrong shape in a row"
            )));
        }
    }

    /// Counts a hook call that timed out (or stalled and was answered elsewhere); after
    /// `restart_after_timeouts` in a row the process is taken as hung: its control connection is
    /// closed, so its supervisor restarts it now rather than after its heartbeats go unanswered.
    pub(super) fn note_timeout(&self, instance: &Instance, connections: &Connections) {
        let in_a_row = instance
            .consecutive_timeouts
            .fetch_add(1, Ordering::Relaxed)
            + 1;
        let limit = self.shared.restart_after_timeouts;
        if limit == 0 || in_a_row < limit {
            return;
        }
        instance.consecutive_timeouts.store(0, Ordering::Relaxed);
        if let Some(control) = connections.peers.first() {
            if control.is_closed() {
                return;
            }
            if let Some(times) = self.shared.hung_warning.affected(std::time::Instant::now()) {
                tracing::warn!(plugin = %instance.label, timeouts = in_a_row, times, "hook calls keep timing out: taking the plugin as hung and restarting it (hung processes since the last warning: {times})");
            }
            control.close_with(CloseReason::Hung(format!(
                "{in_a_row} hook calls in a row timed out"
            )));
        }
    }

    /// The next ready instance and open connection, round-robin, leaving out those `skip` names.
    pub(super) fn pick(
        &self,
        skip: impl Fn(&Instance, &Arc<Connections>) -> bool,
    ) -> Option<Target<'_>> {
        let instances = &self.shared.instances;
        let count = instances.len();
        let start = if count == 1 {
            0
        } else {
            self.shared.next_instance.fetch_add(1, Ordering::Relaxed)
        };
        (0..count).find_map(|i| {
            let instance = instances.get((start + i) % count)?;
            let connections = instance.connections.load_full()?;
            if skip(instance, &connections) {
                return None;
            }
            let peer = pick_peer(instance, &connections)?;
            Some(Target {
                instance: instance.as_ref(),
                connections,
                peer,
            })
        })
    }

    /// Waits until an instance `skip` does not name is ready, while one is coming (starting,
    /// restarting) and until `deadline`. `None` when none became ready in time or none is coming.
    async fn wait_for_ready(
        &self,
        skip: impl Fn(&Instance, &Arc<Connections>) -> bool,
        deadline: Instant,
    ) -> Option<Target<'_>> {
        loop {
            // Created before looking, so a `publish` in between is not missed.
            let became_ready = self.shared.became_ready.notified();
            if let Some(target) = self.pick(&skip) {
                return Some(target);
            }
            let now = Instant::now();
            if now >= deadline || !self.is_available() {
                return None;
            }
            let _ = tokio::time::timeout_at((now + RECHECK).min(deadline), became_ready).await;
        }
    }

    pub(super) fn unavailable(&self) -> PluginCallError {
        PluginCallError::Unavailable {
            plugin: self.shared.name.clone(),
        }
    }
}

/// Whether a call failed because its process or connection went away before answering: then
/// it may be sent again.
fn went_down(error: &PluginCallError) -> bool {
    matches!(
        error,
        PluginCallError::Unavailable { .. }
            | PluginCallError::Failed {
                source: CallError::Closed { .. },
                ..
            }
    )
}

/// The index of the instance's next open connection, round-robin.
pub(super) fn pick_peer(instance: &Instance, connections: &Connections) -> Option<usize> {
    let count = connections.peers.len();
    if count == 1 {
        return connections
            .peers
            .first()
            .filter(|p| !p.is_closed())
            .map(|_| 0);
    }
    let start = instance.next_peer.fetch_add(1, Ordering::Relaxed);
    (0..count)
        .map(|i| (start + i) % count)
        .find(|&i| connections.peers.get(i).is_some_and(|p| !p.is_closed()))
}
