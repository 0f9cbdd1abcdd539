//! The config file as read: its top-level keys go to the section that owns them (the proxy's
//! [`ProxyConfig`] and [`MetricsConfig`], the plugin host's [`HostConfig`], gatekeeper's own
//! [`OwnConfig`]) and each `[[plugin]]` table to a [`PluginConfig`]. Each section reads the
//! keys it knows from the same table, so an error names its key (`default_timeout: …`,
//! `plugin[1].hook_timeout: …`); a key no section knows is an error.

use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context, Result};
use gatekeeper_plugin_host::options::HostConfig;
use gatekeeper_plugin_host::spec::RecycleAfter;
use gatekeeper_plugin_host::PluginSpec;
use gatekeeper_proxy::{FailureConfig, MetricsConfig, ProxyConfig};
use gatekeeper_rpc::methods::PluginType;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use toml::Table;

use super::plugins::PluginConfig;
use crate::logging::LogFormat;
use crate::wiring::access_log::{AccessLogField, AccessLogFormat, STDOUT};

/// The keys only gatekeeper itself reads (logging, workers, admin socket, Prometheus).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct OwnConfig {
    /// Log filter (`--log`; default `info`).
    pub log: String,
    /// Worker threads (`--workers`; default: one per CPU core).
    pub workers: Option<usize>,
    /// Log format (`--log-format`; default `text`, or `journald` under systemd's journal).
    #[serde(with = "from_str")]
    pub log_format: Option<LogFormat>,
    /// The access log's format (default `off`).
    #[serde(with = "from_str")]
    pub access_log: Option<AccessLogFormat>,
    /// Where the access log goes (`-`: stdout, the default).
    pub access_log_file: PathBuf,
    /// The fields of a `json` or `text` access log line, in order (default:
    /// [`crate::wiring::access_log::DEFAULT_FIELDS`]).
    pub access_log_fields: Option<Vec<AccessLogField>>,
    /// The admin socket (`""`: none; default: see [`super::admin_socket_path`]).
    pub admin_socket: Option<PathBuf>,
    /// The admin socket's mode, `"0600"` (the default: gatekeeper's user only) or `"0660"`
    /// (also `admin_socket_group`).
    pub admin_socket_mode: Option<String>,
    /// The group the admin socket (and its private directory) is given, by name or number.
    pub admin_socket_group: Option<String>,
    /// Where Prometheus metrics are served, `IP:PORT` (`""` or absent: not served).
    pub metrics_listen: Option<String>,
}

impl Default for OwnConfig {
    fn default() -> Self {
        OwnConfig {
            log: "info".to_owned(),
            workers: None,
            log_format: None,
            access_log: None,
            access_log_file: PathBuf::from(STDOUT),
            access_log_fields: None,
            admin_socket: None,
            admin_socket_mode: None,
            admin_socket_group: None,
            metrics_listen: None,
        }
    }
}

/// The config file, section by section (all defaults without a file).
#[derive(Debug, Clone, Default)]
pub struct FileConfig {
    /// Listeners, TLS, timeouts, limits, passive health, forwarding headers.
    pub proxy: ProxyConfig,
    /// Metric batching.
    pub metrics: MetricsConfig,
    /// The plugin socket directory.
    pub host: HostConfig,
    /// gatekeeper's own keys.
    pub own: OwnConfig,
    /// The `[[plugin]]` tables, in order (commands not yet resolved, names maybe empty).
    pub plugins: Vec<PluginConfig>,
}

/// The `[[plugin]]` tables, before each is read.
#[derive(Deserialize)]
struct PluginTables {
    #[serde(default)]
    plugin: Vec<Table>,
}

impl FileConfig {
    /// Reads every section from the file's top-level table.
    pub fn from_table(table: Table) -> Result<FileConfig> {
        if let Some(key) = table.keys().find(|key| !file_keys().contains(key)) {
            bail!("{key}: unknown key");
        }
        let tables: PluginTables = section(&table, "")?;
        let plugins = tables
            .plugin
            .iter()
            .enumerate()
            .map(|(i, table)| plugin_table(&format!("plugin[{i}]"), table))
            .collect::<Result<_>>()?;
        Ok(FileConfig {
            proxy: section(&table, "")?,
            metrics: section(&table, "")?,
            host: section(&table, "")?,
            own: section(&table, "")?,
            plugins,
        })
    }
}

