//! The proxy's configuration: [`ProxyConfig`] (listeners, TLS certificates, timeouts, limits,
//! passive health defaults, forwarding headers, the largest body sent to plugins) and the failure
//! policy keys of a plugin table ([`FailureConfig`]). Each type is the one source of its defaults
//! (`Default`), reads itself from the config file's keys (serde, durations as `"30s"`) and checks
//! its values (`validate`, errors that name their key).
//!
//! Keys are those of the gatekeeper config file: `listen`, `[[tls]]`, `default_timeout`,
//! `connect_timeout`, `header_read_timeout`, `keepalive_idle`, `keepalive_release_after`,
//! `max_header_bytes`,
//! `max_connections`, `max_connections_per_client`, `client_request_rate`,
//! `client_request_burst`, `shutdown_grace`, `passive_health_failures`, `passive_health_cooldown`,
//! `max_plugin_body`, `forwarded_headers`, `via`, `response_headers` ([`ProxyConfig`]); `metrics_batch_size`,
//! `metrics_flush_interval`, `metrics_buffer` ([`crate::MetricsConfig`]); `failure`,
//! `failure_status` in a `[[plugin]]` table ([`FailureConfig`], in `failure`).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::forwarded::{valid_via_name, ForwardedConfig};
use crate::health;
use crate::modifier::DEFAULT_MAX_PLUGIN_BODY;
use crate::tls::settings::{check_listener_settings, TlsSettingError};
use crate::tls::TlsCertificate;

mod failure;

pub use failure::{FailureConfig, FailureMode};

/// The largest `max_plugin_body` (8 MiB): a body, base64-encoded in JSON, must fit in one
/// protocol line (16 MiB).
pub const MAX_MAX_PLUGIN_BODY: usize = 8 * 1024 * 1024;

/// A named listener, written `[NAME=]IP:PORT` (`listen` key, `--listen` flag).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ListenerConfig {
    /// The listener's name (upstreams' `protocols` refer to it; plugins see it).
    pub name: String,
    /// The address to bind.
    pub addr: SocketAddr,
}

impl ListenerConfig {
    /// The name of a listener written without one.
    pub const DEFAULT_NAME: &'static str = "http-public";
}

impl std::str::FromStr for ListenerConfig {
    type Err = ConfigError;

    /// Parses `[NAME=]IP:PORT` (without NAME: [`ListenerConfig::DEFAULT_NAME`]).
    fn from_str(spec: &str) -> Result<Self, ConfigError> {
        let (name, addr) = match spec.split_once('=') {
            Some((name, addr)) => (name.trim(), addr.trim()),
            None => (Self::DEFAULT_NAME, spec.trim()),
        };
        if name.is_empty() {
            return Err(ConfigError::EmptyListenerName(spec.to_owned()));
        }
        let addr = addr
            .parse()
            .map_err(|_| ConfigError::NotAnAddress(addr.to_owned()))?;
        Ok(ListenerConfig {
            name: name.to_owned(),
            addr,
        })
    }
}

impl std::fmt::Display for ListenerConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}={}", self.name, self.addr)
    }
}

