//! The plugin: configuration, the key of a request, and `modify_request`, which passes the
//! request on or answers `429 Too Many Requests` itself.
//!
//! Config keys (numbers may also be given as strings, as `--modifier-rate 5` does):
//!
//! | key | default | meaning |
//! |---|---|---|
//! | `key` | `"client"` | `"client"`: one bucket per client IP (the ip part of `remote_addr`); `"header:<name>"`: one bucket per value of that header (requests without it fall back to their client IP) |
//! | `rate` | `10` | tokens added per second (a float; `0.5` is one request every 2 s) |
//! | `burst` | `20` | bucket size: how many requests may arrive at once after a quiet period |
//! | `max_keys` | `10000` | most buckets held at once |

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};

use gatekeeper_plugin_sdk::config::{invalid, number};
use gatekeeper_plugin_sdk::{
    header, HookError, HttpRequest, HttpResponse, Method, ModifierPlugin, ModifyRequest,
    ModifyRequestParams, ModifyRequestResult, Object, Plugin,
};
use serde_json::Value;

use crate::limiter::{Clock, Decision, Limiter, SystemClock};

/// Default `rate`: tokens per second.
pub const DEFAULT_RATE: f64 = 10.0;
/// Default `burst`: bucket size.
pub const DEFAULT_BURST: f64 = 20.0;
/// Default `max_keys`: most buckets held.
pub const DEFAULT_MAX_KEYS: usize = 10_000;
/// The body of a 429.
pub const TOO_MANY_BODY: &str = "too many requests\n";

/// What a request's bucket is chosen by.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeySource {
    /// The client's IP address.
    Client,
    /// The value of this header (lower-case name).
    Header(String),
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
    /// Most buckets held.
    pub max_keys: usize,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            key: KeySource::Client,
            rate: DEFAULT_RATE,
            burst: DEFAULT_BURST,
            max_keys: DEFAULT_MAX_KEYS,
        }
    }
}

