//! The effective settings: the TOML config file merged with the command line (flags win), with
//! every value checked and every plugin command resolved to a file.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use gatekeeper_proxy::forwarded::{valid_via_name, ForwardedMode, DEFAULT_VIA};
use gatekeeper_rpc::methods::PluginType;
use gatekeeper_rpc::types::Object;
use serde::{Deserialize, Serialize};

use crate::cli::Cli;
use crate::logging::LogFormat;
use crate::wiring::access_log::{AccessLogFormat, STDOUT};

/// Listener name used when `--listen` gives none.
pub const DEFAULT_LISTENER_NAME: &str = "http-public";
/// Default for `default_timeout`.
pub const DEFAULT_UPSTREAM_TIMEOUT: Duration = Duration::from_secs(30);
/// Default for `connect_timeout`.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Default for `header_read_timeout`.
pub const DEFAULT_HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// Default for `metrics_batch_size`.
pub const DEFAULT_METRICS_BATCH_SIZE: usize = 100;
/// Default for `metrics_flush_interval`.
pub const DEFAULT_METRICS_FLUSH_INTERVAL: Duration = Duration::from_secs(1);
/// Default for `metrics_buffer`.
pub const DEFAULT_METRICS_BUFFER: usize = 10_000;
/// Default for `passive_health_failures`.
pub const DEFAULT_PASSIVE_HEALTH_FAILURES: u32 = 3;
/// Default for `passive_health_cooldown`.
pub const DEFAULT_PASSIVE_HEALTH_COOLDOWN: Duration = Duration::from_secs(10);
/// Default for `keepalive_idle`.
pub const DEFAULT_KEEPALIVE_IDLE: Duration = Duration::from_secs(60);
/// Default for `max_header_bytes`.
pub const DEFAULT_MAX_HEADER_BYTES: usize = 64 * 1024;
/// Default for `max_connections`.
pub const DEFAULT_MAX_CONNECTIONS: usize = 10_000;
/// Default for `max_plugin_body` (1 MiB).
pub const DEFAULT_MAX_PLUGIN_BODY: usize = gatekeeper_proxy::DEFAULT_MAX_PLUGIN_BODY;
/// The largest `max_plugin_body` (8 MiB): a body, base64-encoded in JSON, must fit in one
/// protocol line (16 MiB).
pub const MAX_MAX_PLUGIN_BODY: usize = 8 * 1024 * 1024;
/// Default for `shutdown_grace`.
pub const DEFAULT_SHUTDOWN_GRACE: Duration = Duration::from_secs(10);
/// Default listen address when neither flags nor file give one.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8000";

/// The config file, as written. Unknown keys are errors. (`Serialize` only lists the keys, for
/// `gatekeeper check` and the test that keeps the example config complete.)
#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    #[serde(default)]
    listen: Vec<String>,
    default_timeout: Option<String>,
    connect_timeout: Option<String>,
    header_read_timeout: Option<String>,
    keepalive_idle: Option<String>,
    max_header_bytes: Option<usize>,
    max_connections: Option<usize>,
    #[serde(default)]
    tls: Vec<FileTls>,
    socket_dir: Option<PathBuf>,
    log: Option<String>,
    workers: Option<usize>,
    max_plugin_body: Option<usize>,
    metrics_batch_size: Option<usize>,
    metrics_flush_interval: Option<String>,
    metrics_buffer: Option<usize>,
    passive_health_failures: Option<u32>,
    passive_health_cooldown: Option<String>,
    forwarded_headers: Option<String>,
    via: Option<String>,
    log_format: Option<String>,
    access_log: Option<String>,
    access_log_file: Option<PathBuf>,
    admin_socket: Option<PathBuf>,
    metrics_listen: Option<String>,
    shutdown_grace: Option<String>,
    #[serde(default, rename = "plugin")]
    plugins: Vec<FilePlugin>,
}

/// A `[[tls]]` table: one certificate of a TLS listener.
#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
struct FileTls {
    listener: String,
    cert: PathBuf,
    key: PathBuf,
}

#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
struct FilePlugin {
    name: Option<String>,
    #[serde(rename = "type")]
    plugin_type: String,
    command: String,
    #[serde(default)]
    args: Vec<String>,
    #[serde(default)]
    config: Object,
    failure: Option<String>,
    failure_status: Option<u16>,
    hook_timeout: Option<String>,
    heartbeat_interval: Option<String>,
    instances: Option<usize>,
    restart_after_timeouts: Option<u32>,
}

/// One listener.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ListenerSetting {
    /// Its name, matched against upstreams' `protocols`.
    pub name: String,
    /// The address to bind.
    pub addr: SocketAddr,
}

/// One certificate of a TLS listener.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TlsSetting {
    /// The listener's name.
    pub listener: String,
    /// PEM certificate chain, leaf first.
    pub cert: PathBuf,
    /// PEM private key.
    pub key: PathBuf,
}

/// What happens to a request when a plugin's hook fails or times out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase", tag = "policy")]
pub enum Failure {
    /// Skip the plugin for this request.
    Open,
    /// Answer the request with this status.
    Closed {
        /// The status to answer with.
        status: u16,
    },
}

/// One plugin to run.
#[derive(Debug, Clone, Serialize)]
pub struct PluginSetting {
    /// Unique name, used in logs and in the environment.
    pub name: String,
    /// Its type.
    pub plugin_type: PluginType,
    /// The resolved executable.
    pub command: PathBuf,
    /// Its arguments.
    pub args: Vec<String>,
    /// The map sent in `configure`.
    pub config: Object,
    /// Failure policy of its hooks.
    pub failure: Failure,
    /// Timeout of each hook call.
    #[serde(with = "humantime_serde_compat")]
    pub hook_timeout: Option<Duration>,
    /// Interval between heartbeats.
    #[serde(with = "humantime_serde_compat")]
    pub heartbeat_interval: Option<Duration>,
    /// Number of processes to run; calls are spread across them.
    pub instances: usize,
    /// Hook timeouts in a row after which a process is taken as hung and restarted (0: never).
    pub restart_after_timeouts: Option<u32>,
}

