//! The plugin's configuration: reading and checking the config map, and the bucket key of a
//! request.
//!
//! Config keys (numbers and durations may also be given as strings, as `--modifier-rate 5`
//! does; a key with an underscore may also be spelled with a dash, as flags are):
//!
//! | key | default | meaning |
//! |---|---|---|
//! | `key` | `"client"` | `"client"`: one bucket per client IP (the ip part of `remote_addr`); `"header:<name>"`: one bucket per value of that header (requests without it fall back to their client IP) |
//! | `rate` | `10` | tokens added per second (a float; `0.5` is one request every 2 s) |
//! | `burst` | `20` | bucket size: how many requests may arrive at once after a quiet period |
//! | `max_keys` | `10000` | most buckets held at once in this process (memory store, and the `local` fallback) |
//! | `store` | `"memory"` | `"memory"`: buckets in this process; `"redis"`: buckets in Redis, shared by every process using the same Redis and `key_prefix` |
//! | `redis_url` | `redis://127.0.0.1:6379` | the Redis server (`redis://[user:password@]host:port[/db]`, or `unix:///path/to/socket`) |
//! | `key_prefix` | `gatekeeper:ratelimit:` | prefix of every Redis key |
//! | `redis_timeout` | `50ms` | longest wait for Redis's answer to one request |
//! | `redis_retry_interval` | `1s` | after Redis failed: how long requests skip Redis, and how often it is tried again in the background |
//! | `on_store_error` | `"local"` | when Redis fails: `"open"` lets requests pass, `"closed"` answers 503, `"local"` limits with this process's own buckets |

use std::fmt;
use std::net::SocketAddr;
use std::time::Duration;

use gatekeeper_plugin_sdk::config::{invalid, number};
use gatekeeper_plugin_sdk::{header, HookError, HttpRequest, Object};
use serde_json::Value;

/// Default `rate`: tokens per second.
pub const DEFAULT_RATE: f64 = 10.0;
/// Default `burst`: bucket size.
pub const DEFAULT_BURST: f64 = 20.0;
/// Default `max_keys`: most buckets held.
pub const DEFAULT_MAX_KEYS: usize = 10_000;
/// Default `redis_url`.
pub const DEFAULT_REDIS_URL: &str = "redis://127.0.0.1:6379";
/// Default `key_prefix`.
pub const DEFAULT_KEY_PREFIX: &str = "gatekeeper:ratelimit:";
/// Default `redis_timeout`.
pub const DEFAULT_REDIS_TIMEOUT: Duration = Duration::from_millis(50);
/// Default `redis_retry_interval`.
pub const DEFAULT_RETRY_INTERVAL: Duration = Duration::from_secs(1);
/// Longest `redis_timeout` and `redis_retry_interval` accepted.
const MAX_DURATION: Duration = Duration::from_secs(60);

/// What a request's bucket is chosen by.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeySource {
    /// The client's IP address.
    Client,
    /// The value of this header (lower-case name).
    Header(String),
}

/// Where the buckets live.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreKind {
    /// In this process.
    Memory,
    /// In Redis, shared.
    Redis,
}

/// What a request gets when Redis cannot decide for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnStoreError {
    /// It passes, unlimited.
    Open,
    /// It is refused with 503.
    Closed,
    /// This process's own buckets decide.
    Local,
}

impl fmt::Display for OnStoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            OnStoreError::Open => "open",
            OnStoreError::Closed => "closed",
            OnStoreError::Local => "local",
        })
    }
}

/// The Redis store's settings.
#[derive(Clone, PartialEq)]
pub struct RedisSettings {
    /// The server's URL (may hold a password: print [`RedisSettings::redacted_url`]).
    pub url: String,
    /// Prefix of every key.
    pub key_prefix: String,
    /// Longest wait for one answer.
    pub timeout: Duration,
    /// How long Redis is skipped after a failure, and how often it is tried again.
    pub retry_interval: Duration,
    /// What requests get while Redis fails.
    pub on_error: OnStoreError,
}