/// The proxy's settings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct ProxyConfig {
    /// The listeners (plain HTTP/1.1, or TLS with HTTP/1.1 and HTTP/2 when `tls` has
    /// certificates for them). Key `listen`, a list of `[NAME=]IP:PORT`. Default: none.
    #[serde(rename = "listen", with = "listen_specs")]
    pub listeners: Vec<ListenerConfig>,
    /// Certificates of the TLS listeners (several for one listener: chosen by SNI, the first
    /// is the default) and their settings. `[[tls]]` tables with `listener`, `cert`, `key`,
    /// optional `ocsp` and the listener's `min_version`, `ciphers`, `client_ca`, `client_auth`,
    /// `response_headers` ([`crate::TlsSettings`]). Default: none.
    #[serde(with = "tls_tables")]
    pub tls: Vec<TlsCertificate>,
    /// Time allowed for a backend to answer with headers when the upstream sets no
    /// `timeout_ms` (default 30s).
    #[serde(with = "duration")]
    pub default_timeout: Duration,
    /// Time allowed to open a backend connection (and to wait for a connection slot) when the
    /// upstream sets no `connect_timeout_ms` (default 5s).
    #[serde(with = "duration")]
    pub connect_timeout: Duration,
    /// Time allowed for a client to send a request's head, from its first byte (for a
    /// connection's first request: from the connection's start; on TLS listeners the handshake
    /// gets this time too). Late heads are answered with 408 (default 10s).
    #[serde(with = "duration")]
    pub header_read_timeout: Duration,
    /// A client connection with no request in flight for this long is closed (default 60s).
    #[serde(with = "duration")]
    pub keepalive_idle: Duration,
    /// An HTTP/1 client connection on a plain listener idle for this long gives back its HTTP
    /// state and buffers (about 20 KiB) until the client sends again; it stays open until
    /// `keepalive_idle`. `0s`: as soon as it is idle (default 1s).
    #[serde(with = "duration")]
    pub keepalive_release_after: Duration,
    /// Largest request head (request line and headers) in bytes; larger ones get 431
    /// (default 64 KiB). Also the largest backend response head (then 502).
    pub max_header_bytes: usize,
    /// Client connections served at once over all listeners (default 10000). At the limit, each
    /// listener holds one more accepted connection until one closes; the next ones wait in the
    /// kernel's listen backlog.
    pub max_connections: usize,
    /// Client connections open at once per client address (an IPv4 address, or the /64 of an
    /// IPv6 one; see [`crate::client_limits`]). A connection over the limit is closed as soon as
    /// it is accepted, before anything is read from it. 0: no limit (the default).
    pub max_connections_per_client: usize,
    /// Requests per second per client address, checked before anything else is done with a
    /// request (no plugin sees a refused one); over it, `429 Too Many Requests` with
    /// `Retry-After`. 0: no limit (the default).
    pub client_request_rate: u32,
    /// Requests a client may send at once, beyond which `client_request_rate` applies.
    /// 0 (the default): the same as `client_request_rate`. Without a rate it has no effect.
    pub client_request_burst: u32,
    /// How long in-flight connections may finish after shutdown is requested (default 10s).
    #[serde(with = "duration")]
    pub shutdown_grace: Duration,
    /// Forwarding failures in a row that eject a backend (passive health) when its upstream's
    /// `passive_health` sets none (default 3; 0 disables).
    pub passive_health_failures: u32,
    /// How long an ejected backend gets no new requests when its upstream's `passive_health`
    /// sets no `cooldown_ms` (default 10s).
    #[serde(with = "duration")]
    pub passive_health_cooldown: Duration,
    /// The largest body sent to a modifier that wants bodies (default 1 MiB,
    /// [`DEFAULT_MAX_PLUGIN_BODY`]; at most [`MAX_MAX_PLUGIN_BODY`]): a larger request body is
    /// answered with 413, a larger response body streams past the plugins (`body_omitted`).
    pub max_plugin_body: usize,
    /// The `X-Forwarded-*` and `Via` headers added to forwarded requests (default: append,
    /// `Via: 1.1 gatekeeper`). Keys `forwarded_headers` and `via`.
    #[serde(flatten)]
    pub forwarded: ForwardedConfig,
    /// Headers set on every response of every listener, the proxy's own error answers
    /// included, replacing a backend's header of the same name (e.g.
    /// `{ "x-frame-options" = "DENY" }`); a TLS listener's `response_headers` are set after
    /// these. Headers the proxy manages (`content-length`, `connection`, …) are refused.
    /// Default: none.
    pub response_headers: BTreeMap<String, String>,
}

