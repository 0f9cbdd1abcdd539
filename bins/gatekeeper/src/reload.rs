//! SIGHUP: re-read the config file (same path, same flags as at start) and apply it while
//! serving. A config with errors changes nothing (every error is logged, as `gatekeeper check`
//! prints them). Otherwise, in this order:
//!
//! 1. listeners: added ones are bound, removed ones stop accepting and drain, changed ones are
//!    rebound, every TLS certificate file is re-read (all or nothing; see the proxy's
//!    `ListenerControl::apply`);
//! 2. plugins: added ones start, changed ones get a successor started next to them, the order
//!    is the new one (see [`crate::plugins`]);
//! 3. the proxy's hooks and metrics exporters are swapped at once: requests that started keep
//!    what they started with, new ones use the new set; the access log file is reopened (so
//!    logrotate may move it away and send SIGHUP);
//! 4. once no request uses the old hooks any more (at most `shutdown_grace`), the removed and
//!    replaced plugins are stopped.
//!
//! Other settings (timeouts, limits, metrics batching, admin socket…) are compared and, when
//! changed, logged as needing a restart.

use std::sync::Arc;

use gatekeeper_proxy::{HooksSwitch, ListenerControl, Metrics, MetricsExporter};
use serde_json::Value;

use crate::admin::Operations;
use crate::cli::Cli;
use crate::config::Settings;
use crate::notify;
use crate::plugins::{PluginSet, Reconciled};
use crate::wiring::access_log::AccessLog;

/// The running configuration and what a reload changes in it.
pub struct Reloader {
    /// The settings in effect (a part that failed to apply keeps its old value here).
    pub running: Settings,
    /// The plugins.
    pub plugins: PluginSet,
    /// Swaps the proxy's hooks.
    pub hooks: HooksSwitch,
    /// Changes the proxy's listeners.
    pub listeners: ListenerControl,
    /// The metrics pipeline, whose exporters are swapped.
    pub metrics: Metrics,
    /// Exporters that live as long as gatekeeper (Prometheus).
    pub fixed_exporters: Vec<Arc<dyn MetricsExporter>>,
    /// The access log, reopened on each reload.
    pub access_log: Option<Arc<AccessLog>>,
    /// The admin socket's view of what runs.
    pub operations: Arc<Operations>,
}

/// Every metrics exporter: the fixed ones, the access log, then the plugins'.
pub fn all_exporters(
    fixed: &[Arc<dyn MetricsExporter>],
    access_log: &Option<Arc<AccessLog>>,
    plugins: &PluginSet,
) -> Vec<Arc<dyn MetricsExporter>> {
    let mut exporters = fixed.to_vec();
    if let Some(access_log) = access_log {
        exporters.push(access_log.clone());
    }
    exporters.extend(plugins.exporters());
    exporters
}

impl Reloader {
    /// Reloads on every SIGHUP until the task is aborted.
    pub async fn run(mut self) {
        use tokio::signal::unix::{signal, SignalKind};
        let Ok(mut hangup) = signal(SignalKind::hangup()) else {
            tracing::error!(
                "cannot install the SIGHUP handler; the configuration will not be reloaded"
            );
            return;
        };
        while hangup.recv().await.is_some() {
            tracing::info!("SIGHUP: reloading the configuration");
            notify::reloading();
            let outcome = self.reload().await;
            notify::ready(&outcome);
        }
    }

    /// One reload; returns the status line for systemd.
    async fn reload(&mut self) -> String {
        let loaded =
            tokio::task::spawn_blocking(|| crate::check::settings_or_errors(&Cli::from_env()))
                .await;
        let new = match loaded {
            Ok(Ok(settings)) => settings,
            Ok(Err(errors)) => {
                self.operations.count_reload(false);
                for error in &errors {
                    tracing::error!(%error, "SIGHUP: configuration error");
                }
                tracing::error!(
                    errors = errors.len(),
                    "SIGHUP: the configuration has errors; nothing changed (run `gatekeeper check` for the list)"
                );
                return format!(
                    "serving; last reload failed ({} configuration error(s), see the log)",
                    errors.len()
                );
            }
            Err(e) => {
                self.operations.count_reload(false);
                tracing::error!(error = %e, "SIGHUP: reload failed; nothing changed");
                return "serving; last reload failed".into();
            }
        };
        let mut all_applied = self.apply_listeners(&new).await;
        let (plugins, retired) = self.plugins.reconcile(&new.plugins).await;
        log_plugin_changes(&plugins);
        all_applied &= plugins.failed.is_empty();
        let replaced = plugins
            .changed()
            .then(|| self.hooks.replace(self.plugins.hooks(&self.metrics)));
        all_applied &= self.reopen_access_log(&new);
        self.metrics.set_exporters(all_exporters(
            &self.fixed_exporters,
            &self.access_log,
            &self.plugins,
        ));
        if let (Some(replaced), false) = (replaced, retired.is_empty()) {
            // Requests that started before the swap may still call the old plugins.
            let grace = self.running.proxy.shutdown_grace;
            if !replaced.released(grace).await {
                tracing::warn!(
                    grace = %humantime::format_duration(grace),
                    "SIGHUP: requests still use the replaced plugins after shutdown_grace; stopping them anyway"
                );
            }
        }
        retired.finish().await;
        self.operations.ready(
            self.plugins.handles(),
            self.plugins.caches(),
            self.listeners.local_addrs(),
            self.metrics.clone(),
        );

        let pending = needs_restart(&self.running, &new);
        // Listeners, certificates and the access log were updated as they were applied.
        self.running.plugins = self
            .plugins
            .running()
            .iter()
            .map(|p| p.setting.clone())
            .collect();
        self.operations.set_config(&self.running);
        self.operations.count_reload(all_applied);
        // One summary line per reload.
        if !all_applied {
            tracing::warn!(
                restart_needed_for = %pending.join("; "),
                "SIGHUP: configuration reloaded with errors (see above): what failed keeps its running settings"
            );
        } else if pending.is_empty() {
            tracing::info!("SIGHUP: configuration reloaded");
        } else {
            tracing::warn!(
                changes = %pending.join("; "),
                "SIGHUP: these changes need a restart (systemctl restart gatekeeper); until then the running settings stay"
            );
        }
        match (all_applied, pending.is_empty()) {
            (false, _) => "serving; last reload had errors (see the log)".into(),
            (true, true) => "serving; configuration reloaded".into(),
            (true, false) => format!(
                "serving; reloaded, restart needed for: {}",
                pending.join("; ")
            ),
        }
    }

