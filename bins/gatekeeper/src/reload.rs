//! SIGHUP: re-read the config file (same path, same flags as at start), apply what can change
//! while serving, and say clearly what needs a restart. A config that does not load keeps the
//! running one. What is applied today: the TLS listeners' certificates (re-read from their
//! files). Listeners, plugins and every other setting are compared and, when changed, logged
//! as needing a restart.

use anyhow::Result;
use gatekeeper_proxy::TlsReloader;
use serde_json::Value;

use crate::cli::Cli;
use crate::config::{PluginSetting, Settings};
use crate::notify;

/// The running configuration and what a reload can change in it.
pub struct Reloader {
    running: Settings,
    tls: TlsReloader,
}

impl Reloader {
    /// A reloader for gatekeeper running with `running`, whose TLS listeners reload through
    /// `tls`.
    pub fn new(running: Settings, tls: TlsReloader) -> Self {
        Reloader { running, tls }
    }

    /// Reloads on every SIGHUP until the task is aborted.
    pub async fn run(self) {
        use tokio::signal::unix::{signal, SignalKind};
        let Ok(mut hangup) = signal(SignalKind::hangup()) else {
            tracing::error!("cannot install the SIGHUP handler; the configuration will not be reloaded");
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
    async fn reload(&self) -> String {
        let loaded = tokio::task::spawn_blocking(load_again).await;
        let new = match loaded {
            Ok(Ok(settings)) => settings,
            Ok(Err(e)) => {
                tracing::error!(error = %format!("{e:#}"), "SIGHUP: the configuration has errors; the running one stays");
                return "serving; last reload failed (configuration errors, see the log)".into();
            }
            Err(e) => {
                tracing::error!(error = %e, "SIGHUP: reload failed; the running configuration stays");
                return "serving; last reload failed".into();
            }
        };
        let pending = needs_restart(&self.running, &new);
        let certificates = self.reload_certificates().await;
        if pending.is_empty() {
            tracing::info!("SIGHUP: configuration reloaded");
        } else {
            tracing::warn!(
                changes = %pending.join("; "),
                "SIGHUP: these changes need a restart (systemctl restart gatekeeper); until then the running settings stay"
            );
        }
        match (certificates, pending.is_empty()) {
            (false, _) => "serving; last reload: certificates not reloaded (see the log)".into(),
            (true, true) => "serving; configuration reloaded".into(),
            (true, false) => format!("serving; reloaded, restart needed for: {}", pending.join("; ")),
        }
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

/// Plugins added, removed, changed or reordered.
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