impl Default for ProxyConfig {
    fn default() -> Self {
        ProxyConfig {
            listeners: Vec::new(),
            tls: Vec::new(),
            default_timeout: Duration::from_secs(30),
            connect_timeout: Duration::from_secs(5),
            header_read_timeout: Duration::from_secs(10),
            keepalive_idle: Duration::from_secs(60),
            keepalive_release_after: Duration::from_secs(1),
            max_header_bytes: 64 * 1024,
            max_connections: 10_000,
            max_connections_per_client: 0,
            client_request_rate: 0,
            client_request_burst: 0,
            shutdown_grace: Duration::from_secs(10),
            passive_health_failures: health::DEFAULT_PASSIVE_FAILURES,
            passive_health_cooldown: health::DEFAULT_PASSIVE_COOLDOWN,
            max_plugin_body: DEFAULT_MAX_PLUGIN_BODY,
            forwarded: ForwardedConfig::default(),
            response_headers: BTreeMap::new(),
        }
    }
}

impl ProxyConfig {
    /// Checks every value; the error names the first bad key. (Certificate files are read by
    /// [`crate::check_certificates`], and the listener set is checked again when binding.)
    pub fn validate(&self) -> Result<(), ConfigError> {
        for (i, listener) in self.listeners.iter().enumerate() {
            let earlier = &self.listeners[..i];
            if earlier.contains(listener) {
                return Err(ConfigError::DuplicateListener(listener.to_string()));
            }
            if earlier.iter().any(|l| l.name == listener.name) {
                return Err(ConfigError::DuplicateListenerName(listener.name.clone()));
            }
            if let Some(other) = earlier
                .iter()
                .find(|l| addresses_clash(l.addr, listener.addr))
            {
                return Err(ConfigError::ListenerAddressClash {
                    first: other.to_string(),
                    second: listener.to_string(),
                });
            }
        }
        for (i, certificate) in self.tls.iter().enumerate() {
            if !self
                .listeners
                .iter()
                .any(|l| l.name == certificate.listener)
            {
                return Err(ConfigError::UnknownListener {
                    key: format!("tls[{i}].listener"),
                    name: certificate.listener.clone(),
                    listeners: self.listener_names(),
                });
            }
        }
        check_listener_settings(&self.tls)
            .map_err(|(key, source)| ConfigError::TlsSetting { key, source })?;
        positive("connect_timeout", self.connect_timeout)?;
        positive("header_read_timeout", self.header_read_timeout)?;
        positive("keepalive_idle", self.keepalive_idle)?;
        in_range(
            "max_header_bytes",
            self.max_header_bytes,
            1024,
            16_777_216,
            " (16 MiB)",
        )?;
        in_range("max_connections", self.max_connections, 1, 10_000_000, "")?;
        in_range(
            "max_connections_per_client",
            self.max_connections_per_client,
            0,
            10_000_000,
            " (0: no limit)",
        )?;
        for (key, value) in [
            ("client_request_rate", self.client_request_rate),
            ("client_request_burst", self.client_request_burst),
        ] {
            in_range(key, value as usize, 0, 1_000_000, " (0: no limit)")?;
        }
        if self.max_plugin_body > MAX_MAX_PLUGIN_BODY {
            return Err(ConfigError::MaxPluginBody(self.max_plugin_body));
        }
        positive("passive_health_cooldown", self.passive_health_cooldown)?;
        crate::tls::settings::response_headers(&self.response_headers)
            .map_err(|(key, error)| ConfigError::ResponseHeader { key, error })?;
        let via = &self.forwarded.via;
        if !via.is_empty() && !valid_via_name(via) {
            return Err(ConfigError::Via(via.clone()));
        }
        Ok(())
    }

    /// The listeners' names, comma-separated (for error messages).
    pub fn listener_names(&self) -> String {
        let names: Vec<&str> = self.listeners.iter().map(|l| l.name.as_str()).collect();
        names.join(", ")
    }
}

/// Whether two TCP addresses cannot both be bound for listening: the same port and the same IP,
/// or a wildcard (`0.0.0.0`, `[::]`) of one covering the other's IP (`[::]` is dual-stack on
/// Linux by default, so it covers IPv4 addresses too). Port 0 (any free port) never clashes.
pub fn addresses_clash(a: SocketAddr, b: SocketAddr) -> bool {
    if a.port() != b.port() || a.port() == 0 {
        return false;
    }
    let (a, b) = (a.ip(), b.ip());
    let covers = |wide: std::net::IpAddr, other: std::net::IpAddr| {
        wide.is_unspecified() && (wide.is_ipv6() || other.is_ipv4())
    };
    a == b || covers(a, b) || covers(b, a)
}

