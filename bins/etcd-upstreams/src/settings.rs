//! How to reach etcd (endpoints, prefix, credentials, TLS, timeouts), read from the plugin's config
//! map or from the `register` subcommand's flags, and connecting with them.
//!
//! Config keys (from gatekeeper's `--upstream-KEY VALUE` flags, where `-` in a key counts as `_`,
//! or from the plugin's `[plugin.config]` table):
//!
//! | key | default | meaning |
//! |---|---|---|
//! | `endpoints` | `http://127.0.0.1:2379` | comma-separated etcd URLs (or a TOML list); `https://` ones with TLS |
//! | `prefix` | `/gatekeeper` | the key prefix: `PREFIX/upstreams/ID`, `PREFIX/backends/UPSTREAM/ID` |
//! | `username`, `password` | none | etcd authentication (both or neither) |
//! | `ca_file` | none | PEM CA bundle to verify the servers with (TLS; `https://` endpoints) |
//! | `cert_file`, `key_file` | none | PEM client certificate and key (TLS client auth; both or neither) |
//! | `dial_timeout` | `2s` | how long connecting (and any single etcd call but the initial read) may take |
//! | `reconnect_max` | `5s` | the longest wait between reconnection attempts (the first is 100 ms, doubling) |
//! | `warn_interval` | `30s` | while etcd is unreachable, one warning per this interval |
//! | `page_size` | `1000` | keys per range request when reading the whole prefix ([`crate::read`]) |
//! | `cache_file` | none | a file keeping the last state pushed, served at start when etcd is unreachable ([`crate::cache`]) |

use std::path::{Path, PathBuf};
use std::time::Duration;

use etcd_client::{Certificate, Client, ConnectOptions, Identity, TlsOptions};
use gatekeeper_plugin_sdk::{HookError, Object};
use serde_json::Value;

/// The default endpoint list.
pub const DEFAULT_ENDPOINTS: &str = "http://127.0.0.1:2379";
/// The default key prefix.
pub const DEFAULT_PREFIX: &str = "/gatekeeper";
/// The default `dial_timeout`.
pub const DEFAULT_DIAL_TIMEOUT: Duration = Duration::from_secs(2);
/// The default `reconnect_max`.
pub const DEFAULT_RECONNECT_MAX: Duration = Duration::from_secs(5);
/// The default `page_size`.
pub const DEFAULT_PAGE_SIZE: i64 = 1000;
/// The default `warn_interval`.
pub const DEFAULT_WARN_INTERVAL: Duration = Duration::from_secs(30);
/// HTTP/2 keep-alive pings on the connection to etcd: a silent network loss is noticed within
/// this plus `dial_timeout` (etcd refuses pings more often than every 5 s by default).
const KEEP_ALIVE_INTERVAL: Duration = Duration::from_secs(10);

/// The keys this plugin reads (others are logged and ignored).
pub const KNOWN_KEYS: &[&str] = &[
    "endpoints",
    "prefix",
    "username",
    "password",
    "ca_file",
    "cert_file",
    "key_file",
    "dial_timeout",
    "reconnect_max",
    "warn_interval",
    "cache_file",
    "page_size",
];

/// TLS material, read from its files when the settings are read.
#[derive(Clone, Default)]
pub struct Tls {
    /// The CA bundle (PEM), if given.
    pub ca: Option<Vec<u8>>,
    /// The client certificate and key (PEM), if given.
    pub identity: Option<(Vec<u8>, Vec<u8>)>,
}

/// How to reach etcd.
#[derive(Clone)]
pub struct Settings {
    /// The endpoint URLs.
    pub endpoints: Vec<String>,
    /// The key prefix, without a trailing `/`.
    pub prefix: String,
    /// User name and password.
    pub user: Option<(String, String)>,
    /// TLS, when any TLS file was given.
    pub tls: Option<Tls>,
    /// The connect (and single call) timeout.
    pub dial_timeout: Duration,
    /// The longest wait between reconnection attempts.
    pub reconnect_max: Duration,
    /// While etcd is unreachable, one warning per this interval.
    pub warn_interval: Duration,
    /// Where to keep the last state pushed, if anywhere.
    pub cache_file: Option<PathBuf>,
    /// Keys per range request when reading the whole prefix.
    pub page_size: i64,
}