/// How metrics are batched for metric (and loadbalancer) plugins.
#[derive(Debug, Clone, Serialize)]
pub struct MetricsSettings {
    /// A batch is sent when this many records of one kind are waiting.
    pub batch_size: usize,
    /// ... or when this much time passed since the last batch.
    #[serde(with = "humantime_serde_compat::required")]
    pub flush_interval: Duration,
    /// Records of one kind held at most; more are dropped (and counted).
    pub buffer: usize,
}

/// Everything gatekeeper needs to start.
#[derive(Debug, Clone, Serialize)]
pub struct Settings {
    /// Listeners to bind.
    pub listeners: Vec<ListenerSetting>,
    /// Upstream timeout when an upstream sets none.
    #[serde(with = "humantime_serde_compat::required")]
    pub default_timeout: Duration,
    /// Backend connect timeout when an upstream sets none.
    #[serde(with = "humantime_serde_compat::required")]
    pub connect_timeout: Duration,
    /// Time a client has to send its request headers.
    #[serde(with = "humantime_serde_compat::required")]
    pub header_read_timeout: Duration,
    /// Certificates of the TLS listeners, in order (the first of a listener is its default).
    pub tls: Vec<TlsSetting>,
    /// Idle time after which a client connection is closed.
    #[serde(with = "humantime_serde_compat::required")]
    pub keepalive_idle: Duration,
    /// Largest request head in bytes (larger: 431).
    pub max_header_bytes: usize,
    /// Client connections open at once, over all listeners.
    pub max_connections: usize,
    /// Where the private socket directory is created.
    pub socket_dir: Option<PathBuf>,
    /// Log filter.
    pub log: String,
    /// Worker threads of the request runtime.
    pub workers: usize,
    /// Largest body sent to a modifier that wants bodies, in bytes.
    pub max_plugin_body: usize,
    /// Plugins, in order (modifiers are called in this order).
    pub plugins: Vec<PluginSetting>,
    /// Metric batching.
    pub metrics: MetricsSettings,
    /// Passive health defaults of upstreams that set none.
    pub passive_health: PassiveHealthSettings,
    /// How `X-Forwarded-For`, `-Proto` and `-Host` are written.
    pub forwarded_headers: ForwardedMode,
    /// gatekeeper's name in `Via` (empty: no `Via`).
    pub via: String,
    /// How log lines are written.
    pub log_format: LogFormat,
    /// The access log's format (`off`: none).
    pub access_log: AccessLogFormat,
    /// Where the access log goes (`-`: stdout).
    pub access_log_file: PathBuf,
    /// The admin socket (`None`: disabled with `admin_socket = ""`).
    pub admin_socket: Option<PathBuf>,
    /// Whether `admin_socket` is the default path (not configured): failing to bind it is then
    /// a warning, not an error.
    #[serde(skip)]
    pub admin_socket_is_default: bool,
    /// Where Prometheus metrics are served (`GET /metrics`); `None`: not served.
    pub metrics_listen: Option<SocketAddr>,
    /// On SIGTERM/SIGINT, how long in-flight requests may take to finish.
    #[serde(with = "humantime_serde_compat::required")]
    pub shutdown_grace: Duration,
}

/// File name of the admin socket in `socket_dir` or `$RUNTIME_DIRECTORY`.
pub const ADMIN_SOCKET_NAME: &str = "admin.sock";
/// File name of the admin socket in `$XDG_RUNTIME_DIR` or the temp dir (shared directories).
pub const SHARED_ADMIN_SOCKET_NAME: &str = "gatekeeper-admin.sock";

/// The admin socket's path and whether it is the default: `configured` (the `admin_socket`
/// key; `""` disables it), else `<socket_dir>/admin.sock`, else `$RUNTIME_DIRECTORY/admin.sock`
/// (systemd's `RuntimeDirectory=`), else `$XDG_RUNTIME_DIR/gatekeeper-admin.sock`, else
/// `<temp dir>/gatekeeper-admin.sock`. `gatekeeper ctl` uses the same rules.
pub fn admin_socket_path(
    configured: Option<&Path>,
    socket_dir: Option<&Path>,
) -> (Option<PathBuf>, bool) {
    if let Some(path) = configured {
        return (
            (!path.as_os_str().is_empty()).then(|| path.to_path_buf()),
            false,
        );
    }
    let env_dir = |name: &str| {
        std::env::var_os(name)
            .map(PathBuf::from)
            .filter(|p| !p.as_os_str().is_empty())
    };
    // systemd gives several directories separated by ':' when several are configured.
    let runtime_directory = env_dir("RUNTIME_DIRECTORY").map(|p| {
        let text = p.to_string_lossy().into_owned();
        PathBuf::from(text.split(':').next().unwrap_or_default())
    });
    let path = match (socket_dir, runtime_directory) {
        (Some(dir), _) => dir.join(ADMIN_SOCKET_NAME),
        (None, Some(dir)) => dir.join(ADMIN_SOCKET_NAME),
        (None, None) => env_dir("XDG_RUNTIME_DIR")
            .unwrap_or_else(std::env::temp_dir)
            .join(SHARED_ADMIN_SOCKET_NAME),
    };
    (Some(path), true)
}

/// The config file as written (all defaults without one).
fn read_config_file(path: Option<&Path>) -> Result<FileConfig> {
    let Some(path) = path else {
        return Ok(FileConfig::default());
    };
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read config file {}", path.display()))?;
    toml::from_str(&text).with_context(|| format!("invalid config file {}", path.display()))
}

/// The admin socket of a gatekeeper started with this config file (if any) and `--socket-dir`
/// (if any), for `gatekeeper ctl`: only `admin_socket` and `socket_dir` are read from the file.
pub fn admin_socket_of(
    config: Option<&Path>,
    socket_dir: Option<&Path>,
) -> Result<Option<PathBuf>> {
    let file = read_config_file(config)?;
    let socket_dir = socket_dir.or(file.socket_dir.as_deref());
    Ok(admin_socket_path(file.admin_socket.as_deref(), socket_dir).0)
}