    /// Applies the listeners and certificates of `new`; false (and nothing changed) on error.
    async fn apply_listeners(&mut self, new: &Settings) -> bool {
        match self
            .listeners
            .apply(new.proxy.listeners.clone(), new.proxy.tls.clone())
            .await
        {
            Ok(changes) => {
                for warning in &changes.warnings {
                    tracing::warn!(%warning, "SIGHUP: listeners");
                }
                if changes.certificates_reloaded > 0 {
                    tracing::info!(
                        certificates = changes.certificates_reloaded,
                        "SIGHUP: TLS certificates reloaded"
                    );
                }
                if !changes.same_listeners() {
                    tracing::info!(
                        added = ?changes.added,
                        removed = ?changes.removed,
                        rebound = ?changes.rebound,
                        "SIGHUP: listeners changed"
                    );
                }
                self.running.proxy.listeners = new.proxy.listeners.clone();
                self.running.proxy.tls = new.proxy.tls.clone();
                true
            }
            Err(e) => {
                tracing::error!(error = %e, "SIGHUP: listeners and certificates not changed");
                false
            }
        }
    }

    /// Opens the access log of `new` (the same file again: it may have been rotated); false if
    /// it cannot be opened (the old one stays).
    fn reopen_access_log(&mut self, new: &Settings) -> bool {
        match AccessLog::open(new.access_log, &new.access_log_fields, &new.access_log_file) {
            Ok(access_log) => {
                self.access_log = access_log.map(Arc::new);
                self.running.access_log = new.access_log;
                self.running.access_log_file = new.access_log_file.clone();
                self.running.access_log_fields = new.access_log_fields.clone();
                true
            }
            Err(e) => {
                tracing::error!(file = %new.access_log_file.display(), error = %e, "SIGHUP: cannot open the access log file; the old one stays");
                false
            }
        }
    }
}

fn log_plugin_changes(changes: &Reconciled) {
    for (name, what) in [
        (&changes.added, "started"),
        (&changes.replaced, "restarted with new settings"),
        (&changes.updated, "failure policy changed"),
        (&changes.removed, "stopped (removed from the configuration)"),
    ]
    .into_iter()
    .flat_map(|(names, what)| names.iter().map(move |n| (n, what)))
    {
        tracing::info!(plugin = %name, "SIGHUP: plugin {what}");
    }
    if changes.reordered {
        tracing::info!("SIGHUP: modifiers are called in the new order");
    }
    for (name, error) in &changes.failed {
        tracing::error!(plugin = %name, %error, "SIGHUP: plugin not started with its new settings (a running one keeps its old settings)");
    }
}

/// The settings that a reload applies (compared elsewhere).
const APPLIED: [&str; 6] = [
    "listeners",
    "tls",
    "plugins",
    "access_log",
    "access_log_file",
    "access_log_fields",
];

/// The changes from `running` to `new` that a reload does not apply.
fn needs_restart(running: &Settings, new: &Settings) -> Vec<String> {
    let (Ok(Value::Object(old)), Ok(Value::Object(now))) =
        (serde_json::to_value(running), serde_json::to_value(new))
    else {
        return vec!["(cannot compare the settings)".into()];
    };
    old.iter()
        .filter(|(key, value)| !APPLIED.contains(&key.as_str()) && now.get(*key) != Some(value))
        .map(|(key, _)| key.clone())
        .collect()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn settings(args: &[&str]) -> Settings {
        let mut argv = vec!["gatekeeper".to_owned()];
        argv.extend(args.iter().map(|a| (*a).to_owned()));
        Settings::load(&Cli::from_args(argv)).unwrap()
    }

    #[test]
    fn listeners_and_plugins_are_applied_other_settings_need_a_restart() {
        let running = settings(&["--listen", "127.0.0.1:0"]);
        let new = settings(&["--listen", "127.0.0.1:1", "--default-timeout", "3s"]);
        assert_eq!(needs_restart(&running, &new), ["default_timeout"]);
        assert!(needs_restart(&running, &running).is_empty());
        // The per-client limits are read when the listeners start.
        let mut limited = running.clone();
        limited.proxy.max_connections_per_client = 4;
        limited.proxy.client_request_rate = 10;
        assert_eq!(
            needs_restart(&running, &limited),
            ["client_request_rate", "max_connections_per_client"]
        );
    }
}
