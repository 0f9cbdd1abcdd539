//! The plugin: `configure` (builds the memory or the Redis limits from [`Settings`]), `start`
//! (connects to Redis), and `modify_request`, which passes the request on or answers it itself:
//! `429 Too Many Requests` over the limit, `503 Service Unavailable` when Redis cannot decide
//! and `on_store_error = "closed"`.

use std::sync::{Arc, Mutex, PoisonError};

use gatekeeper_plugin_sdk::{
    HookError, HttpResponse, Method, ModifierPlugin, ModifyRequest, ModifyRequestParams,
    ModifyRequestResult, Object, Plugin,
};

use crate::limiter::{Clock, Limiter, SystemClock};
use crate::redis_store::RedisStore;
use crate::settings::{Settings, StoreKind};
use crate::shared::{SharedLimits, Verdict};

/// The body of a 429.
pub const TOO_MANY_BODY: &str = "too many requests\n";
/// The body of a 503 (Redis failed, `on_store_error = "closed"`).
pub const STORE_DOWN_BODY: &str = "rate limit store unavailable\n";

/// The 429 or 503 answer.
fn refusal(status: u16, retry_after_secs: u64, body: &str) -> HttpResponse {
    HttpResponse {
        status,
        headers: vec![
            ("retry-after".to_owned(), retry_after_secs.to_string()),
            (
                "content-type".to_owned(),
                "text/plain; charset=utf-8".to_owned(),
            ),
        ],
        body: Some(body.to_owned()),
        body_base64: None,
        body_omitted: false,
    }
}

/// The hook's result for `verdict`.
fn result_of(verdict: Verdict) -> ModifyRequestResult {
    let response = match verdict {
        Verdict::Pass => return ModifyRequestResult::default(),
        Verdict::TooMany { retry_after_secs } => refusal(429, retry_after_secs, TOO_MANY_BODY),
        Verdict::StoreDown { retry_after_secs } => refusal(503, retry_after_secs, STORE_DOWN_BODY),
    };
    ModifyRequestResult {
        patch: None,
        cache: None,
        request: None,
        response: Some(response),
    }
}

/// Where the buckets are.
enum Limits {
    Memory(Mutex<Limiter>),
    Redis(SharedLimits<RedisStore>),
}

/// The configured state: replaced whole by `configure`.
struct Active {
    settings: Settings,
    limits: Limits,
}

impl Active {
    fn new(settings: Settings, clock: &Arc<dyn Clock>) -> Result<Self, HookError> {
        let limits = match settings.store {
            StoreKind::Memory => Limits::Memory(Mutex::new(Limiter::new(
                settings.rate,
                settings.burst,
                settings.max_keys,
            ))),
            StoreKind::Redis => {
                let store = RedisStore::new(&settings, settings.redis.connect_timeout())
                    .map_err(|err| HookError::invalid_params(err.to_string()))?;
                Limits::Redis(SharedLimits::new(store, &settings, clock.clone()))
            }
        };
        Ok(Active { settings, limits })
    }

    async fn check(&self, key: &str, clock: &dyn Clock) -> Verdict {
        match &self.limits {
            Limits::Memory(limiter) => {
                let now = clock.now();
                limiter
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .check(key, now)
                    .into()
            }
            Limits::Redis(shared) => shared.check(key).await,
        }
    }
}

/// The rate-limit modifier.
pub struct RateLimit {
    clock: Arc<dyn Clock>,
    active: Mutex<Arc<Active>>,
}

impl Default for RateLimit {
    fn default() -> Self {
        RateLimit::with_clock(Arc::new(SystemClock))
    }
}

impl RateLimit {
    /// A plugin with the default settings (memory store) that reads the time from `clock`.
    pub fn with_clock(clock: Arc<dyn Clock>) -> Self {
        let limits = Limits::Memory(Mutex::new(Limiter::new(
            crate::settings::DEFAULT_RATE,
            crate::settings::DEFAULT_BURST,
            crate::settings::DEFAULT_MAX_KEYS,
        )));
        RateLimit {
            clock,
            active: Mutex::new(Arc::new(Active {
                settings: Settings::default(),
                limits,
            })),
        }
    }