/// Passive health defaults (an upstream's `passive_health` overrides them).
#[derive(Debug, Clone, Serialize)]
pub struct PassiveHealthSettings {
    /// Forwarding failures in a row that eject a backend (0: passive health off).
    pub failures: u32,
    /// How long an ejected backend gets no new requests.
    #[serde(with = "humantime_serde_compat::required")]
    pub cooldown: Duration,
}

/// Durations as humantime strings in the `--check` output.
mod humantime_serde_compat {
    use std::time::Duration;

    pub fn serialize<S: serde::Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
        match d {
            Some(d) => s.serialize_str(&humantime::format_duration(*d).to_string()),
            None => s.serialize_none(),
        }
    }

    pub mod required {
        use std::time::Duration;

        pub fn serialize<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
            s.serialize_str(&humantime::format_duration(*d).to_string())
        }
    }
}

fn parse_duration(key: &str, value: &str) -> Result<Duration> {
    humantime::parse_duration(value)
        .with_context(|| format!("{key}: `{value}` is not a duration (examples: 500ms, 5s, 1m)"))
}

fn parse_listener(key: &str, spec: &str) -> Result<ListenerSetting> {
    let (name, addr) = match spec.split_once('=') {
        Some((name, addr)) => (name.trim(), addr.trim()),
        None => (DEFAULT_LISTENER_NAME, spec.trim()),
    };
    if name.is_empty() {
        bail!("{key}: `{spec}` has an empty listener name");
    }
    let addr = addr
        .parse()
        .with_context(|| format!("{key}: `{addr}` is not an IP:PORT address"))?;
    Ok(ListenerSetting {
        name: name.to_owned(),
        addr,
    })
}

/// Splits a `--tls-cert`/`--tls-key` value `[NAME=]FILE`; without NAME, the only listener.
fn split_tls_flag(
    key: &str,
    spec: &str,
    listeners: &[ListenerSetting],
) -> Result<(String, PathBuf)> {
    let (name, path) = match (spec.split_once('='), listeners) {
        (Some((name, path)), _) => (name.trim(), path.trim()),
        (None, [only]) => (only.name.as_str(), spec.trim()),
        (None, _) => bail!("{key}: `{spec}`: say which listener it is for (NAME=FILE)"),
    };
    if path.is_empty() {
        bail!("{key}: `{spec}` has no file");
    }
    Ok((name.to_owned(), PathBuf::from(path)))
}

/// The TLS certificates: from the flags if any are given, else from the file's `[[tls]]`
/// tables. Every one must name a listener; flags pair the n-th `--tls-cert` of a listener with
/// its n-th `--tls-key`.
fn tls_settings(
    cli: &Cli,
    file: Vec<FileTls>,
    listeners: &[ListenerSetting],
) -> Result<Vec<TlsSetting>> {
    let known = |key: &str, name: &str| -> Result<()> {
        if listeners.iter().any(|l| l.name == name) {
            return Ok(());
        }
        let names: Vec<&str> = listeners.iter().map(|l| l.name.as_str()).collect();
        bail!(
            "{key}: `{name}` is not a listener (listeners: {})",
            names.join(", ")
        )
    };
    if cli.tls_cert.is_empty() && cli.tls_key.is_empty() {
        return file
            .into_iter()
            .enumerate()
            .map(|(i, t)| {
                known(&format!("tls[{i}].listener"), &t.listener)?;
                Ok(TlsSetting {
                    listener: t.listener,
                    cert: t.cert,
                    key: t.key,
                })
            })
            .collect();
    }
    let parse = |key: &str, specs: &[String]| -> Result<Vec<(String, PathBuf)>> {
        specs
            .iter()
            .map(|spec| {
                let (name, path) = split_tls_flag(key, spec, listeners)?;
                known(key, &name)?;
                Ok((name, path))
            })
            .collect()
    };
    let certs = parse("--tls-cert", &cli.tls_cert)?;
    let keys = parse("--tls-key", &cli.tls_key)?;
    let mut tls = Vec::with_capacity(certs.len());
    for listener in listeners {
        let of = |list: &[(String, PathBuf)]| -> Vec<PathBuf> {
            list.iter()
                .filter(|(name, _)| *name == listener.name)
                .map(|(_, path)| path.clone())
                .collect()
        };
        let (certs, keys) = (of(&certs), of(&keys));
        if certs.len() != keys.len() {
            bail!(
                "listener `{}` has {} --tls-cert but {} --tls-key",
                listener.name,
                certs.len(),
                keys.len()
            );
        }
        tls.extend(certs.into_iter().zip(keys).map(|(cert, key)| TlsSetting {
            listener: listener.name.clone(),
            cert,
            key,
        }));
    }
    Ok(tls)
}

/// The default failure policy of a plugin type: modifiers fail closed (an auth plugin that is
/// down must not let requests through); routers and loadbalancers fail open (the built-in one
/// takes over); upstream and metric plugins have no per-request hooks.
fn default_failure(plugin_type: PluginType) -> &'static str {
    match plugin_type {
        PluginType::Modifier => "closed",
        _ => "open",
    }
}

fn parse_failure(
    key: &str,
    plugin_type: PluginType,
    failure: Option<&str>,
    status: Option<u16>,
) -> Result<Failure> {
    let status = status.unwrap_or(503);
    if !(200..=599).contains(&status) {
        bail!("{key}.failure_status: {status} is not an HTTP status from 200 to 599");
    }
    match failure.unwrap_or(default_failure(plugin_type)) {
        "closed" => Ok(Failure::Closed { status }),
        "open" => Ok(Failure::Open),
        other => bail!("{key}.failure: `{other}` must be \"open\" or \"closed\""),
    }
}