impl Default for RedisSettings {
    fn default() -> Self {
        RedisSettings {
            url: DEFAULT_REDIS_URL.to_owned(),
            key_prefix: DEFAULT_KEY_PREFIX.to_owned(),
            timeout: DEFAULT_REDIS_TIMEOUT,
            retry_interval: DEFAULT_RETRY_INTERVAL,
            on_error: OnStoreError::Local,
        }
    }
}

impl RedisSettings {
    /// How long connecting may take: `timeout`, but at least a second (connecting costs a few
    /// round trips more than one request).
    pub fn connect_timeout(&self) -> Duration {
        self.timeout.max(Duration::from_secs(1))
    }

    /// The URL with any user and password replaced by `***`, for logs and errors.
    pub fn redacted_url(&self) -> String {
        redact_url(&self.url)
    }
}

impl fmt::Debug for RedisSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisSettings")
            .field("url", &self.redacted_url())
            .field("key_prefix", &self.key_prefix)
            .field("timeout", &self.timeout)
            .field("retry_interval", &self.retry_interval)
            .field("on_error", &self.on_error)
            .finish()
    }
}

/// The validated configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    /// What picks the bucket.
    pub key: KeySource,
    /// Tokens per second.
    pub rate: f64,
    /// Bucket size.
    pub burst: f64,
    /// Most buckets held in this process.
    pub max_keys: usize,
    /// Where the buckets live.
    pub store: StoreKind,
    /// The Redis store's settings (read and checked whatever the store).
    pub redis: RedisSettings,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            key: KeySource::Client,
            rate: DEFAULT_RATE,
            burst: DEFAULT_BURST,
            max_keys: DEFAULT_MAX_KEYS,
            store: StoreKind::Memory,
            redis: RedisSettings::default(),
        }
    }
}

impl Settings {
    /// Reads and checks the config map; unknown keys are ignored.
    pub fn from_config(config: &Object) -> Result<Settings, HookError> {
        let config = with_underscores(config);
        let mut settings = Settings::default();
        if let Some(value) = config.get("key") {
            settings.key = parse_key(value)?;
        }
        if let Some(rate) = number(&config, "rate")? {
            if !(rate.is_finite() && rate > 0.0) {
                return Err(invalid(
                    "rate",
                    "a positive number of tokens per second",
                    rate,
                ));
            }
            settings.rate = rate;
        }
        if let Some(burst) = number(&config, "burst")? {
            if !(burst.is_finite() && burst >= 1.0) {
                return Err(invalid("burst", "a number of at least 1", burst));
            }
            settings.burst = burst;
        }
        if let Some(max_keys) = number(&config, "max_keys")? {
            if !(max_keys.is_finite() && max_keys >= 1.0 && max_keys.fract() == 0.0) {
                return Err(invalid(
                    "max_keys",
                    "a whole number of at least 1",
                    max_keys,
                ));
            }
            settings.max_keys = max_keys as usize;
        }
        if let Some(value) = config.get("store") {
            settings.store = match value.as_str() {
                Some("memory") => StoreKind::Memory,
                Some("redis") => StoreKind::Redis,
                _ => return Err(invalid("store", "\"memory\" or \"redis\"", value)),
            };
        }
        settings.redis = redis_settings(&config)?;
        Ok(settings)
    }

    /// The bucket key of `request`: `ip:<addr>` or `header:<value>`, so that a header value can
    /// never share a bucket with an address.
    pub fn key_of(&self, request: &HttpRequest) -> String {
        if let KeySource::Header(name) = &self.key {
            if let Some(value) = header(&request.headers, name) {
                return format!("header:{value}");
            }
        }
        format!("ip:{}", client_ip(&request.remote_addr))
    }

    /// How long a Redis bucket is kept after its last request: the time it takes to fill up
    /// again (then it is the same as a fresh one) plus a second, at most a year.
    pub fn idle_expiry(&self) -> Duration {
        const YEAR_SECS: f64 = 365.0 * 24.0 * 3600.0;
        let refill = (self.burst / self.rate).min(YEAR_SECS);
        Duration::from_secs_f64(refill.ceil() + 1.0)
    }
}

