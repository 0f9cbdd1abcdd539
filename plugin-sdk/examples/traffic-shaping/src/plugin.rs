//! The plugin: configuration, the marker a request carries in its `context`, and the hooks.
//!
//! - `modify_request` takes a slot of the request's upstream (see [`Slots`]) and records it in
//!   the request context under [`CONTEXT_KEY`] as `"<process>:<slot>"`; with no slot free
//!   within `queue_ms` it answers `503` with `Retry-After: 1`. Requests without an upstream
//!   pass untouched.
//! - `modify_response` and `modify_error_response` release the slot named by the marker, if it
//!   is one of this process's. A request this plugin refused carries no marker, so it releases
//!   nothing.
//! - Slots held longer than `slot_timeout_ms` are released on the next `modify_request` or
//!   `heartbeat`.
//!
//! Config keys (numbers may also be given as strings, as `--modifier-limit 5` does):
//!
//! | key | default | meaning |
//! |---|---|---|
//! | `limit` | `10` | requests in flight per upstream |
//! | `queue_ms` | `100` | how long a request waits for a slot before the 503 (keep it well below the plugin's `hook_timeout`, 1 s by default) |
//! | `slot_timeout_ms` | `60000` | a slot whose response never came back is released after this long |

use std::sync::{Arc, PoisonError, RwLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use gatekeeper_plugin_sdk::config::integer;
use gatekeeper_plugin_sdk::{
    HookError, HttpRequest, HttpResponse, ModifierPlugin, ModifyErrorResponseParams,
    ModifyRequestParams, ModifyRequestResult, ModifyResponseParams, ModifyResponseResult, Object,
    Plugin,
};
use serde_json::Value;

use crate::slots::Slots;

/// The request context key holding the slot marker.
pub const CONTEXT_KEY: &str = "traffic_shaping_slot";
/// Default `limit`.
pub const DEFAULT_LIMIT: usize = 10;
/// Default `queue_ms`.
pub const DEFAULT_QUEUE_MS: u64 = 100;
/// Default `slot_timeout_ms`.
pub const DEFAULT_SLOT_TIMEOUT_MS: u64 = 60_000;
/// The body of a 503.
pub const BUSY_BODY: &str = "upstream busy, retry later\n";

/// A source of the current time, so tests can move time by hand.
pub trait Clock: Send + Sync {
    /// The current instant.
    fn now(&self) -> Instant;
}

/// The real clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Instant {
        Instant::now()
    }
}

/// The validated configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Settings {
    /// Slots per upstream.
    pub limit: usize,
    /// Longest wait for a slot.
    pub queue: Duration,
    /// How long a slot may be held.
    pub slot_timeout: Duration,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            limit: DEFAULT_LIMIT,
            queue: Duration::from_millis(DEFAULT_QUEUE_MS),
            slot_timeout: Duration::from_millis(DEFAULT_SLOT_TIMEOUT_MS),
        }
    }
}

impl Settings {
    /// Reads and checks the config map; unknown keys are ignored.
    pub fn from_config(config: &Object) -> Result<Settings, HookError> {
        let mut settings = Settings::default();
        if let Some(limit) = integer(config, "limit", 1, 1_000_000)? {
            settings.limit = usize::try_from(limit).unwrap_or(usize::MAX);
        }
        if let Some(ms) = integer(config, "queue_ms", 0, 60_000)? {
            settings.queue = Duration::from_millis(ms);
        }
        if let Some(ms) = integer(config, "slot_timeout_ms", 1, 86_400_000)? {
            settings.slot_timeout = Duration::from_millis(ms);
        }
        Ok(settings)
    }
}

/// The 503 answer.
fn busy() -> HttpResponse {
    HttpResponse {
        status: 503,
        headers: vec![
            ("retry-after".to_owned(), "1".to_owned()),
            (
                "content-type".to_owned(),
                "text/plain; charset=utf-8".to_owned(),
            ),
        ],
        body: Some(BUSY_BODY.to_owned()),
        body_base64: None,
        body_omitted: false,
    }
}