/// Finds a plugin command: a path (contains `/`) as is; otherwise next to the gatekeeper binary,
/// then on PATH.
pub fn resolve_command(command: &str) -> Result<PathBuf> {
    if command.contains('/') {
        let path = PathBuf::from(command);
        if path.is_file() {
            return Ok(path);
        }
        bail!("plugin command `{command}` not found");
    }
    let beside_us = std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent().map(Path::to_path_buf));
    let path_dirs = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .unwrap_or_default();
    beside_us
        .into_iter()
        .chain(path_dirs)
        .map(|dir| dir.join(command))
        .find(|candidate| candidate.is_file())
        .ok_or_else(|| {
            anyhow!("plugin command `{command}` not found next to gatekeeper or on PATH")
        })
}

/// Interpreters whose script, not themselves, names a plugin (`python3 auth.py` is `auth`).
const INTERPRETERS: [&str; 9] = [
    "python", "python3", "node", "ruby", "perl", "bash", "sh", "env", "php",
];

/// A plugin's default name: the command's file name without extension, or for an interpreter
/// the script's.
fn default_name(command: &Path, args: &[String]) -> Option<String> {
    let stem = |p: &Path| p.file_stem().map(|s| s.to_string_lossy().into_owned());
    let own = stem(command)?;
    if INTERPRETERS.contains(&own.as_str()) {
        let script = args
            .iter()
            .find(|a| !a.starts_with('-') && !a.contains('='));
        if let Some(script) = script.and_then(|s| stem(Path::new(s))) {
            return Some(script);
        }
    }
    Some(own)
}

fn unique_name(wanted: &str, taken: &[PluginSetting]) -> String {
    let mut name = wanted.to_owned();
    let mut n = 2;
    while taken.iter().any(|p| p.name == name) {
        name = format!("{wanted}-{n}");
        n += 1;
    }
    name
}

fn plugin_from_flag(
    plugin_type: PluginType,
    spec: &str,
    taken: &[PluginSetting],
) -> Result<PluginSetting> {
    let key = format!("--{plugin_type}-plugin");
    let mut words = spec.split_whitespace();
    let command = words
        .next()
        .ok_or_else(|| anyhow!("{key}: empty command"))?;
    let resolved = resolve_command(command).with_context(|| key.clone())?;
    let args: Vec<String> = words.map(str::to_owned).collect();
    let name = default_name(&resolved, &args).unwrap_or_else(|| plugin_type.to_string());
    Ok(PluginSetting {
        name: unique_name(&name, taken),
        plugin_type,
        command: resolved,
        args,
        config: Object::new(),
        failure: parse_failure(&key, plugin_type, None, None)?,
        hook_timeout: None,
        heartbeat_interval: None,
        instances: 1,
        restart_after_timeouts: None,
    })
}

/// The top-level keys of the config file (`[[tls]]` is `tls`, `[[plugin]]` is `plugin`).
pub fn file_keys() -> Vec<String> {
    match serde_json::to_value(FileConfig::default()) {
        Ok(serde_json::Value::Object(keys)) => keys.into_iter().map(|(key, _)| key).collect(),
        _ => Vec::new(),
    }
}

/// Checks part of a config file on its own, without flags: `table` holds some of its top-level
/// keys. The error names the first bad key (`gatekeeper check` calls this once per key).
pub fn check_file_part(table: toml::Table) -> Result<Settings> {
    let file: FileConfig = toml::Value::Table(table).try_into()?;
    Settings::merge(&Cli::from_args(vec!["gatekeeper".to_owned()]), file)
}

impl Settings {
    /// Builds the settings from the flags and, if given, the config file.
    pub fn load(cli: &Cli) -> Result<Settings> {
        let file = read_config_file(cli.config.as_deref())?;
        let settings = Settings::merge(cli, file)?;
        // Certificates are read now, so that `--check` and startup report a bad file first.
        gatekeeper_proxy::check_certificates(&settings.tls_certificates())?;
        Ok(settings)
    }

    /// The TLS certificates as the proxy takes them.
    pub fn tls_certificates(&self) -> Vec<gatekeeper_proxy::TlsCertificate> {
        self.tls
            .iter()
            .map(|t| gatekeeper_proxy::TlsCertificate {
                listener: t.listener.clone(),
                cert: t.cert.clone(),
                key: t.key.clone(),
            })
            .collect()
    }

