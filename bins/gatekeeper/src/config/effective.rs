//! The effective settings as JSON, as `--check`, `gatekeeper check --json` and the admin
//! socket's `config` print them, and as a reload compares them (each top-level key is one
//! setting). The shape and key order are the ones these outputs have always had: listeners as
//! `{name, addr}`, `metrics` and `passive_health` as objects, durations as `"30s"`.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use gatekeeper_plugin_host::spec::RecycleAfter;
use gatekeeper_proxy::{FailurePolicy, ForwardedMode, ListenerConfig, TlsCertificate};
use gatekeeper_rpc::methods::PluginType;
use gatekeeper_rpc::types::Object;
use serde::{Serialize, Serializer};

use super::{PluginConfig, Settings};
use crate::logging::LogFormat;
use crate::wiring::access_log::{AccessLogField, AccessLogFormat};

/// A duration as `"30s"`.
#[derive(Serialize)]
#[serde(transparent)]
struct Humantime(#[serde(serialize_with = "humantime_string")] Duration);

fn humantime_string<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&humantime::format_duration(*d).to_string())
}

#[derive(Serialize)]
struct Tls<'a> {
    listener: &'a str,
    cert: &'a Path,
    key: &'a Path,
    /// The listener's settings and the OCSP file, as this table gives them (unset: absent).
    #[serde(skip_serializing_if = "Option::is_none")]
    ocsp: Option<&'a Path>,
    #[serde(skip_serializing_if = "Option::is_none")]
    min_version: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    ciphers: Option<&'a [String]>,
    #[serde(skip_serializing_if = "Option::is_none")]
    client_ca: Option<&'a Path>,
    #[serde(skip_serializing_if = "Option::is_none")]
    client_auth: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    response_headers: Option<&'a std::collections::BTreeMap<String, String>>,
}

#[derive(Serialize)]
struct Plugin<'a> {
    name: &'a str,
    plugin_type: PluginType,
    command: &'a Path,
    args: &'a [String],
    config: &'a Object,
    failure: FailurePolicy,
    hook_timeout: Humantime,
    heartbeat_interval: Humantime,
    instances: usize,
    standby: usize,
    restart_after_timeouts: u32,
    restart_after_errors: u32,
    healthy_after: Humantime,
    restart_backoff_min: Humantime,
    restart_backoff_max: Humantime,
    start_attempts: u32,
    start_timeout: Humantime,
    start_max: Humantime,
    /// Bytes; `null`: no limit.
    max_memory: Option<u64>,
    /// A number of calls or a duration; `null`: never.
    recycle_after: Option<RecycleAfter>,
    /// Microseconds; 0: off.
    busy_poll_us: u32,
}

#[derive(Serialize)]
struct Metrics {
    batch_size: usize,
    flush_interval: Humantime,
    buffer: usize,
}

#[derive(Serialize)]
struct PassiveHealth {
    failures: u32,
    cooldown: Humantime,
}

#[derive(Serialize)]
struct Effective<'a> {
    listeners: &'a [ListenerConfig],
    default_timeout: Humantime,
    connect_timeout: Humantime,
    header_read_timeout: Humantime,
    tls: Vec<Tls<'a>>,
    keepalive_idle: Humantime,
    keepalive_release_after: Humantime,
    max_header_bytes: usize,
    max_connections: usize,
    max_connections_per_client: usize,
    client_request_rate: u32,
    client_request_burst: u32,
    socket_dir: Option<&'a PathBuf>,
    log: &'a str,
    workers: usize,
    max_plugin_body: usize,
    plugins: Vec<Plugin<'a>>,
    metrics: Metrics,
    passive_health: PassiveHealth,
    forwarded_headers: ForwardedMode,
    via: &'a str,
    log_format: LogFormat,
    access_log: AccessLogFormat,
    access_log_file: &'a Path,
    access_log_fields: &'a [AccessLogField],
    admin_socket: Option<&'a PathBuf>,
    metrics_listen: Option<SocketAddr>,
    shutdown_grace: Humantime,
    response_headers: &'a BTreeMap<String, String>,
}

fn plugin(p: &PluginConfig) -> Plugin<'_> {
    let spec = &p.spec;
    Plugin {
        name: &spec.name,
        plugin_type: spec.plugin_type,
        command: &spec.command,
        args: &spec.args,
        config: &spec.config,
        failure: p.failure,
        hook_timeout: Humantime(spec.hook_timeout),
        heartbeat_interval: Humantime(spec.heartbeat_interval),
        instances: spec.instances,
        standby: spec.standby,
        restart_after_timeouts: spec.restart_after_timeouts,
        restart_after_errors: spec.restart_after_errors,
        healthy_after: Humantime(spec.healthy_after),
        restart_backoff_min: Humantime(spec.restart_backoff_min),
        restart_backoff_max: Humantime(spec.restart_backoff_max),
        start_attempts: spec.start_attempts,
        start_timeout: Humantime(spec.start_timeout),
        start_max: Humantime(spec.start_max),
        max_memory: spec.max_memory,
        recycle_after: spec.recycle_after,
        busy_poll_us: spec.busy_poll_us,
    }
}

fn tls(t: &TlsCertificate) -> Tls<'_> {
    Tls {
        listener: &t.listener,
        cert: &t.cert,
        key: &t.key,
        ocsp: t.ocsp.as_deref(),
        min_version: t.settings.min_version.map(|v| v.to_string()),
        ciphers: t.settings.ciphers.as_deref(),
        client_ca: t.settings.client_ca.as_deref(),
        client_auth: t.settings.client_auth.map(|a| a.to_string()),
        response_headers: t.settings.response_headers.as_ref(),
    }
}

impl Serialize for Settings {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let proxy = &self.proxy;
        Effective {
            listeners: &proxy.listeners,
            default_timeout: Humantime(proxy.default_timeout),
            connect_timeout: Humantime(proxy.connect_timeout),
            header_read_timeout: Humantime(proxy.header_read_timeout),
            tls: proxy.tls.iter().map(tls).collect(),
            keepalive_idle: Humantime(proxy.keepalive_idle),
            keepalive_release_after: Humantime(proxy.keepalive_release_after),
            max_header_bytes: proxy.max_header_bytes,
            max_connections: proxy.max_connections,
            max_connections_per_client: proxy.max_connections_per_client,
            client_request_rate: proxy.client_request_rate,
            client_request_burst: proxy.client_request_burst,
            socket_dir: self.host.socket_dir.as_ref(),
            log: &self.log,
            workers: self.workers,
            max_plugin_body: proxy.max_plugin_body,
            plugins: self.plugins.iter().map(plugin).collect(),
            metrics: Metrics {
                batch_size: self.metrics.batch_size,
                flush_interval: Humantime(self.metrics.flush_interval),
                buffer: self.metrics.buffer,
            },
            passive_health: PassiveHealth {
                failures: proxy.passive_health_failures,
                cooldown: Humantime(proxy.passive_health_cooldown),
            },
            forwarded_headers: proxy.forwarded.mode,
            via: &proxy.forwarded.via,
            log_format: self.log_format,
            access_log: self.access_log,
            access_log_file: &self.access_log_file,
            access_log_fields: &self.access_log_fields,
            admin_socket: self.admin_socket.as_ref().map(|s| &s.path),
            metrics_listen: self.metrics_listen,
            shutdown_grace: Humantime(proxy.shutdown_grace),
            response_headers: &proxy.response_headers,
        }
        .serialize(s)
    }
}