/// One `[[plugin]]` table: the plugin host's spec and the proxy's failure policy.
fn plugin_table(key: &str, table: &Table) -> Result<PluginConfig> {
    let known = plugin_keys();
    if let Some(unknown) = table.keys().find(|k| !known.contains(k)) {
        bail!("{key}.{unknown}: unknown key");
    }
    let spec: PluginSpec = section(table, key)?;
    spec.validate().map_err(|e| anyhow!("{key}.{e}"))?;
    let failure: FailureConfig = section(table, key)?;
    failure.validate().map_err(|e| anyhow!("{key}.{e}"))?;
    Ok(PluginConfig {
        failure: failure.policy(spec.plugin_type),
        spec,
    })
}

/// Reads a section from `table`, which may hold other sections' keys too. An error names its
/// key, under `prefix` (e.g. `plugin[1]`).
fn section<T: DeserializeOwned>(table: &Table, prefix: &str) -> Result<T> {
    serde_path_to_error::deserialize(toml::Value::Table(table.clone())).map_err(|e| {
        let path = e.path().to_string();
        let message = e.inner().message().trim().replace('\n', " ");
        // A message that names its key itself (`max_memory: …`) does not name it twice.
        let last_key = path.rsplit('.').next().unwrap_or_default();
        let message = message
            .strip_prefix(&format!("{last_key}: "))
            .map(str::to_owned)
            .unwrap_or(message);
        let key = match (prefix, path.as_str()) {
            (prefix, ".") => prefix.to_owned(),
            ("", path) => path.to_owned(),
            (prefix, path) => format!("{prefix}.{path}"),
        };
        if key.is_empty() {
            anyhow!("{message}")
        } else {
            anyhow!("{key}: {message}")
        }
    })
}

/// The keys a section writes (every field of its default, `null` ones included).
fn keys_of(value: impl Serialize) -> Vec<String> {
    match serde_json::to_value(value) {
        Ok(serde_json::Value::Object(keys)) => keys.into_iter().map(|(key, _)| key).collect(),
        _ => Vec::new(),
    }
}

/// The top-level keys of the config file (`[[tls]]` is `tls`, `[[plugin]]` is `plugin`).
pub fn file_keys() -> Vec<String> {
    let mut keys = keys_of(ProxyConfig::default());
    keys.extend(keys_of(MetricsConfig::default()));
    keys.extend(keys_of(HostConfig::default()));
    keys.extend(keys_of(OwnConfig::default()));
    keys.push("plugin".to_owned());
    keys
}

/// The keys of a `[[plugin]]` table.
pub fn plugin_keys() -> Vec<String> {
    // The optional keys set, so that they are written (and known) too.
    let mut every_key = PluginSpec::new("", PluginType::Upstream, "");
    every_key.max_memory = Some(1);
    every_key.recycle_after = Some(RecycleAfter::Calls(1));
    let mut keys = keys_of(every_key);
    keys.extend(keys_of(FailureConfig::default()));
    keys
}

/// The config file's top-level table (empty without a file).
pub fn read_table(path: Option<&Path>) -> Result<Table> {
    let Some(path) = path else {
        return Ok(Table::new());
    };
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read config file {}", path.display()))?;
    toml::from_str(&text).with_context(|| format!("invalid config file {}", path.display()))
}

/// Values read with their type's `FromStr` (whose message says what is allowed).
mod from_str {
    use std::fmt::Display;
    use std::str::FromStr;

    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    pub fn serialize<T: Serialize, S: Serializer>(
        value: &Option<T>,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        value.serialize(s)
    }

    pub fn deserialize<'de, T, D>(d: D) -> Result<Option<T>, D::Error>
    where
        T: FromStr,
        T::Err: Display,
        D: Deserializer<'de>,
    {
        match Option::<String>::deserialize(d)? {
            Some(text) => text.parse().map(Some).map_err(serde::de::Error::custom),
            None => Ok(None),
        }
    }
}