    fn merge(cli: &Cli, mut file: FileConfig) -> Result<Settings> {
        let listen_specs: Vec<(String, &str)> = if cli.listen.is_empty() {
            file.listen
                .iter()
                .map(|s| ("listen".to_owned(), s.as_str()))
                .collect()
        } else {
            cli.listen
                .iter()
                .map(|s| ("--listen".to_owned(), s.as_str()))
                .collect()
        };
        let mut listeners = listen_specs
            .iter()
            .map(|(key, spec)| parse_listener(key, spec))
            .collect::<Result<Vec<_>>>()?;
        if listeners.is_empty() {
            listeners.push(parse_listener("listen", DEFAULT_LISTEN)?);
        }
        for (i, l) in listeners.iter().enumerate() {
            if listeners[..i]
                .iter()
                .any(|o| o.name == l.name && o.addr == l.addr)
            {
                bail!("listen: `{}={}` is given twice", l.name, l.addr);
            }
        }

        let default_timeout = match (&cli.default_timeout, &file.default_timeout) {
            (Some(v), _) => parse_duration("--default-timeout", v)?,
            (None, Some(v)) => parse_duration("default_timeout", v)?,
            (None, None) => DEFAULT_UPSTREAM_TIMEOUT,
        };
        let connect_timeout = match (&cli.connect_timeout, &file.connect_timeout) {
            (Some(v), _) => parse_duration("--connect-timeout", v)?,
            (None, Some(v)) => parse_duration("connect_timeout", v)?,
            (None, None) => DEFAULT_CONNECT_TIMEOUT,
        };
        if connect_timeout.is_zero() {
            bail!("connect_timeout: must be more than 0");
        }
        let header_read_timeout = match &file.header_read_timeout {
            Some(v) => parse_duration("header_read_timeout", v)?,
            None => DEFAULT_HEADER_READ_TIMEOUT,
        };
        let keepalive_idle = match &file.keepalive_idle {
            Some(v) => parse_duration("keepalive_idle", v)?,
            None => DEFAULT_KEEPALIVE_IDLE,
        };
        if keepalive_idle.is_zero() || header_read_timeout.is_zero() {
            bail!("keepalive_idle and header_read_timeout must be more than 0");
        }
        let max_header_bytes = match file.max_header_bytes {
            None => DEFAULT_MAX_HEADER_BYTES,
            Some(n @ 1024..=16_777_216) => n,
            Some(n) => bail!("max_header_bytes: {n} must be from 1024 to 16777216 (16 MiB)"),
        };
        let max_connections = match file.max_connections {
            None => DEFAULT_MAX_CONNECTIONS,
            Some(n @ 1..=10_000_000) => n,
            Some(n) => bail!("max_connections: {n} must be from 1 to 10000000"),
        };
        let tls = tls_settings(cli, std::mem::take(&mut file.tls), &listeners)?;

        let mut plugins: Vec<PluginSetting> = Vec::new();
        for (i, p) in file.plugins.into_iter().enumerate() {
            let key = format!("plugin[{i}]");
            let plugin_type: PluginType = p
                .plugin_type
                .parse()
                .map_err(|e: String| anyhow!("{key}.type: {e}"))?;
            let command = resolve_command(&p.command).with_context(|| format!("{key}.command"))?;
            let wanted = p.name.clone().unwrap_or_else(|| {
                default_name(&command, &p.args).unwrap_or_else(|| plugin_type.to_string())
            });
            if p.name.is_some() && plugins.iter().any(|o| o.name == wanted) {
                bail!("{key}.name: `{wanted}` is used by another plugin");
            }
            let setting = PluginSetting {
                name: unique_name(&wanted, &plugins),
                plugin_type,
                command,
                args: p.args,
                config: p.config,
                failure: parse_failure(&key, plugin_type, p.failure.as_deref(), p.failure_status)?,
                hook_timeout: p
                    .hook_timeout
                    .as_deref()
                    .map(|v| parse_duration(&format!("{key}.hook_timeout"), v))
                    .transpose()?,
                heartbeat_interval: p
                    .heartbeat_interval
                    .as_deref()
                    .map(|v| parse_duration(&format!("{key}.heartbeat_interval"), v))
                    .transpose()?,
                instances: match p.instances {
                    None => 1,
                    Some(n @ 1..=64) => n,
                    Some(n) => bail!("{key}.instances: {n} must be from 1 to 64"),
                },
                restart_after_timeouts: p.restart_after_timeouts,
            };
            plugins.push(setting);
        }
        for spec in &cli.upstream_plugin {
            let p = plugin_from_flag(PluginType::Upstream, spec, &plugins)?;
            plugins.push(p);
        }
        let flag_plugins = cli
            .router_plugin
            .iter()
            .map(|spec| (PluginType::Router, spec))
            .chain(
                cli.loadbalancer_plugin
                    .iter()
                    .map(|spec| (PluginType::Loadbalancer, spec)),
            )
            .chain(
                cli.modifier_plugin
                    .iter()
                    .map(|spec| (PluginType::Modifier, spec)),
            )
            .chain(
                cli.metric_plugin
                    .iter()
                    .map(|spec| (PluginType::Metric, spec)),
            );
        for (plugin_type, spec) in flag_plugins {
            let p = plugin_from_flag(plugin_type, spec, &plugins)?;
            plugins.push(p);
        }
        for flag in &cli.plugin_flags {
            if !plugins.iter().any(|p| p.plugin_type == flag.plugin_type) {
                bail!(
                    "--{}-{}: no {} plugin is configured to receive it",
                    flag.plugin_type,
                    flag.key,
                    flag.plugin_type
                );
            }
            for plugin in plugins
                .iter_mut()
                .filter(|p| p.plugin_type == flag.plugin_type)
            {
                plugin.config.insert(flag.key.clone(), flag.value.clone());
            }
        }
        for single in [PluginType::Router, PluginType::Loadbalancer] {
            let named: Vec<&str> = plugins
                .iter()
                .filter(|p| p.plugin_type == single)
                .map(|p| p.name.as_str())
                .collect();
            if named.len() > 1 {
                bail!(
                    "at most one {single} plugin may run; configured: {}",
                    named.join(", ")
                );
            }
        }

        let metrics = MetricsSettings {
            batch_size: match file.metrics_batch_size {
                None => DEFAULT_METRICS_BATCH_SIZE,
                Some(n @ 1..=100_000) => n,
                Some(n) => bail!("metrics_batch_size: {n} must be from 1 to 100000"),
            },
            flush_interval: match &file.metrics_flush_interval {
                Some(v) => parse_duration("metrics_flush_interval", v)?,
                None => DEFAULT_METRICS_FLUSH_INTERVAL,
            },
            buffer: match file.metrics_buffer {
                None => DEFAULT_METRICS_BUFFER,
                Some(n @ 1..=10_000_000) => n,
                Some(n) => bail!("metrics_buffer: {n} must be from 1 to 10000000"),
            },
        };
        if metrics.flush_interval.is_zero() {
            bail!("metrics_flush_interval: must be more than 0");
        }

        let passive_health = PassiveHealthSettings {
            failures: file
                .passive_health_failures
                .unwrap_or(DEFAULT_PASSIVE_HEALTH_FAILURES),
            cooldown: match &file.passive_health_cooldown {
                Some(v) => parse_duration("passive_health_cooldown", v)?,
                None => DEFAULT_PASSIVE_HEALTH_COOLDOWN,
            },
        };
        if passive_health.cooldown.is_zero() {
            bail!("passive_health_cooldown: must be more than 0");
        }
        let forwarded_headers = match file.forwarded_headers.as_deref() {
            None => ForwardedMode::default(),
            Some(v) => v
                .parse()
                .map_err(|e: String| anyhow!("forwarded_headers: {e}"))?,
        };
        let via = file.via.unwrap_or_else(|| DEFAULT_VIA.to_owned());
        if !via.is_empty() && !valid_via_name(&via) {
            bail!("via: `{via}` is not a token or host[:port] (e.g. \"gatekeeper\"; \"\" disables Via)");
        }

        let log_format = match cli.log_format.as_deref() {
            Some(v) => v
                .parse()
                .map_err(|e: String| anyhow!("--log-format: {e}"))?,
            None => match file.log_format.as_deref() {
                Some(v) => v.parse().map_err(|e: String| anyhow!("log_format: {e}"))?,
                None => LogFormat::detect(),
            },
        };
        let access_log = match file.access_log.as_deref() {
            Some(v) => v.parse().map_err(|e: String| anyhow!("access_log: {e}"))?,
            None => AccessLogFormat::Off,
        };
        let access_log_file = file
            .access_log_file
            .unwrap_or_else(|| PathBuf::from(STDOUT));
        if access_log_file.as_os_str().is_empty() {
            bail!("access_log_file: must be a file or \"-\" (stdout)");
        }
        let (admin_socket, admin_socket_is_default) = admin_socket_path(
            file.admin_socket.as_deref(),
            cli.socket_dir.as_deref().or(file.socket_dir.as_deref()),
        );
        let metrics_listen = match file.metrics_listen.as_deref() {
            None | Some("") => None,
            Some(v) => Some(
                v.parse()
                    .with_context(|| format!("metrics_listen: `{v}` is not an IP:PORT address"))?,
            ),
        };

        let shutdown_grace = match &file.shutdown_grace {
            Some(v) => parse_duration("shutdown_grace", v)?,
            None => DEFAULT_SHUTDOWN_GRACE,
        };

        Ok(Settings {
            log_format,
            access_log,
            access_log_file,
            shutdown_grace,
            listeners,
            default_timeout,
            connect_timeout,
            header_read_timeout,
            tls,
            keepalive_idle,
            max_header_bytes,
            max_connections,
            socket_dir: cli.socket_dir.clone().or(file.socket_dir),
            log: cli
                .log
                .clone()
                .or(file.log)
                .unwrap_or_else(|| "info".to_owned()),
            workers: match cli.workers.or(file.workers) {
                None => std::thread::available_parallelism().map_or(1, |n| n.get()),
                Some(n @ 1..=1024) => n,
                Some(n) => bail!("workers: {n} must be from 1 to 1024"),
            },
            max_plugin_body: match cli.max_plugin_body.or(file.max_plugin_body) {
                None => DEFAULT_MAX_PLUGIN_BODY,
                Some(n @ 0..=MAX_MAX_PLUGIN_BODY) => n,
                Some(n) => {
                    bail!("max_plugin_body: {n} must be at most {MAX_MAX_PLUGIN_BODY} (8 MiB)")
                }
            },
            plugins,
            metrics,
            passive_health,
            forwarded_headers,
            via,
            admin_socket,
            admin_socket_is_default,
            metrics_listen,
        })
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;
    use crate::cli::split_plugin_flags;

    fn cli(args: &str) -> Cli {
        let (rest, flags) =
            split_plugin_flags(args.split_whitespace().map(str::to_owned).collect());
        let mut cli = Cli::parse_from(rest);
        cli.plugin_flags = flags;
        cli
    }

    fn file(text: &str) -> FileConfig {
        toml::from_str(text).unwrap()
    }

    #[test]
    fn flags_override_the_file() {
        let f = file(
            r#"
            listen = ["internal=127.0.0.1:9000"]
            default_timeout = "5s"
            [[plugin]]
            name = "shell"
            type = "modifier"
            command = "/bin/sh"
            args = ["-c", "exit 0"]
            failure = "open"
            hook_timeout = "250ms"
            config = { header = "x-a", n = 3 }
            "#,
        );
        let s = Settings::merge(
            &cli("gk --listen 127.0.0.1:8001 --default-timeout 2s --modifier-header=x-b"),
            f,
        )
        .unwrap();
        assert_eq!(
            s.listeners,
            vec![ListenerSetting {
                name: "http-public".into(),
                addr: "127.0.0.1:8001".parse().unwrap()
            }]
        );
        assert_eq!(s.default_timeout, Duration::from_secs(2));
        let p = &s.plugins[0];
        assert_eq!(p.name, "shell");
        assert_eq!(p.failure, Failure::Open);
        assert_eq!(p.hook_timeout, Some(Duration::from_millis(250)));
        assert_eq!(p.config["header"], "x-b");
        assert_eq!(p.config["n"], 3);
    }

    #[test]
    fn connect_timeout_default_file_and_flag() {
        let s = Settings::merge(&cli("gk"), file("")).unwrap();
        assert_eq!(s.connect_timeout, DEFAULT_CONNECT_TIMEOUT);
        let s = Settings::merge(&cli("gk"), file("connect_timeout = \"250ms\"")).unwrap();
        assert_eq!(s.connect_timeout, Duration::from_millis(250));
        let flag = cli("gk --connect-timeout 1s");
        let s = Settings::merge(&flag, file("connect_timeout = \"250ms\"")).unwrap();
        assert_eq!(s.connect_timeout, Duration::from_secs(1));
    }

    #[test]
    fn bad_values_name_their_key() {
        let err = |text: &str, args: &str| {
            let f: Result<FileConfig, _> = toml::from_str(text);
            match f {
                Err(e) => e.to_string(),
                Ok(f) => format!("{:#}", Settings::merge(&cli(args), f).unwrap_err()),
            }
        };
        assert!(err("listen = [\"nope\"]", "gk").contains("listen"));
        assert!(err("", "gk --listen 1.2.3.4").contains("--listen"));
        assert!(err("default_timeout = \"soon\"", "gk").contains("default_timeout"));
        assert!(err("connect_timeout = \"soon\"", "gk").contains("connect_timeout"));
        assert!(err("connect_timeout = \"0s\"", "gk").contains("connect_timeout"));
        assert!(err("bogus = 1", "gk").contains("bogus"));
        assert!(err("forwarded_headers = \"trust\"", "gk").contains("forwarded_headers"));
        assert!(err("via = \"two words\"", "gk").contains("via"));
        assert!(err(
            "[[plugin]]\ntype = \"modifier\"\ncommand = \"/no/such/plugin\"",
            "gk"
        )
        .contains("plugin[0].command"));
        assert!(
            err("[[plugin]]\ntype = \"teapot\"\ncommand = \"/bin/sh\"", "gk")
                .contains("plugin[0].type")
        );
        assert!(err("", "gk --upstream-file x.yml").contains("no upstream plugin"));
        assert!(err("", "gk --modifier-plugin no-such-plugin-anywhere").contains("not found"));
        assert!(err("passive_health_cooldown = \"0s\"", "gk").contains("passive_health_cooldown"));
    }

    #[test]
    fn tls_flags_pair_certificates_and_keys_per_listener() {
        let s = Settings::merge(
            &cli("gk --listen https=127.0.0.1:1 --listen 127.0.0.1:2 --tls-cert https=a.crt --tls-key https=a.key --tls-cert https=b.crt --tls-key https=b.key"),
            file("[[tls]]\nlistener = \"https\"\ncert = \"file.crt\"\nkey = \"file.key\""),
        )
        .unwrap();
        let pairs: Vec<_> = s
            .tls
            .iter()
            .map(|t| {
                (
                    t.listener.as_str(),
                    t.cert.to_str().unwrap(),
                    t.key.to_str().unwrap(),
                )
            })
            .collect();
        assert_eq!(
            pairs,
            [("https", "a.crt", "a.key"), ("https", "b.crt", "b.key")]
        );
        let only = Settings::merge(
            &cli("gk --listen 127.0.0.1:1 --tls-cert a.crt --tls-key a.key"),
            FileConfig::default(),
        )
        .unwrap();
        assert_eq!(only.tls[0].listener, "http-public");
        let from_file = Settings::merge(
            &cli("gk --listen https=127.0.0.1:1"),
            file("[[tls]]\nlistener = \"https\"\ncert = \"f.crt\"\nkey = \"f.key\""),
        )
        .unwrap();
        assert_eq!(from_file.tls[0].cert, PathBuf::from("f.crt"));
    }

    #[test]
    fn bad_listener_settings_name_their_key() {
        let err = |text: &str, args: &str| {
            format!("{:#}", Settings::merge(&cli(args), file(text)).unwrap_err())
        };
        let two = "gk --listen a=127.0.0.1:1 --listen b=127.0.0.1:2";
        assert!(err("", &format!("{two} --tls-cert x.crt --tls-key x.key")).contains("--tls-cert"));
        assert!(
            err("", &format!("{two} --tls-cert c=x.crt --tls-key c=x.key"))
                .contains("`c` is not a listener")
        );
        assert!(err("", &format!("{two} --tls-cert a=x.crt"))
            .contains("listener `a` has 1 --tls-cert but 0 --tls-key"));
        assert!(
            err("[[tls]]\nlistener = \"c\"\ncert = \"x\"\nkey = \"y\"", two)
                .contains("tls[0].listener")
        );
        assert!(err("max_header_bytes = 10", "gk").contains("max_header_bytes"));
        assert!(err("max_connections = 0", "gk").contains("max_connections"));
        assert!(err("keepalive_idle = \"never\"", "gk").contains("keepalive_idle"));
        let s = Settings::merge(&cli("gk"), FileConfig::default()).unwrap();
        assert_eq!(
            (s.keepalive_idle, s.max_header_bytes, s.max_connections),
            (DEFAULT_KEEPALIVE_IDLE, 65536, 10_000)
        );
    }

    #[test]
    fn max_plugin_body_defaults_to_1_mib_and_is_bounded() {
        let merge = |args: &str, text: &str| Settings::merge(&cli(args), file(text));
        let default = merge("gk", "").unwrap();
        assert_eq!(default.max_plugin_body, 1024 * 1024);
        assert_eq!(
            merge("gk", "max_plugin_body = 4096")
                .unwrap()
                .max_plugin_body,
            4096
        );
        let flag = merge("gk --max-plugin-body 10", "max_plugin_body = 4096").unwrap();
        assert_eq!(flag.max_plugin_body, 10);
        let too_large = merge("gk --max-plugin-body 8388609", "").unwrap_err();
        assert!(format!("{too_large:#}").contains("max_plugin_body"));
    }

    #[test]
    fn interpreters_are_named_after_their_script() {
        let s = Settings::merge(
            &cli("gk --modifier-plugin /bin/sh --modifier-plugin /usr/bin/env"),
            FileConfig::default(),
        )
        .unwrap();
        assert_eq!(s.plugins[0].name, "sh");
        assert_eq!(
            default_name(
                Path::new("/usr/bin/python3"),
                &["-u".into(), "/x/auth.py".into()]
            ),
            Some("auth".into())
        );
        assert_eq!(
            default_name(Path::new("/usr/bin/env"), &["A=1".into(), "node".into()]),
            Some("node".into())
        );
        assert_eq!(
            default_name(Path::new("/opt/request-id"), &[]),
            Some("request-id".into())
        );
    }

    #[test]
    fn flag_plugins_get_unique_names_and_arguments() {
        let s = Settings::merge(
            &cli("gk --modifier-plugin /bin/sh --modifier-plugin /bin/sh"),
            FileConfig::default(),
        )
        .unwrap();
        let names: Vec<_> = s.plugins.iter().map(|p| p.name.as_str()).collect();
        assert_eq!(names, ["sh", "sh-2"]);
        assert_eq!(s.listeners[0].addr.to_string(), DEFAULT_LISTEN);
        assert_eq!(s.passive_health.failures, DEFAULT_PASSIVE_HEALTH_FAILURES);
        assert_eq!(s.passive_health.cooldown, DEFAULT_PASSIVE_HEALTH_COOLDOWN);
    }

    /// Keys a line of the example sets or shows commented out: `key = …`, `# key = …`,
    /// `[[key]]`, `# [[key]]`.
    fn example_keys(text: &str) -> Vec<String> {
        text.lines()
            .map(|line| line.trim_start_matches('#').trim())
            .filter_map(|line| {
                if let Some(table) = line.strip_prefix("[[") {
                    return table.split_once("]]").map(|(key, _)| key.trim().to_owned());
                }
                let (key, _) = line.split_once(" = ")?;
                let key = key.trim();
                key.chars()
                    .all(|c| c.is_ascii_lowercase() || c == '_')
                    .then(|| key.to_owned())
            })
            .collect()
    }

    #[test]
    fn the_example_config_has_every_key_and_parses() {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../scripts/gatekeeper.example.toml"
        );
        let text = std::fs::read_to_string(path).unwrap();
        let parsed: FileConfig = toml::from_str(&text).unwrap();
        let shown = example_keys(&text);
        let missing: Vec<String> = file_keys()
            .into_iter()
            .filter(|key| !shown.contains(key))
            .collect();
        assert!(missing.is_empty(), "keys missing from {path}: {missing:?}");

        // Every key of a [[plugin]] table is set in the example's first one.
        let every_plugin_key = FilePlugin {
            name: None,
            plugin_type: String::new(),
            command: String::new(),
            args: Vec::new(),
            config: Object::new(),
            failure: None,
            failure_status: None,
            hook_timeout: None,
            heartbeat_interval: None,
            instances: None,
            restart_after_timeouts: None,
        };
        let plugin_keys = serde_json::to_value(every_plugin_key).unwrap();
        let example: toml::Table = toml::from_str(&text).unwrap();
        let first_plugin = &example["plugin"][0];
        for key in plugin_keys.as_object().unwrap().keys() {
            assert!(
                first_plugin.get(key).is_some(),
                "[[plugin]] key `{key}` missing"
            );
        }
        assert!(!parsed.plugins.is_empty());
        // The example's active values are the defaults.
        let defaults = Settings::merge(&cli("gk"), FileConfig::default()).unwrap();
        assert_eq!(parsed.default_timeout.as_deref(), Some("30s"));
        assert_eq!(parsed.max_connections, Some(defaults.max_connections));
        assert_eq!(parsed.max_header_bytes, Some(defaults.max_header_bytes));
        assert_eq!(parsed.max_plugin_body, Some(defaults.max_plugin_body));
        assert_eq!(parsed.metrics_buffer, Some(defaults.metrics.buffer));
        assert_eq!(parsed.access_log.as_deref(), Some("off"));
    }