struct State {
    settings: Settings,
    slots: Arc<Slots>,
}

/// The traffic-shaping modifier.
pub struct TrafficShaping {
    clock: Arc<dyn Clock>,
    /// Tells this process's markers from another's (another instance, an earlier run).
    process: String,
    state: RwLock<State>,
}

impl Default for TrafficShaping {
    fn default() -> Self {
        TrafficShaping::with_clock(Arc::new(SystemClock))
    }
}

impl TrafficShaping {
    /// A plugin with the default settings that reads the time from `clock`.
    pub fn with_clock(clock: Arc<dyn Clock>) -> Self {
        let started = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos();
        let settings = Settings::default();
        TrafficShaping {
            clock,
            process: format!("{:x}.{:x}", std::process::id(), started),
            state: RwLock::new(State {
                settings,
                slots: Arc::new(Slots::new(settings.limit)),
            }),
        }
    }

    fn current(&self) -> (Settings, Arc<Slots>) {
        let state = self.state.read().unwrap_or_else(PoisonError::into_inner);
        (state.settings, state.slots.clone())
    }

    fn reclaim(&self, settings: &Settings, slots: &Slots) {
        let reclaimed = slots.reclaim(settings.slot_timeout, self.clock.now());
        if reclaimed > 0 {
            tracing::warn!(
                reclaimed,
                "released slots whose response never came back within slot_timeout_ms"
            );
        }
    }

    /// The slot id in `request`'s marker, if the marker is this process's.
    fn slot_of(&self, request: &HttpRequest) -> Option<u64> {
        let marker = request.context.get(CONTEXT_KEY)?.as_str()?;
        let (process, id) = marker.rsplit_once(':')?;
        if process != self.process {
            return None;
        }
        id.parse().ok()
    }

    fn release(&self, request: &HttpRequest) {
        if let Some(id) = self.slot_of(request) {
            let (_, slots) = self.current();
            slots.release(id);
        }
    }
}

impl Plugin for TrafficShaping {
    /// Reads `limit`, `queue_ms` and `slot_timeout_ms`; starts with every slot free.
    async fn configure(&self, config: Object) -> Result<(), HookError> {
        let settings = Settings::from_config(&config)?;
        tracing::info!(?settings, "traffic shaping configured");
        *self.state.write().unwrap_or_else(PoisonError::into_inner) = State {
            settings,
            slots: Arc::new(Slots::new(settings.limit)),
        };
        Ok(())
    }

    /// Also releases slots held too long, so they come back even without traffic.
    async fn heartbeat(&self) -> Result<(), HookError> {
        let (settings, slots) = self.current();
        self.reclaim(&settings, &slots);
        Ok(())
    }
}

impl ModifierPlugin for TrafficShaping {
    /// Takes a slot and marks the request, or answers 503.
    async fn modify_request(
        &self,
        params: ModifyRequestParams,
    ) -> Result<ModifyRequestResult, HookError> {
        let mut request = params.request;
        let Some(upstream) = request.upstream.clone() else {
            return Ok(ModifyRequestResult::default());
        };
        let (settings, slots) = self.current();
        self.reclaim(&settings, &slots);
        match slots
            .acquire(&upstream, settings.queue, self.clock.now())
            .await
        {
            Some(id) => {
                let marker = format!("{}:{id}", self.process);
                request
                    .context
                    .insert(CONTEXT_KEY.to_owned(), Value::String(marker));
                Ok(ModifyRequestResult {
                    patch: None,
                    cache: None,
                    request: Some(request),
                    response: None,
                })
            }
            None => Ok(ModifyRequestResult {
                patch: None,
                cache: None,
                request: None,
                response: Some(busy()),
            }),
        }
    }