impl std::fmt::Debug for Settings {
    /// Never shows the password nor the key.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Settings")
            .field("endpoints", &self.endpoints)
            .field("prefix", &self.prefix)
            .field("user", &self.user.as_ref().map(|(name, _)| name))
            .field("tls", &self.tls.is_some())
            .field("dial_timeout", &self.dial_timeout)
            .field("reconnect_max", &self.reconnect_max)
            .field("warn_interval", &self.warn_interval)
            .field("cache_file", &self.cache_file)
            .field("page_size", &self.page_size)
            .finish()
    }
}

/// The raw values, as strings, before checking (from the config map or from flags).
#[derive(Debug, Default, Clone)]
pub struct RawSettings {
    /// `endpoints`, comma-separated.
    pub endpoints: Option<String>,
    /// `prefix`.
    pub prefix: Option<String>,
    /// `username`.
    pub username: Option<String>,
    /// `password`.
    pub password: Option<String>,
    /// `ca_file`.
    pub ca_file: Option<String>,
    /// `cert_file`.
    pub cert_file: Option<String>,
    /// `key_file`.
    pub key_file: Option<String>,
    /// `dial_timeout`.
    pub dial_timeout: Option<String>,
    /// `reconnect_max`.
    pub reconnect_max: Option<String>,
    /// `warn_interval`.
    pub warn_interval: Option<String>,
    /// `cache_file`.
    pub cache_file: Option<String>,
    /// `page_size`.
    pub page_size: Option<String>,
}

impl RawSettings {
    /// The values of a plugin config map (keys with `-` count as with `_`). Unknown keys are
    /// logged and ignored (gatekeeper's `--upstream-KEY` flags go to every upstream plugin).
    pub fn from_config(config: &Object) -> Result<RawSettings, String> {
        let mut raw = RawSettings::default();
        for (key, value) in config {
            let key = key.replace('-', "_");
            let text = match value {
                Value::String(s) => s.clone(),
                Value::Number(n) => n.to_string(),
                Value::Array(items) if key == "endpoints" => {
                    let mut urls = Vec::new();
                    for item in items {
                        match item {
                            Value::String(s) => urls.push(s.clone()),
                            other => {
                                return Err(format!(
                                    "config key `endpoints` must list URLs, got {other}"
                                ))
                            }
                        }
                    }
                    urls.join(",")
                }
                other => return Err(format!("config key `{key}` must be a string, got {other}")),
            };
            let slot = match key.as_str() {
                "endpoints" => &mut raw.endpoints,
                "prefix" => &mut raw.prefix,
                "username" => &mut raw.username,
                "password" => &mut raw.password,
                "ca_file" => &mut raw.ca_file,
                "cert_file" => &mut raw.cert_file,
                "key_file" => &mut raw.key_file,
                "dial_timeout" => &mut raw.dial_timeout,
                "reconnect_max" => &mut raw.reconnect_max,
                "warn_interval" => &mut raw.warn_interval,
                "cache_file" => &mut raw.cache_file,
                "page_size" => &mut raw.page_size,
                _ => {
                    tracing::warn!(
                        key,
                        known = ?KNOWN_KEYS,
                        "unknown config key, ignored"
                    );
                    continue;
                }
            };
            *slot = Some(text);
        }
        Ok(raw)
    }