/// The config map with every key's dashes turned into underscores (`--modifier-redis-url` gives
/// `redis-url`); a key spelled both ways keeps the underscore spelling's value.
fn with_underscores(config: &Object) -> Object {
    let mut normalised = Object::new();
    for (key, value) in config {
        if key.contains('-') {
            let key = key.replace('-', "_");
            if !config.contains_key(&key) {
                normalised.insert(key, value.clone());
            }
        } else {
            normalised.insert(key.clone(), value.clone());
        }
    }
    normalised
}

fn redis_settings(config: &Object) -> Result<RedisSettings, HookError> {
    let mut redis = RedisSettings::default();
    if let Some(value) = config.get("redis_url") {
        let Some(url) = value.as_str() else {
            return Err(invalid("redis_url", "a string", value));
        };
        redis.url = url.trim().to_owned();
        if let Err(err) = redis::Client::open(redis.url.as_str()) {
            return Err(HookError::invalid_params(format!(
                "config key `redis_url` must be a Redis URL such as redis://127.0.0.1:6379 or \
                 unix:///run/redis.sock, got {} ({err})",
                redis.redacted_url()
            )));
        }
    }
    if let Some(value) = config.get("key_prefix") {
        match value.as_str() {
            Some(prefix) => redis.key_prefix = prefix.to_owned(),
            None => return Err(invalid("key_prefix", "a string", value)),
        }
    }
    if let Some(timeout) = duration(config, "redis_timeout")? {
        redis.timeout = timeout;
    }
    if let Some(interval) = duration(config, "redis_retry_interval")? {
        redis.retry_interval = interval;
    }
    if let Some(value) = config.get("on_store_error") {
        redis.on_error = match value.as_str() {
            Some("open") => OnStoreError::Open,
            Some("closed") => OnStoreError::Closed,
            Some("local") => OnStoreError::Local,
            _ => {
                return Err(invalid(
                    "on_store_error",
                    "\"open\", \"closed\" or \"local\"",
                    value,
                ))
            }
        };
    }
    Ok(redis)
}

/// A duration such as `"50ms"` or `"1s"`, above zero and at most a minute.
fn duration(config: &Object, key: &str) -> Result<Option<Duration>, HookError> {
    let Some(value) = config.get(key) else {
        return Ok(None);
    };
    let parsed = value
        .as_str()
        .and_then(|text| humantime::parse_duration(text.trim()).ok());
    match parsed {
        Some(d) if !d.is_zero() && d <= MAX_DURATION => Ok(Some(d)),
        _ => Err(invalid(
            key,
            "a duration above zero and at most 1m, such as \"50ms\" or \"1s\"",
            value,
        )),
    }
}

/// `url` with the user and password between `://` and `@` replaced by `***`.
fn redact_url(url: &str) -> String {
    let Some(scheme_end) = url.find("://") else {
        return url.to_owned();
    };
    let (scheme, rest) = url.split_at(scheme_end + 3);
    let authority_end = rest.find('/').unwrap_or(rest.len());
    match rest[..authority_end].rfind('@') {
        Some(at) => format!("{scheme}***{}", &rest[at..]),
        None => url.to_owned(),
    }
}

fn parse_key(value: &Value) -> Result<KeySource, HookError> {
    let text = value.as_str().unwrap_or_default();
    if text == "client" {
        return Ok(KeySource::Client);
    }
    if let Some(name) = text.strip_prefix("header:") {
        if is_header_name(name) {
            return Ok(KeySource::Header(name.to_ascii_lowercase()));
        }
    }
    Err(HookError::invalid_params(format!(
        "config key `key` must be \"client\" or \"header:<name>\", got {value}"
    )))
}

/// Whether `name` can be an HTTP header name (an RFC 9110 token).
fn is_header_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

/// The ip part of an `ip:port` address (`[v6]:port` too); the whole string if it does not
/// parse, so an odd address still gets a bucket of its own.
fn client_ip(remote_addr: &str) -> String {
    match remote_addr.parse::<SocketAddr>() {
        Ok(addr) => addr.ip().to_string(),
        Err(_) => remote_addr.to_owned(),
    }
}

#[cfg(test)]
mod tests;