    /// Releases the request's slot; the response is left as it is.
    async fn modify_response(
        &self,
        params: ModifyResponseParams,
    ) -> Result<ModifyResponseResult, HookError> {
        self.release(&params.request);
        Ok(ModifyResponseResult::default())
    }

    /// Releases the request's slot; the error response is left as it is.
    async fn modify_error_response(
        &self,
        params: ModifyErrorResponseParams,
    ) -> Result<ModifyResponseResult, HookError> {
        self.release(&params.request);
        Ok(ModifyResponseResult::default())
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;
    use gatekeeper_plugin_sdk::{header, ProxyError, MODIFIER_HOOKS};
    use serde_json::json;

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

    async fn plugin(pairs: &[(&str, Value)]) -> (TrafficShaping, Arc<ManualClock>) {
        let clock = Arc::new(ManualClock(Mutex::new(Instant::now())));
        let plugin = TrafficShaping::with_clock(clock.clone());
        plugin.configure(config(pairs)).await.unwrap();
        (plugin, clock)
    }

    fn request(upstream: Option<&str>) -> HttpRequest {
        HttpRequest {
            method: "GET".into(),
            path: "/".into(),
            upstream: upstream.map(str::to_owned),
            ..HttpRequest::default()
        }
    }

    /// Ok(the marked request) or Err(the 503).
    async fn enter(plugin: &TrafficShaping, upstream: &str) -> Result<HttpRequest, HttpResponse> {
        let result = plugin
            .modify_request(ModifyRequestParams {
                request: request(Some(upstream)),
            })
            .await
            .unwrap();
        match (result.request, result.response) {
            (Some(request), None) => Ok(request),
            (None, Some(response)) => Err(response),
            other => panic!("unexpected result {other:?}"),
        }
    }

    fn response() -> HttpResponse {
        HttpResponse {
            status: 200,
            headers: vec![],
            body: None,
            body_base64: None,
            body_omitted: false,
        }
    }

    async fn leave(plugin: &TrafficShaping, request: HttpRequest) {
        let result = plugin
            .modify_response(ModifyResponseParams {
                request,
                response: response(),
            })
            .await
            .unwrap();
        assert!(result.response.is_none(), "responses are never changed");
    }

    #[test]
    fn declares_all_three_hooks() {
        assert_eq!(TrafficShaping::default().hooks(), MODIFIER_HOOKS);
    }

    #[test]
    fn config_is_validated() {
        let s = Settings::from_config(&config(&[
            ("limit", json!("3")),
            ("queue_ms", json!(0)),
            ("slot_timeout_ms", json!(5000)),
        ]))
        .unwrap();
        assert_eq!(s.limit, 3);
        assert_eq!(s.queue, Duration::ZERO);
        assert_eq!(s.slot_timeout, Duration::from_secs(5));
        let defaults = Settings::from_config(&Object::new()).unwrap();
        assert_eq!(defaults.limit, 10);
        assert_eq!(defaults.queue, Duration::from_millis(100));
        for (key, value) in [
            ("limit", json!(0)),
            ("limit", json!(1.5)),
            ("limit", json!(-1)),
            ("limit", json!("many")),
            ("queue_ms", json!(60_001)),
            ("slot_timeout_ms", json!(0)),
            ("slot_timeout_ms", json!(true)),
        ] {
            let err = Settings::from_config(&config(&[(key, value.clone())])).unwrap_err();
            assert!(err.message().contains(key), "{key}={value}: {err}");
        }
    }

    #[tokio::test]
    async fn over_the_limit_is_503_until_a_slot_is_released() {
        let (plugin, _clock) = plugin(&[("limit", json!(1)), ("queue_ms", json!(20))]).await;
        let first = enter(&plugin, "api").await.unwrap();
        assert!(first.context[CONTEXT_KEY].is_string());

        let refused = enter(&plugin, "api").await.unwrap_err();
        assert_eq!(refused.status, 503);
        assert_eq!(header(&refused.headers, "retry-after"), Some("1"));
        assert_eq!(refused.body.as_deref(), Some(BUSY_BODY));
        // Another upstream is not affected.
        assert!(enter(&plugin, "web").await.is_ok());
        // modify_response runs on the 503 too, with the unmarked request: it releases nothing.
        leave(&plugin, request(Some("api"))).await;
        assert!(enter(&plugin, "api").await.is_err());

        leave(&plugin, first.clone()).await;
        let third = enter(&plugin, "api").await.unwrap();
        // The first request's response seen again frees nothing.
        leave(&plugin, first).await;
        assert!(enter(&plugin, "api").await.is_err());
        drop(third);
    }

    #[tokio::test]
    async fn a_queued_request_gets_the_released_slot() {
        let (plugin, _clock) = plugin(&[("limit", json!(1)), ("queue_ms", json!(5000))]).await;
        let first = enter(&plugin, "api").await.unwrap();
        let (second, ()) = tokio::join!(enter(&plugin, "api"), async {
            tokio::time::sleep(Duration::from_millis(20)).await;
            leave(&plugin, first).await;
        });
        assert!(second.is_ok());
    }

    #[tokio::test]
    async fn error_responses_release_too() {
        let (plugin, _clock) = plugin(&[("limit", json!(1)), ("queue_ms", json!(0))]).await;
        let first = enter(&plugin, "api").await.unwrap();
        let result = plugin
            .modify_error_response(ModifyErrorResponseParams {
                request: first,
                response: HttpResponse {
                    status: 504,
                    headers: vec![],
                    body: Some("timeout\n".into()),
                    body_base64: None,
                    body_omitted: false,
                },
                error: ProxyError {
                    kind: "timeout".into(),
                    message: "backend timeout".into(),
                },
            })
            .await
            .unwrap();
        assert!(result.response.is_none());
        assert!(enter(&plugin, "api").await.is_ok());
    }

    #[tokio::test]
    async fn lost_responses_do_not_leak_slots() {
        let (plugin, clock) = plugin(&[
            ("limit", json!(1)),
            ("queue_ms", json!(0)),
            ("slot_timeout_ms", json!(1000)),
        ])
        .await;
        let lost = enter(&plugin, "api").await.unwrap();
        clock.advance(Duration::from_millis(999));
        assert!(enter(&plugin, "api").await.is_err());
        clock.advance(Duration::from_millis(1));
        let next = enter(&plugin, "api").await.unwrap();
        // The lost request's response finally arrives: it must not free `next`'s slot.
        leave(&plugin, lost).await;
        assert!(enter(&plugin, "api").await.is_err());
        // The heartbeat reclaims as well.
        clock.advance(Duration::from_secs(1));
        plugin.heartbeat().await.unwrap();
        assert!(enter(&plugin, "api").await.is_ok());
        drop(next);
    }

    #[tokio::test]
    async fn markers_of_others_and_requests_without_upstream_are_ignored() {
        let (plugin, _clock) = plugin(&[("limit", json!(1)), ("queue_ms", json!(0))]).await;
        let result = plugin
            .modify_request(ModifyRequestParams {
                request: request(None),
            })
            .await
            .unwrap();
        assert!(result.request.is_none() && result.response.is_none());

        let mine = enter(&plugin, "api").await.unwrap();
        let marker = mine.context[CONTEXT_KEY].as_str().unwrap().to_owned();
        let (_, id) = marker.rsplit_once(':').unwrap();
        for forged in [
            json!(format!("someone-else:{id}")),
            json!(id),
            json!(1),
            json!(format!("{marker}x")),
        ] {
            let mut other = request(Some("api"));
            other.context.insert(CONTEXT_KEY.into(), forged);
            leave(&plugin, other).await;
            assert!(enter(&plugin, "api").await.is_err());
        }
        leave(&plugin, mine).await;
        assert!(enter(&plugin, "api").await.is_ok());
    }
}