    fn active(&self) -> Arc<Active> {
        self.active
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

impl Plugin for RateLimit {
    /// Reads and checks every key; starts over with empty buckets. Connects to nothing (that is
    /// `start`), so `gatekeeper check` runs it as it is.
    async fn configure(&self, config: Object) -> Result<(), HookError> {
        let settings = Settings::from_config(&config)?;
        tracing::info!(?settings, "rate limit configured");
        let active = Active::new(settings, &self.clock)?;
        *self.active.lock().unwrap_or_else(PoisonError::into_inner) = Arc::new(active);
        Ok(())
    }

    /// With the Redis store: connects, waiting at most `max(redis_timeout, 1s)`. Redis being
    /// down is logged, not an error: `on_store_error` applies until it answers.
    async fn start(&self) -> Result<(), HookError> {
        let active = self.active();
        if let Limits::Redis(shared) = &active.limits {
            shared.start().await;
        }
        Ok(())
    }
}

impl ModifierPlugin for RateLimit {
    fn hooks(&self) -> &'static [&'static str] {
        &[ModifyRequest::NAME]
    }

    /// Takes a token from the request's bucket, or answers 429 with `Retry-After` (503 when
    /// Redis cannot decide and `on_store_error = "closed"`).
    async fn modify_request(
        &self,
        params: ModifyRequestParams,
    ) -> Result<ModifyRequestResult, HookError> {
        let active = self.active();
        let key = active.settings.key_of(&params.request);
        Ok(result_of(active.check(&key, self.clock.as_ref()).await))
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use super::*;
    use crate::test_support::{config, request};
    use gatekeeper_plugin_sdk::{header, HttpRequest};
    use serde_json::{json, Value};

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

    async fn plugin(pairs: &[(&str, Value)]) -> (RateLimit, Arc<ManualClock>) {
        let clock = Arc::new(ManualClock(Mutex::new(Instant::now())));
        let plugin = RateLimit::with_clock(clock.clone());
        plugin.configure(config(pairs)).await.unwrap();
        plugin.start().await.unwrap();
        (plugin, clock)
    }

    /// The status the plugin answers `request` with (0 when it lets it pass) and its
    /// Retry-After.
    async fn status(plugin: &RateLimit, request: HttpRequest) -> (u16, Option<String>) {
        let result = plugin
            .modify_request(ModifyRequestParams { request })
            .await
            .unwrap();
        assert!(result.request.is_none(), "the request is never changed");
        match result.response {
            None => (0, None),
            Some(response) => {
                let expected = if response.status == 429 {
                    TOO_MANY_BODY
                } else {
                    STORE_DOWN_BODY
                };
                assert_eq!(response.body.as_deref(), Some(expected));
                let retry = header(&response.headers, "retry-after").map(str::to_owned);
                (response.status, retry)
            }
        }
    }

    #[test]
    fn declares_only_modify_request() {
        assert_eq!(RateLimit::default().hooks(), ["modify_request"]);
    }

    #[tokio::test]
    async fn a_bad_config_fails_configure() {
        let plugin = RateLimit::default();
        for (key, value) in [
            ("store", json!("disk")),
            ("redis_url", json!("http://x")),
            ("on_store_error", json!("maybe")),
        ] {
            let err = plugin
                .configure(config(&[("store", json!("redis")), (key, value)]))
                .await
                .unwrap_err();
            assert!(err.message().contains(key), "{err}");
        }
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

    /// A port nothing listens on (bound, then released).
    fn dead_port() -> u16 {
        std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .unwrap()
    }

    #[tokio::test]
    async fn redis_down_at_start_does_not_fail_start_and_closed_answers_503() {
        let url = format!("redis://127.0.0.1:{}", dead_port());
        let (plugin, _clock) = plugin(&[
            ("store", json!("redis")),
            ("redis_url", json!(url)),
            ("redis_retry_interval", json!("3s")),
            ("on_store_error", json!("closed")),
        ])
        .await;
        let (code, retry) = status(&plugin, request("127.0.0.1:1", &[])).await;
        assert_eq!((code, retry.as_deref()), (503, Some("3")));
    }

    #[tokio::test]
    async fn redis_down_with_local_limits_in_this_process() {
        let url = format!("redis://127.0.0.1:{}", dead_port());
        let (plugin, _clock) = plugin(&[
            ("store", json!("redis")),
            ("redis_url", json!(url)),
            ("rate", json!(1)),
            ("burst", json!(2)),
        ])
        .await;
        assert_eq!(status(&plugin, request("127.0.0.1:1", &[])).await.0, 0);
        assert_eq!(status(&plugin, request("127.0.0.1:1", &[])).await.0, 0);
        assert_eq!(status(&plugin, request("127.0.0.1:1", &[])).await.0, 429);
    }
}