    #[test]
    fn log_and_access_log_settings() {
        let s = Settings::merge(&cli("gk"), FileConfig::default()).unwrap();
        assert_eq!(s.access_log, AccessLogFormat::Off);
        assert_eq!(s.access_log_file, PathBuf::from("-"));
        let f = file(
            "log_format = \"json\"\naccess_log = \"common\"\naccess_log_file = \"/tmp/a.log\"",
        );
        let s = Settings::merge(&cli("gk"), f).unwrap();
        assert_eq!(s.log_format, LogFormat::Json);
        assert_eq!(s.access_log, AccessLogFormat::Common);
        let flag = Settings::merge(
            &cli("gk --log-format journald"),
            file("log_format = \"json\""),
        );
        assert_eq!(flag.unwrap().log_format, LogFormat::Journald);
        let err = |text: &str, args: &str| {
            format!("{:#}", Settings::merge(&cli(args), file(text)).unwrap_err())
        };
        assert!(err("log_format = \"xml\"", "gk").starts_with("log_format: "));
        assert!(err("", "gk --log-format xml").starts_with("--log-format: "));
        assert!(err("access_log = \"combined\"", "gk").starts_with("access_log: "));
        assert!(err("access_log_file = \"\"", "gk").starts_with("access_log_file: "));
    }