    /// Checks the values and reads the TLS files; the error names the key.
    pub fn check(self) -> Result<Settings, String> {
        let endpoints: Vec<String> = self
            .endpoints
            .as_deref()
            .unwrap_or(DEFAULT_ENDPOINTS)
            .split(',')
            .map(|e| e.trim().to_owned())
            .filter(|e| !e.is_empty())
            .collect();
        if endpoints.is_empty() {
            return Err("config key `endpoints` must name at least one etcd URL".into());
        }
        for endpoint in &endpoints {
            if !(endpoint.starts_with("http://") || endpoint.starts_with("https://")) {
                return Err(format!(
                    "config key `endpoints`: `{endpoint}` must be an http:// or https:// URL"
                ));
            }
            if endpoint.parse::<http::Uri>().is_err() {
                return Err(format!("config key `endpoints`: `{endpoint}` is not a URL"));
            }
        }
        let prefix = self.prefix.unwrap_or_else(|| DEFAULT_PREFIX.to_owned());
        let prefix = prefix.trim_end_matches('/').to_owned();
        if prefix.is_empty() {
            return Err("config key `prefix` must not be empty (e.g. `/gatekeeper`)".into());
        }
        let user = match (self.username, self.password) {
            (None, None) => None,
            (Some(name), Some(password)) if !name.is_empty() => Some((name, password)),
            _ => return Err("config keys `username` and `password` go together".into()),
        };
        let read = |key: &str, path: &str| {
            std::fs::read(Path::new(path))
                .map_err(|e| format!("config key `{key}`: cannot read `{path}`: {e}"))
        };
        let ca = match &self.ca_file {
            Some(path) => Some(read("ca_file", path)?),
            None => None,
        };
        let identity = match (&self.cert_file, &self.key_file) {
            (None, None) => None,
            (Some(cert), Some(key)) => Some((read("cert_file", cert)?, read("key_file", key)?)),
            _ => return Err("config keys `cert_file` and `key_file` go together".into()),
        };
        let tls = (ca.is_some() || identity.is_some()).then_some(Tls { ca, identity });
        let secure = endpoints
            .iter()
            .filter(|e| e.starts_with("https://"))
            .count();
        if tls.is_some() && secure != endpoints.len() {
            return Err("config keys `ca_file`, `cert_file` and `key_file` need https:// endpoints (all of them)".into());
        }
        Ok(Settings {
            endpoints,
            prefix,
            user,
            tls,
            dial_timeout: duration("dial_timeout", self.dial_timeout, DEFAULT_DIAL_TIMEOUT)?,
            reconnect_max: duration("reconnect_max", self.reconnect_max, DEFAULT_RECONNECT_MAX)?,
            warn_interval: duration("warn_interval", self.warn_interval, DEFAULT_WARN_INTERVAL)?,
            cache_file: match self.cache_file {
                Some(path) if path.is_empty() => {
                    return Err("config key `cache_file` must be a file path".into())
                }
                path => path.map(PathBuf::from),
            },
            page_size: match self.page_size {
                None => DEFAULT_PAGE_SIZE,
                Some(text) => match text.trim().parse::<i64>() {
                    Ok(n) if n >= 1 => n,
                    _ => {
                        return Err(format!(
                            "config key `page_size` must be a whole number of keys, at least 1, got `{text}`"
                        ))
                    }
                },
            },
        })
    }
}

/// A duration in humantime syntax (`500ms`, `2s`, `1m`), more than 0.
fn duration(key: &str, text: Option<String>, default: Duration) -> Result<Duration, String> {
    let Some(text) = text else {
        return Ok(default);
    };
    match humantime::parse_duration(text.trim()) {
        Ok(d) if !d.is_zero() => Ok(d),
        Ok(_) => Err(format!("config key `{key}` must be more than 0")),
        Err(e) => Err(format!(
            "config key `{key}` must be a duration such as `500ms` or `2s`, got `{text}` ({e})"
        )),
    }
}

/// Reads and checks the plugin's config map; the error is `invalid params` naming the key.
pub fn from_config(config: &Object) -> Result<Settings, HookError> {
    RawSettings::from_config(config)
        .and_then(RawSettings::check)
        .map_err(HookError::invalid_params)
}

impl Settings {
    /// A client for these settings. The client dials lazily: the caller bounds its first calls
    /// with timeouts.
    pub async fn connect(&self) -> Result<Client, etcd_client::Error> {
        let mut options = ConnectOptions::new()
            .with_connect_timeout(self.dial_timeout)
            .with_keep_alive(KEEP_ALIVE_INTERVAL, self.dial_timeout)
            .with_keep_alive_while_idle(true);
        if let Some((name, password)) = &self.user {
            options = options
                .with_user(name.clone(), password.clone())
                .with_auto_token_refresh(true);
        }
        if let Some(tls) = &self.tls {
            let mut config = TlsOptions::new();
            if let Some(ca) = &tls.ca {
                config = config.ca_certificate(Certificate::from_pem(ca));
            }
            if let Some((cert, key)) = &tls.identity {
                config = config.identity(Identity::from_pem(cert, key));
            }
            options = options.with_tls(config);
        }
        match tokio::time::timeout(
            self.dial_timeout,
            Client::connect(&self.endpoints, Some(options)),
        )
        .await
        {
            Ok(result) => result,
            Err(_) => Err(etcd_client::Error::InvalidArgs(format!(
                "no answer from etcd within {} (dial_timeout)",
                humantime::format_duration(self.dial_timeout)
            ))),
        }
    }

