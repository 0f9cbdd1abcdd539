//! SIGHUP: re-read the config file (same path, same flags as at start), apply what can change
//! while serving, and say clearly what needs a restart. A config that does not load keeps the
//! running one. Applied while serving: the TLS listeners' certificates (re-read from their
//! files) and the `command`, `args`, `config` and `heartbeat_interval` of existing plugins
//! (the plugin is restarted with them, one instance after the other). Everything else
//! (listeners, plugins added, removed or reordered, other plugin keys, every other setting) is
//! compared and, when changed, logged as needing a restart.

use std::sync::Arc;

use anyhow::Result;
use gatekeeper_plugin_host::PluginHost;
use gatekeeper_proxy::TlsReloader;
use serde_json::Value;

use crate::cli::Cli;
use crate::config::{PluginSetting, Settings};
use crate::notify;
use crate::run::spec_of;

/// The running configuration and what a reload can change in it.
pub struct Reloader {
    running: Settings,
    tls: TlsReloader,
    host: Arc<PluginHost>,
}

impl Reloader {
    /// A reloader for gatekeeper running with `running`, whose TLS listeners reload through
    /// `tls` and whose plugins run on `host`.
    pub fn new(running: Settings, tls: TlsReloader, host: Arc<PluginHost>) -> Self {
        Reloader { running, tls, host }
    }

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
        let loaded = tokio::task::spawn_blocking(load_again).await;
        let new = match loaded {
            Ok(Ok(settings)) => settings,
            Ok(Err(e)) => {
                let error = format!("{e:#}");
                if self.tls.is_empty() {
                    tracing::error!(%error, "SIGHUP: the configuration has errors; the running one stays");
                } else {
                    // Certificate files are checked as part of the configuration.
                    tracing::error!(%error, "SIGHUP: the configuration has errors; the running one stays (TLS certificates not reloaded, the old ones stay)");
                }
                return "serving; last reload failed (configuration errors, see the log)".into();
            }
            Err(e) => {
                tracing::error!(error = %e, "SIGHUP: reload failed; the running configuration stays");
                return "serving; last reload failed".into();
            }
        };
        let certificates = self.reload_certificates().await;
        let plugins = self.restart_changed_plugins(&new).await;
        let pending = needs_restart(&self.running, &new);
        if pending.is_empty() {
            tracing::info!("SIGHUP: configuration reloaded");
        } else {
            tracing::warn!(
                changes = %pending.join("; "),
                "SIGHUP: these changes need a restart (systemctl restart gatekeeper); until then the running settings stay"
            );
        }
        match (certificates && plugins, pending.is_empty()) {
            (false, _) => "serving; last reload had errors (see the log)".into(),
            (true, true) => "serving; configuration reloaded".into(),
            (true, false) => format!(
                "serving; reloaded, restart needed for: {}",
                pending.join("; ")
            ),
        }
    }

    /// Restarts every existing plugin whose changes are all reloadable with its new settings,
    /// and records them as running; false if one did not start with them (it keeps its old
    /// settings).
    async fn restart_changed_plugins(&mut self, new: &Settings) -> bool {
        let mut all_started = true;
        for now in &new.plugins {
            let Some(index) = self.running.plugins.iter().position(|p| p.name == now.name) else {
                continue;
            };
            let old = &self.running.plugins[index];
            if same(old, now) || !same(&with_reloadable_of(old, now), now) {
                continue;
            }
            tracing::info!(plugin = %now.name, "SIGHUP: restarting the plugin with its new settings");
            match self.host.reconfigure(spec_of(now)).await {
                Ok(()) => {
                    tracing::info!(plugin = %now.name, "SIGHUP: plugin restarted with its new settings");
                    self.running.plugins[index] = now.clone();
                }
                Err(e) => {
                    tracing::error!(plugin = %now.name, error = %e, "SIGHUP: plugin not restarted with its new settings; it keeps the old ones");
                    all_started = false;
                }
            }
        }
        all_started
    }

    /// Re-reads the TLS certificates; false if a file was bad (the old ones stay).
    async fn reload_certificates(&self) -> bool {
        if self.tls.is_empty() {
            return true;
        }
        let tls = self.tls.clone();
        match tokio::task::spawn_blocking(move || tls.reload()).await {
            Ok(Ok(count)) => {
                tracing::info!(certificates = count, "SIGHUP: TLS certificates reloaded");
                true
            }
            Ok(Err(e)) => {
                tracing::error!(error = %e, "SIGHUP: TLS certificates not reloaded, the old ones stay");
                false
            }
            Err(e) => {
                tracing::error!(error = %e, "SIGHUP: TLS reload failed");
                false
            }
        }
    }
}

/// The config file and flags gatekeeper started with, read again.
fn load_again() -> Result<Settings> {
    Settings::load(&Cli::from_env())
}

/// The changes from `running` to `new` that a reload does not apply, each described in a few
/// words. TLS certificate files are re-read on every reload; a different list of them counts as
/// a change.
fn needs_restart(running: &Settings, new: &Settings) -> Vec<String> {
    let (Ok(Value::Object(old)), Ok(Value::Object(now))) =
        (serde_json::to_value(running), serde_json::to_value(new))
    else {
        return vec!["(cannot compare the settings)".into()];
    };
    let mut changes = Vec::new();
    for (key, value) in &old {
        if key == "plugins" || now.get(key) == Some(value) {
            continue;
        }
        changes.push(match key.as_str() {
            "listeners" => "listeners".to_owned(),
            "tls" => "tls (which certificate files)".to_owned(),
            other => other.to_owned(),
        });
    }
    changes.extend(plugin_changes(&running.plugins, &new.plugins));
    changes
}

/// Whether two plugin settings are the same.
fn same(a: &PluginSetting, b: &PluginSetting) -> bool {
    serde_json::to_value(a).ok() == serde_json::to_value(b).ok()
}

/// `old` with the settings a reload applies to a running plugin taken from `new`.
fn with_reloadable_of(old: &PluginSetting, new: &PluginSetting) -> PluginSetting {
    PluginSetting {
        command: new.command.clone(),
        args: new.args.clone(),
        config: new.config.clone(),
        heartbeat_interval: new.heartbeat_interval,
        ..old.clone()
    }
}

/// Plugins added, removed, changed (in settings a reload does not apply) or reordered.
fn plugin_changes(running: &[PluginSetting], new: &[PluginSetting]) -> Vec<String> {
    let json = |p: &PluginSetting| serde_json::to_value(p).ok();
    let mut changes = Vec::new();
    let names = |list: &[PluginSetting]| list.iter().map(|p| p.name.clone()).collect::<Vec<_>>();
    let added: Vec<String> = names(new)
        .into_iter()
        .filter(|n| !running.iter().any(|p| p.name == *n))
        .collect();
    let removed: Vec<String> = names(running)
        .into_iter()
        .filter(|n| !new.iter().any(|p| p.name == *n))
        .collect();
    let changed: Vec<String> = running
        .iter()
        .filter_map(|old| {
            let now = new.iter().find(|p| p.name == old.name)?;
            (json(old) != json(now)).then(|| old.name.clone())
        })
        .collect();
    if !added.is_empty() {
        changes.push(format!("plugins added: {}", added.join(", ")));
    }
    if !removed.is_empty() {
        changes.push(format!("plugins removed: {}", removed.join(", ")));
    }
    if !changed.is_empty() {
        changes.push(format!("plugin settings changed: {}", changed.join(", ")));
    }
    if changes.is_empty() && names(running) != names(new) {
        changes.push("plugin order (modifiers are called in it)".to_owned());
    }
    changes
}
