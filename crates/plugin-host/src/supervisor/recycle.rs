//! Recycling: when a running process is due for replacement (`max_memory`: its resident memory
//! read from `/proc` on Linux; `recycle_after`: calls it answered or time since it became
//! ready), and how the old process is let go once its successor took over: its in-flight calls
//! are answered first (up to the hook timeout), then `stop`, then kill if it does not exit.

use std::sync::atomic::Ordering;
use std::time::Duration;

use gatekeeper_rpc::methods::{Empty, Stop};
use gatekeeper_rpc::Peer;
use tokio::time::{sleep, timeout, Instant};

use crate::process::{describe, kill, resident_bytes};
use crate::spec::{PluginSpec, RecycleAfter};

use super::starter::{ReplayFor, Running};
use super::Supervisor;
use crate::error::StartError;
use crate::events::PluginEventKind;

/// How often a process is checked: every heartbeat interval, at most every second.
pub(crate) fn check_interval(spec: &PluginSpec) -> Option<Duration> {
    if spec.max_memory.is_none() && spec.recycle_after.is_none() {
        return None;
    }
    Some(
        spec.heartbeat_interval
            .min(Duration::from_secs(1))
            .max(Duration::from_millis(10)),
    )
}

/// Why `running` is due for recycling, if it is.
pub(crate) fn due(spec: &PluginSpec, running: &Running) -> Option<String> {
    if let (Some(max), Some(pid)) = (spec.max_memory, running.pid) {
        if let Some(rss) = resident_bytes(pid) {
            if rss > max {
                return Some(format!(
                    "rss {} over max_memory {}",
                    human_bytes(rss),
                    human_bytes(max)
                ));
            }
        }
    }
    match spec.recycle_after {
        Some(RecycleAfter::Calls(limit)) => {
            let calls = running.calls.load(Ordering::Relaxed);
            (calls >= limit).then(|| format!("{calls} calls answered, recycle_after {limit}"))
        }
        Some(RecycleAfter::Time(limit)) => {
            let ran = running.ready_at.elapsed();
            (ran >= limit).then(|| format!("ran {ran:.0?}, recycle_after {limit:?}"))
        }
        None => None,
    }
}

/// Bytes for humans, in MiB (KiB under one MiB).
fn human_bytes(bytes: u64) -> String {
    const MIB: u64 = 1024 * 1024;
    if bytes >= MIB {
        format!("{} MiB", bytes / MIB)
    } else {
        format!("{} KiB", bytes / 1024)
    }
}

/// Lets a replaced process go: waits (up to the hook timeout) until no call is in flight on
/// `peers` (its connections, no longer published), then `stop`, up to the stop timeout for it to
/// exit, kill. Its socket is removed when `old` is dropped.
pub(crate) async fn drain_and_stop(spec: &PluginSpec, mut old: Running, peers: Vec<Peer>) {
    // A call that picked these connections just before the successor was published may not
    // have sent its request yet.
    sleep(Duration::from_millis(20)).await;
    let deadline = Instant::now() + spec.hook_timeout;
    while Instant::now() < deadline
        && peers
            .iter()
            .any(|peer| !peer.is_closed() && peer.pending_calls() > 0)
    {
        sleep(Duration::from_millis(5)).await;
    }
    let limit = spec.stop_timeout;
    if let Err(e) = old.control.request::<Stop>(&Empty {}, limit).await {
        tracing::debug!(plugin = %old.context.label, error = %e, "`stop` failed");
    }
    let status = match timeout(limit, old.child.wait()).await {
        Ok(status) => describe(status),
        Err(_) => kill(&mut old.child).await,
    };
    for peer in &peers {
        peer.close();
    }
    let pid = old.pid;
    old.discard().await;
    tracing::debug!(plugin = %spec.name, ?pid, exit_status = %status, "recycled plugin process stopped");
}

impl Supervisor {
    /// Replaces `running` make-before-break: a successor (a spare, or a fresh process) is
    /// started and published, then the old process is let go in the background once its calls
    /// are answered. On an error the old process keeps serving.
    pub(super) async fn recycle(
        &mut self,
        running: &mut Running,
        reason: &str,
    ) -> Result<(), StartError> {
        tracing::info!(plugin = %self.instance.label, pid = running.pid, %reason, "recycling the plugin process");
        let mut successor = match self.take_recycle_spare().await {
            Some(spare) => spare,
            None => self.start_process().await?,
        };
        successor.ready_at = Instant::now();
        let old_peers: Vec<Peer> = self
            .instance
            .connections
            .load_full()
            .map(|c| c.peers.clone())
            .unwrap_or_default();
        self.publish(&mut successor);
        let recycles = self.instance.recycles.fetch_add(1, Ordering::Relaxed) + 1;
        self.events.emit(PluginEventKind::Recycled {
            reason: reason.to_owned(),
            pid: successor.pid,
        });
        tracing::debug!(plugin = %self.instance.label, pid = successor.pid, recycles, "the successor took over; stopping the old process once its calls are answered");
        let old = std::mem::replace(running, successor);
        let spec = self.spec.clone();
        self.retiring.spawn(async move {
            drain_and_stop(&spec, old, old_peers).await;
        });
        Ok(())
    }

    /// A spare replayed for this instance, for a recycle (not counted as a restart).
    async fn take_recycle_spare(&mut self) -> Option<Running> {
        let standby = self.standby.as_ref()?;
        let spare = standby.take().await?;
        let replay = ReplayFor {
            instance: self.instance.index,
            restarts: self.instance.restarts(),
        };
        match self
            .starter
            .replay(&self.spec, &spare.control, &spare.hooks, spare.pid, replay)
            .await
        {
            Ok(()) => Some(spare),
            Err(e) => {
                tracing::warn!(plugin = %self.instance.label, error = %e, "a standby process failed its replay");
                spare.discard().await;
                None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes_read_as_mib() {
        assert_eq!(human_bytes(300 * 1024 * 1024), "300 MiB");
        assert_eq!(human_bytes(512 * 1024), "512 KiB");
    }
}