    #[test]
    fn admin_socket_and_metrics_listen() {
        let s = Settings::merge(&cli("gk --socket-dir /run/x"), FileConfig::default()).unwrap();
        assert_eq!(s.admin_socket, Some(PathBuf::from("/run/x/admin.sock")));
        assert!(s.admin_socket_is_default);
        assert_eq!(s.metrics_listen, None);
        let f = file("admin_socket = \"/tmp/a.sock\"\nmetrics_listen = \"127.0.0.1:9100\"");
        let s = Settings::merge(&cli("gk"), f).unwrap();
        assert_eq!(s.admin_socket, Some(PathBuf::from("/tmp/a.sock")));
        assert!(!s.admin_socket_is_default);
        assert_eq!(s.metrics_listen, Some("127.0.0.1:9100".parse().unwrap()));
        let s = Settings::merge(&cli("gk"), file("admin_socket = \"\"")).unwrap();
        assert_eq!(s.admin_socket, None);
        let bad = Settings::merge(&cli("gk"), file("metrics_listen = \"9100\"")).unwrap_err();
        assert!(format!("{bad:#}").contains("metrics_listen"));
    }

    #[test]
    fn forwarding_headers_settings() {
        let s = Settings::merge(&cli("gk"), FileConfig::default()).unwrap();
        assert_eq!(s.forwarded_headers, ForwardedMode::Append);
        assert_eq!(s.via, "gatekeeper");
        let f = file("forwarded_headers = \"replace\"\nvia = \"\"");
        let s = Settings::merge(&cli("gk"), f).unwrap();
        assert_eq!(s.forwarded_headers, ForwardedMode::Replace);
        assert_eq!(s.via, "");
    }
}
