//! The effective settings: the config file's sections (each library's own config type, see
//! [`file`]) with the command-line flags applied on top ([`flags`]), every value checked (each
//! library's `validate`, then what is gatekeeper's own: plugin commands resolved to files, log
//! settings, admin socket) and the plugins named ([`plugins`]).
//!
//! - [`file`]: the config file read into sections; which keys exist;
//! - [`flags`]: the flags applied on top, section by section;
//! - [`plugins`]: the `[[plugin]]` tables and `--TYPE-plugin` flags, resolved;
//! - [`tls_flags`]: the `--tls-*` flags of a listener's TLS settings;
//! - [`admin_socket`]: where the admin socket is;
//! - [`effective`]: the settings as `--check`, `gatekeeper check --json` and the admin socket
//!   print them.

mod admin_socket;
mod effective;
mod file;
mod flags;
mod plugins;
#[cfg(test)]
mod tests;
mod tls_flags;

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::{anyhow, bail, Result};
use gatekeeper_plugin_host::options::HostConfig;
use gatekeeper_proxy::{MetricsConfig, ProxyConfig};

pub use admin_socket::{admin_socket_candidates, AdminSocket};
pub use file::file_keys;
pub use plugins::{default_name, resolve_command, PluginConfig};

use crate::cli::Cli;
use crate::logging::LogFormat;
use crate::wiring::access_log::{AccessLogField, AccessLogFormat, DEFAULT_FIELDS};
use file::FileConfig;

/// Everything gatekeeper needs to start.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The proxy: listeners, TLS, timeouts, limits, passive health, forwarding headers.
    pub proxy: ProxyConfig,
    /// Metric batching.
    pub metrics: MetricsConfig,
    /// The plugin host: where the socket directory is created.
    pub host: HostConfig,
    /// Plugins, in order (modifiers are called in this order).
    pub plugins: Vec<PluginConfig>,
    /// Log filter.
    pub log: String,
    /// Worker threads of the request runtime.
    pub workers: usize,
    /// How log lines are written.
    pub log_format: LogFormat,
    /// The access log's format (`off`: none).
    pub access_log: AccessLogFormat,
    /// Where the access log goes (`-`: stdout).
    pub access_log_file: PathBuf,
    /// The fields of a `json` or `text` access log line, in order.
    pub access_log_fields: Vec<AccessLogField>,
    /// The admin socket, its mode and group (`None`: disabled with `admin_socket = ""`).
    pub admin_socket: Option<AdminSocket>,
    /// Where Prometheus metrics are served (`GET /metrics`); `None`: not served.
    pub metrics_listen: Option<SocketAddr>,
}

/// Checks part of a config file on its own, without flags: `table` holds some of its top-level
/// keys. The error names the first bad key (`gatekeeper check` calls this once per key).
pub fn check_file_part(table: toml::Table) -> Result<Settings> {
    let file = FileConfig::from_table(table)?;
    Settings::merge(&Cli::from_args(vec!["gatekeeper".to_owned()]), file)
}

impl Settings {
    /// Builds the settings from the flags and, if given, the config file.
    pub fn load(cli: &Cli) -> Result<Settings> {
        let file = FileConfig::from_table(file::read_table(cli.config.as_deref())?)?;
        let settings = Settings::merge(cli, file)?;
        // Certificates are read now, so that `--check` and startup report a bad file first.
        gatekeeper_proxy::check_certificates(&settings.proxy.tls)?;
        Ok(settings)
    }

    /// The file's sections with the flags on top, checked.
    fn merge(cli: &Cli, file: FileConfig) -> Result<Settings> {
        let FileConfig {
            mut proxy,
            metrics,
            mut host,
            mut own,
            plugins,
        } = file;
        flags::apply_to_proxy(cli, &mut proxy)?;
        proxy.validate()?;
        metrics.validate()?;
        flags::apply_to_host(cli, &mut host);
        host.validate()?;
        let plugins = plugins::resolve(cli, plugins)?;
        flags::apply_to_own(cli, &mut own)?;
        let admin_socket =
            admin_socket::admin_socket_of_settings(&own, host.socket_dir.as_deref())?;
        let metrics_listen = metrics_listen(own.metrics_listen.as_deref())?;
        if let Some(addr) = metrics_listen {
            if let Some(listener) = proxy
                .listeners
                .iter()
                .find(|l| gatekeeper_proxy::addresses_clash(l.addr, addr))
            {
                bail!("metrics_listen: `{addr}` clashes with the listener `{listener}` (same port, overlapping addresses)");
            }
        }
        Ok(Settings {
            proxy,
            metrics,
            host,
            plugins,
            log: own.log,
            workers: workers(own.workers)?,
            log_format: own.log_format.unwrap_or_else(LogFormat::detect),
            access_log: own.access_log.unwrap_or_default(),
            access_log_file: access_log_file(own.access_log_file)?,
            access_log_fields: access_log_fields(own.access_log_fields)?,
            admin_socket,
            metrics_listen,
        })
    }
}

/// `workers`: 1 to 1024, default one per CPU core.
fn workers(configured: Option<usize>) -> Result<usize> {
    match configured {
        None => Ok(std::thread::available_parallelism().map_or(1, |n| n.get())),
        Some(n @ 1..=1024) => Ok(n),
        Some(n) => bail!("workers: {n} must be from 1 to 1024"),
    }
}

/// `access_log_file`: a file or `-`.
fn access_log_file(file: PathBuf) -> Result<PathBuf> {
    if file.as_os_str().is_empty() {
        bail!("access_log_file: must be a file or \"-\" (stdout)");
    }
    Ok(file)
}

/// `access_log_fields`: at least one field, each once (default: [`DEFAULT_FIELDS`]).
fn access_log_fields(fields: Option<Vec<AccessLogField>>) -> Result<Vec<AccessLogField>> {
    let Some(fields) = fields else {
        return Ok(DEFAULT_FIELDS.to_vec());
    };
    if fields.is_empty() {
        bail!("access_log_fields: must name at least one field");
    }
    for (i, field) in fields.iter().enumerate() {
        if fields[..i].contains(field) {
            bail!("access_log_fields: `{}` is listed twice", field.name());
        }
    }
    Ok(fields)
}

/// `metrics_listen`: `IP:PORT`, or `""` (not served).
fn metrics_listen(configured: Option<&str>) -> Result<Option<SocketAddr>> {
    match configured {
        None | Some("") => Ok(None),
        Some(v) => v
            .parse()
            .map(Some)
            .map_err(|_| anyhow!("metrics_listen: `{v}` is not an IP:PORT address")),
    }
}