/// A config value out of bounds; each message starts with its key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// A duration that must be more than 0 is 0.
    #[error("{0}: must be more than 0")]
    Zero(&'static str),
    /// A number out of its range.
    #[error("{key}: {value} must be from {min} to {max}{note}")]
    OutOfRange {
        /// The key.
        key: &'static str,
        /// The value given.
        value: usize,
        /// The smallest allowed.
        min: usize,
        /// The largest allowed.
        max: usize,
        /// Said after the range (e.g. ` (16 MiB)`).
        note: &'static str,
    },
    /// `max_plugin_body` over [`MAX_MAX_PLUGIN_BODY`].
    #[error("max_plugin_body: {0} must be at most {MAX_MAX_PLUGIN_BODY} (8 MiB)")]
    MaxPluginBody(usize),
    /// A listener given twice.
    #[error("listen: `{0}` is given twice")]
    DuplicateListener(String),
    /// A `response_headers` entry that cannot be set.
    #[error("{key}: {error}")]
    ResponseHeader {
        /// `response_headers.NAME`.
        key: String,
        /// What is wrong.
        error: crate::tls::settings::TlsSettingError,
    },
    /// Two listeners with one name.
    #[error("listen: the name `{0}` is given to two listeners (names must be unique)")]
    DuplicateListenerName(String),
    /// Two listeners that cannot both be bound.
    #[error(
        "listen: `{first}` and `{second}` cannot both listen (same port, overlapping addresses)"
    )]
    ListenerAddressClash {
        /// The first listener.
        first: String,
        /// The one that clashes with it.
        second: String,
    },
    /// A certificate (or flag) names a listener that is not configured.
    #[error("{key}: `{name}` is not a listener (listeners: {listeners})")]
    UnknownListener {
        /// The key (`tls[0].listener`, `--tls-cert`).
        key: String,
        /// The name given.
        name: String,
        /// The configured listeners, comma-separated.
        listeners: String,
    },
    /// A `[[tls]]` setting cannot be used, or differs between the tables of one listener.
    #[error("{key}: {source}")]
    TlsSetting {
        /// The key (`tls[0].min_version`).
        key: String,
        /// What is wrong.
        #[source]
        source: TlsSettingError,
    },
    /// `via` is not a valid `Via` name.
    #[error("via: `{0}` is not a token or host[:port] (e.g. \"gatekeeper\"; \"\" disables Via)")]
    Via(String),
    /// `failure_status` is not an HTTP status from 200 to 599.
    #[error("failure_status: {0} is not an HTTP status from 200 to 599")]
    FailureStatus(u16),
    /// `failure` is neither `open` nor `closed` (no key: it is said where it is read).
    #[error("`{0}` must be \"open\" or \"closed\"")]
    FailureMode(String),
    /// A `[NAME=]IP:PORT` with an empty NAME (no key: `listen` or `--listen`).
    #[error("`{0}` has an empty listener name")]
    EmptyListenerName(String),
    /// Not an `IP:PORT` (no key: `listen` or `--listen`).
    #[error("`{0}` is not an IP:PORT address")]
    NotAnAddress(String),
    /// Not a duration (no key: said where it is read).
    #[error("`{0}` is not a duration (examples: 500ms, 5s, 1m)")]
    NotADuration(String),
}

fn positive(key: &'static str, value: Duration) -> Result<(), ConfigError> {
    if value.is_zero() {
        return Err(ConfigError::Zero(key));
    }
    Ok(())
}

fn in_range(
    key: &'static str,
    value: usize,
    min: usize,
    max: usize,
    note: &'static str,
) -> Result<(), ConfigError> {
    if (min..=max).contains(&value) {
        return Ok(());
    }
    Err(ConfigError::OutOfRange {
        key,
        value,
        min,
        max,
        note,
    })
}

