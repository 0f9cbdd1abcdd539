//! Telling systemd what gatekeeper is doing (`sd_notify`): `READY=1` once it serves,
//! `RELOADING=1` and `READY=1` around a SIGHUP reload, `STOPPING=1` on shutdown, `STATUS=` lines,
//! and `WATCHDOG=1` pings at half the unit's `WatchdogSec`. Everything is a no-op when
//! `NOTIFY_SOCKET` is unset (not started by systemd with `Type=notify`).

use std::time::Duration;

use sd_notify::NotifyState;

/// Sends `states` to systemd; a failure is logged, never fatal.
fn send(states: &[NotifyState]) {
    if let Err(e) = sd_notify::notify(states) {
        tracing::warn!(error = %e, "cannot notify systemd");
    }
}

/// gatekeeper serves: listeners bound, plugins started.
pub fn ready(status: &str) {
    send(&[NotifyState::Ready, NotifyState::Status(status)]);
}

/// A reload starts. systemd ≥ 253 (`Type=notify-reload`) wants the monotonic time with it.
pub fn reloading() {
    match NotifyState::monotonic_usec_now() {
        Ok(now) => send(&[
            NotifyState::Reloading,
            now,
            NotifyState::Status("reloading the configuration"),
        ]),
        Err(_) => send(&[
            NotifyState::Reloading,
            NotifyState::Status("reloading the configuration"),
        ]),
    }
}

/// gatekeeper is shutting down (draining).
pub fn stopping() {
    send(&[
        NotifyState::Stopping,
        NotifyState::Status("draining connections"),
    ]);
}

/// A `STATUS=` line only.
pub fn status(status: &str) {
    send(&[NotifyState::Status(status)]);
}

/// When the unit sets `WatchdogSec` (systemd passes `WATCHDOG_USEC`, and `WATCHDOG_PID` names
/// this process), pings `WATCHDOG=1` at half that interval from a task of the runtime, so a
/// stuck runtime gets gatekeeper restarted. Returns the task, or `None` without a watchdog.
pub fn spawn_watchdog() -> Option<tokio::task::JoinHandle<()>> {
    let timeout = sd_notify::watchdog_enabled()?;
    let every = (timeout / 2).max(Duration::from_millis(10));
    tracing::info!(interval = ?every, "systemd watchdog enabled");
    Some(tokio::spawn(async move {
        let mut ticks = tokio::time::interval(every);
        loop {
            ticks.tick().await;
            send(&[NotifyState::Watchdog]);
        }
    }))
}