    /// The endpoints, for logs.
    pub fn endpoints_shown(&self) -> String {
        self.endpoints.join(",")
    }
}

/// Runs one etcd call with a time limit; the error says what failed (`what`) and why.
pub async fn call<T>(
    limit: Duration,
    what: &str,
    call: impl std::future::Future<Output = Result<T, etcd_client::Error>>,
) -> Result<T, String> {
    match tokio::time::timeout(limit, call).await {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(e)) => Err(format!("{what}: {e}")),
        Err(_) => Err(format!(
            "{what}: no answer within {}",
            humantime::format_duration(limit)
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn settings(value: Value) -> Result<Settings, String> {
        let config = value.as_object().cloned().unwrap_or_default();
        RawSettings::from_config(&config).and_then(RawSettings::check)
    }

    #[test]
    fn defaults() {
        let s = settings(json!({})).unwrap();
        assert_eq!(s.endpoints, [DEFAULT_ENDPOINTS]);
        assert_eq!(s.prefix, "/gatekeeper");
        assert_eq!(s.dial_timeout, DEFAULT_DIAL_TIMEOUT);
        assert!(s.user.is_none() && s.tls.is_none());
    }

    #[test]
    fn flags_with_dashes_and_lists() {
        let s = settings(json!({
            "endpoints": "http://a:1, http://b:2",
            "prefix": "/x/",
            "dial-timeout": "500ms",
            "reconnect_max": "1s",
        }))
        .unwrap();
        assert_eq!(s.endpoints, ["http://a:1", "http://b:2"]);
        assert_eq!(s.prefix, "/x");
        assert_eq!(s.dial_timeout, Duration::from_millis(500));
        assert_eq!(s.reconnect_max, Duration::from_secs(1));
        let s = settings(json!({"endpoints": ["http://a:1", "http://b:2"]})).unwrap();
        assert_eq!(s.endpoints.len(), 2);
    }

    #[test]
    fn bad_values_name_their_key() {
        for (config, needle) in [
            (json!({"endpoints": ""}), "`endpoints`"),
            (json!({"endpoints": "127.0.0.1:2379"}), "http://"),
            (json!({"prefix": "/"}), "`prefix`"),
            (json!({"username": "u"}), "`username` and `password`"),
            (json!({"dial_timeout": "soon"}), "`dial_timeout`"),
            (json!({"dial_timeout": "0s"}), "more than 0"),
            (
                json!({"cert_file": "/nonexistent"}),
                "`cert_file` and `key_file`",
            ),
            (json!({"ca_file": "/nonexistent/ca.pem"}), "cannot read"),
            (json!({"prefix": true}), "must be a string"),
            (json!({"page_size": 0}), "`page_size`"),
            (json!({"page-size": "many"}), "`page_size`"),
        ] {
            let err = settings(config.clone()).unwrap_err();
            assert!(err.contains(needle), "{config}: {err}");
        }
    }

    #[test]
    fn tls_needs_https_endpoints() {
        let dir = std::env::temp_dir().join(format!("etcd-upstreams-tls-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let ca = dir.join("ca.pem");
        std::fs::write(&ca, "not checked here").unwrap();
        let ca = ca.to_string_lossy().into_owned();
        let err = settings(json!({"ca_file": ca})).unwrap_err();
        assert!(err.contains("https://"), "{err}");
        let ok = settings(json!({"ca_file": ca, "endpoints": "https://a:2379"})).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
        assert!(ok.tls.is_some_and(|t| t.ca.is_some()));
    }
}