/// A duration as the config file writes it (`"500ms"`, `"30s"`, `"1m"`).
pub fn parse_duration(value: &str) -> Result<Duration, ConfigError> {
    humantime::parse_duration(value).map_err(|_| ConfigError::NotADuration(value.to_owned()))
}

/// Serde for durations as humantime strings (`"30s"`), with the error message of
/// [`parse_duration`]. Use with `#[serde(with = "gatekeeper_proxy::config::duration")]`.
pub mod duration {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    /// Writes `d` as `"30s"`.
    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&humantime::format_duration(*d).to_string())
    }

    /// Reads `"30s"`.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let text = String::deserialize(d)?;
        super::parse_duration(&text).map_err(serde::de::Error::custom)
    }
}

/// `listen = ["[NAME=]IP:PORT", …]`.
mod listen_specs {
    use serde::ser::SerializeSeq;

    use super::*;

    pub fn serialize<S: Serializer>(listeners: &[ListenerConfig], s: S) -> Result<S::Ok, S::Error> {
        let mut seq = s.serialize_seq(Some(listeners.len()))?;
        for listener in listeners {
            seq.serialize_element(&listener.to_string())?;
        }
        seq.end()
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<ListenerConfig>, D::Error> {
        Vec::<String>::deserialize(d)?
            .iter()
            .map(|spec| spec.parse().map_err(serde::de::Error::custom))
            .collect()
    }
}

/// `[[tls]]` tables: `listener`, `cert`, `key`, `ocsp` and the listener's settings
/// (`min_version`, `ciphers`, `client_ca`, `client_auth`, `response_headers`); no other key.
mod tls_tables {
    use std::collections::BTreeMap;

    use super::*;
    use crate::tls::settings::{ClientAuth, TlsMinVersion, TlsSettings};

    #[derive(Serialize, Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Table {
        listener: String,
        cert: PathBuf,
        key: PathBuf,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        ocsp: Option<PathBuf>,
        #[serde(default, with = "from_str", skip_serializing_if = "Option::is_none")]
        min_version: Option<TlsMinVersion>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        ciphers: Option<Vec<String>>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        client_ca: Option<PathBuf>,
        #[serde(default, with = "from_str", skip_serializing_if = "Option::is_none")]
        client_auth: Option<ClientAuth>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        response_headers: Option<BTreeMap<String, String>>,
    }

    pub fn serialize<S: Serializer>(tls: &[TlsCertificate], s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(tls.iter().map(|t| Table {
            listener: t.listener.clone(),
            cert: t.cert.clone(),
            key: t.key.clone(),
            ocsp: t.ocsp.clone(),
            min_version: t.settings.min_version,
            ciphers: t.settings.ciphers.clone(),
            client_ca: t.settings.client_ca.clone(),
            client_auth: t.settings.client_auth,
            response_headers: t.settings.response_headers.clone(),
        }))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<TlsCertificate>, D::Error> {
        Ok(Vec::<Table>::deserialize(d)?
            .into_iter()
            .map(|t| TlsCertificate {
                listener: t.listener,
                cert: t.cert,
                key: t.key,
                ocsp: t.ocsp,
                settings: TlsSettings {
                    min_version: t.min_version,
                    ciphers: t.ciphers,
                    client_ca: t.client_ca,
                    client_auth: t.client_auth,
                    response_headers: t.response_headers,
                },
            })
            .collect())
    }

    /// An optional value read with its type's `FromStr` and written with `Display`.
    mod from_str {
        use std::fmt::Display;
        use std::str::FromStr;

        use serde::{Deserialize, Deserializer, Serializer};

        pub fn serialize<T: Display, S: Serializer>(
            value: &Option<T>,
            s: S,
        ) -> Result<S::Ok, S::Error> {
            match value {
                Some(value) => s.collect_str(value),
                None => s.serialize_none(),
            }
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
}

#[cfg(test)]
mod tests;