impl Settings {
    /// Reads and checks the config map; unknown keys are ignored.
    pub fn from_config(config: &Object) -> Result<Settings, HookError> {
        let mut settings = Settings::default();
        if let Some(value) = config.get("key") {
            settings.key = parse_key(value)?;
        }
        if let Some(rate) = number(config, "rate")? {
            if !(rate.is_finite() && rate > 0.0) {
                return Err(invalid(
                    "rate",
                    "a positive number of tokens per second",
                    rate,
                ));
            }
            settings.rate = rate;
        }
        if let Some(burst) = number(config, "burst")? {
            if !(burst.is_finite() && burst >= 1.0) {
                return Err(invalid("burst", "a number of at least 1", burst));
            }
            settings.burst = burst;
        }
        if let Some(max_keys) = number(config, "max_keys")? {
            if !(max_keys.is_finite() && max_keys >= 1.0 && max_keys.fract() == 0.0) {
                return Err(invalid(
                    "max_keys",
                    "a whole number of at least 1",
                    max_keys,
                ));
            }
            settings.max_keys = max_keys as usize;
        }
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

/// The 429 answer.
fn too_many(retry_after_secs: u64) -> HttpResponse {
    HttpResponse {
        status: 429,
        headers: vec![
            ("retry-after".to_owned(), retry_after_secs.to_string()),
            (
                "content-type".to_owned(),
                "text/plain; charset=utf-8".to_owned(),
            ),
        ],
        body: Some(TOO_MANY_BODY.to_owned()),
        body_base64: None,
        body_omitted: false,
    }
}

struct State {
    settings: Settings,
    limiter: Limiter,
}

impl State {
    fn new(settings: Settings) -> Self {
        let limiter = Limiter::new(settings.rate, settings.burst, settings.max_keys);
        State { settings, limiter }
    }
}

/// The rate-limit modifier.
pub struct RateLimit {
    clock: Arc<dyn Clock>,
    state: Mutex<State>,
}

impl Default for RateLimit {
    fn default() -> Self {
        RateLimit::with_clock(Arc::new(SystemClock))
    }
}

impl RateLimit {
    /// A plugin with the default settings that reads the time from `clock`.
    pub fn with_clock(clock: Arc<dyn Clock>) -> Self {
        RateLimit {
            clock,
            state: Mutex::new(State::new(Settings::default())),
        }
    }
}

impl Plugin for RateLimit {
    /// Reads `key`, `rate`, `burst` and `max_keys`; starts over with empty buckets.
    async fn configure(&self, config: Object) -> Result<(), HookError> {
        let settings = Settings::from_config(&config)?;
        tracing::info!(?settings, "rate limit configured");
        *self.state.lock().unwrap_or_else(PoisonError::into_inner) = State::new(settings);
        Ok(())
    }
}

impl ModifierPlugin for RateLimit {
    fn hooks(&self) -> &'static [&'static str] {
        &[ModifyRequest::NAME]
    }

    /// Takes a token from the request's bucket, or answers 429 with `Retry-After`.
    async fn modify_request(
        &self,
        params: ModifyRequestParams,
    ) -> Result<ModifyRequestResult, HookError> {
        let now = self.clock.now();
        let decision = {
            let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
            let key = state.settings.key_of(&params.request);
            state.limiter.check(&key, now)
        };
        Ok(match decision {
            Decision::Allow => ModifyRequestResult::default(),
            Decision::Deny { retry_after_secs } => ModifyRequestResult {
                patch: None,
                cache: None,
                request: None,
                response: Some(too_many(retry_after_secs)),
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use super::*;
    use serde_json::json;

    /// A clock that moves only when told to.
    struct ManualClock(Mutex<Instant>);

    impl ManualClock {
        fn advance(&self, by: Duration) {
            *self.0.lock().unwrap() += by;
        }
    }

    impl Clock for ManualClock {
        fn now(&self) -> Instant {
            *self.0.lock().unwrap()
        }
    }

    fn config(pairs: &[(&str, Value)]) -> Object {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), v.clone()))
            .collect()
    }

    fn request(remote_addr: &str, headers: &[(&str, &str)]) -> HttpRequest {
        HttpRequest {
            remote_addr: remote_addr.into(),
            method: "GET".into(),
            path: "/".into(),
            headers: headers
                .iter()
                .map(|(n, v)| ((*n).to_owned(), (*v).to_owned()))
                .collect(),
            ..HttpRequest::default()
        }
    }

    async fn plugin(pairs: &[(&str, Value)]) -> (RateLimit, Arc<ManualClock>) {
        let clock = Arc::new(ManualClock(Mutex::new(Instant::now())));
        let plugin = RateLimit::with_clock(clock.clone());
        plugin.configure(config(pairs)).await.unwrap();
        (plugin, clock)
    }

    /// The status the plugin answers `request` with: 0 when it lets it pass.
    async fn status(plugin: &RateLimit, request: HttpRequest) -> (u16, Option<String>) {
        let result = plugin
            .modify_request(ModifyRequestParams { request })
            .await
            .unwrap();
        assert!(result.request.is_none(), "the request is never changed");
        match result.response {
            None => (0, None),
            Some(response) => {
                assert_eq!(response.body.as_deref(), Some(TOO_MANY_BODY));
                let retry = header(&response.headers, "retry-after").map(str::to_owned);
                (response.status, retry)
            }
        }
    }

    #[test]
    fn declares_only_modify_request() {
        assert_eq!(RateLimit::default().hooks(), ["modify_request"]);
    }

    #[test]
    fn config_is_validated() {
        let s = Settings::from_config(&config(&[
            ("key", json!("header:X-Api-Key")),
            ("rate", json!("0.5")),
            ("burst", json!(3)),
            ("max_keys", json!(7)),
        ]))
        .unwrap();
        assert_eq!(s.key, KeySource::Header("x-api-key".into()));
        assert_eq!((s.rate, s.burst, s.max_keys), (0.5, 3.0, 7));
        assert_eq!(
            Settings::from_config(&Object::new()).unwrap(),
            Settings::default()
        );

        for (key, value, needle) in [
            ("key", json!("ip"), "client"),
            ("key", json!("header:"), "client"),
            ("key", json!("header:bad name"), "client"),
            ("key", json!(3), "client"),
            ("rate", json!(0), "positive"),
            ("rate", json!(-1.5), "positive"),
            ("rate", json!("fast"), "number"),
            ("burst", json!(0.5), "at least 1"),
            ("burst", json!(true), "number"),
            ("max_keys", json!(0), "whole number"),
            ("max_keys", json!(2.5), "whole number"),
        ] {
            let err = Settings::from_config(&config(&[(key, value.clone())])).unwrap_err();
            assert!(err.message().contains(needle), "{key}={value}: {err}");
            assert!(err.message().contains(key), "{key}={value}: {err}");
        }
    }

    #[test]
    fn keys_are_the_client_ip_or_the_header() {
        let client = Settings::default();
        assert_eq!(client.key_of(&request("10.0.0.1:5555", &[])), "ip:10.0.0.1");
        assert_eq!(client.key_of(&request("[::1]:5555", &[])), "ip:::1");
        assert_eq!(client.key_of(&request("odd", &[])), "ip:odd");
        let by_header = Settings {
            key: KeySource::Header("x-api-key".into()),
            ..Settings::default()
        };
        assert_eq!(
            by_header.key_of(&request("10.0.0.1:1", &[("X-Api-Key", "k1")])),
            "header:k1"
        );
        assert_eq!(by_header.key_of(&request("10.0.0.1:1", &[])), "ip:10.0.0.1");
    }

    #[tokio::test]
    async fn answers_429_with_retry_after_over_the_limit() {
        let (plugin, clock) = plugin(&[("rate", json!(1)), ("burst", json!(3))]).await;
        for port in [1, 2, 3] {
            // Ports differ per connection; the bucket is per IP.
            let (code, _) = status(&plugin, request(&format!("127.0.0.1:{port}"), &[])).await;
            assert_eq!(code, 0);
        }
        let (code, retry) = status(&plugin, request("127.0.0.1:4", &[])).await;
        assert_eq!((code, retry.as_deref()), (429, Some("1")));
        // Another client is not affected.
        assert_eq!(status(&plugin, request("127.0.0.2:1", &[])).await.0, 0);
        // A second later one token is back.
        clock.advance(Duration::from_secs(1));
        assert_eq!(status(&plugin, request("127.0.0.1:5", &[])).await.0, 0);
        assert_eq!(status(&plugin, request("127.0.0.1:6", &[])).await.0, 429);
    }

    #[tokio::test]
    async fn retry_after_rounds_up_slow_rates() {
        let (plugin, clock) = plugin(&[("rate", json!(0.1)), ("burst", json!(1))]).await;
        assert_eq!(status(&plugin, request("1.2.3.4:1", &[])).await.0, 0);
        clock.advance(Duration::from_millis(2500));
        let (code, retry) = status(&plugin, request("1.2.3.4:1", &[])).await;
        assert_eq!((code, retry.as_deref()), (429, Some("8")));
    }

    #[tokio::test]
    async fn header_keys_have_their_own_buckets() {
        let (plugin, _clock) = plugin(&[
            ("key", json!("header:x-api-key")),
            ("rate", json!(1)),
            ("burst", json!(2)),
        ])
        .await;
        let a = || request("127.0.0.1:1", &[("x-api-key", "a")]);
        let b = || request("127.0.0.1:1", &[("x-api-key", "b")]);
        assert_eq!(status(&plugin, a()).await.0, 0);
        assert_eq!(status(&plugin, a()).await.0, 0);
        assert_eq!(status(&plugin, a()).await.0, 429);
        assert_eq!(status(&plugin, b()).await.0, 0);
        assert_eq!(status(&plugin, b()).await.0, 0);
        assert_eq!(status(&plugin, b()).await.0, 429);
        // No header: the client's address, a bucket of its own.
        assert_eq!(status(&plugin, request("127.0.0.1:1", &[])).await.0, 0);
    }

    #[tokio::test]
    async fn reconfiguring_starts_over() {
        let (plugin, _clock) = plugin(&[("rate", json!(1)), ("burst", json!(1))]).await;
        assert_eq!(status(&plugin, request("127.0.0.1:1", &[])).await.0, 0);
        assert_eq!(status(&plugin, request("127.0.0.1:1", &[])).await.0, 429);
        plugin
            .configure(config(&[("rate", json!(1)), ("burst", json!(1))]))
            .await
            .unwrap();
        assert_eq!(status(&plugin, request("127.0.0.1:1", &[])).await.0, 0);
    }
}
