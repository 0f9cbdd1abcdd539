//! Changing a serving proxy's plugins: hooks swapped with a `HooksSwitch`, metrics exporters
//! swapped with `Metrics::set_exporters`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;
use futures::future::BoxFuture;
use gatekeeper_proxy::{
    FailurePolicy, HookError, Hooks, MetricKind, Metrics, MetricsConfig, MetricsExporter, Parsed,
    Plugin, RawCall,
};
use gatekeeper_rpc::methods::{
    GetBackend, GetBackendResult, Method, ModifyErrorResponse, ModifyErrorResponseParams,
    ModifyRequest, ModifyRequestParams, ModifyRequestResult, ModifyResponse, ModifyResponseParams,
    ModifyResponseResult, RouteRequest, RouteRequestResult,
};
use gatekeeper_rpc::metrics::{EventMetric, RequestMetric};
use gatekeeper_rpc::types::{set_header, HttpResponse, Object};
use tokio::sync::Notify;
use tokio::time::timeout;

/// Bound on every wait for something the test itself has set in motion.
const WAIT: Duration = Duration::from_secs(5);

/// Where a [`Tagger`]'s `modify_request` waits: it signals `entered`, then waits for `release`.
struct Gate {
    entered: Arc<Notify>,
    release: Arc<Notify>,
}

/// A modifier that sets `x-added: {name}` on requests (or, with `answer`, answers them itself
/// with a 203) and `x-tagged-by: {name}` on responses.
struct Tagger {
    name: &'static str,
    answer: bool,
    gate: Option<Gate>,
}

fn tagger(name: &'static str) -> Arc<dyn Plugin> {
    Arc::new(Tagger {
        name,
        answer: false,
        gate: None,
    })
}

fn hooks_with(modifier: Arc<dyn Plugin>) -> Hooks {
    Hooks {
        modifiers: vec![modifier],
        ..Hooks::default()
    }
}

impl Plugin for Tagger {
    fn name(&self) -> &str {
        self.name
    }
    fn has_hook(&self, hook: &str) -> bool {
        hook == "modify_request" || hook == "modify_response"
    }
    fn failure_policy(&self) -> FailurePolicy {
        FailurePolicy::Closed { status: 500 }
    }

    fn call_raw(&self, call: RawCall) -> BoxFuture<'static, Result<Parsed, HookError>> {
        match call.method() {
            ModifyRequest::NAME => typed::<ModifyRequest>(call, |p| self.modify_request(p)),
            ModifyResponse::NAME => typed::<ModifyResponse>(call, |p| self.modify_response(p)),
            ModifyErrorResponse::NAME => {
                typed::<ModifyErrorResponse>(call, |p| self.modify_error_response(p))
            }
            _ => Box::pin(async { Err(error_answer("not a hook of this fake")) }),
        }
    }
}

impl Tagger {
    fn modify_request(
        &self,
        mut params: ModifyRequestParams,
    ) -> BoxFuture<'static, Result<ModifyRequestResult, HookError>> {
        let (name, answer) = (self.name, self.answer);
        let gate = self
            .gate
            .as_ref()
            .map(|g| (g.entered.clone(), g.release.clone()));
        Box::pin(async move {
            if let Some((entered, release)) = gate {
                entered.notify_one();
                release.notified().await;
            }
            if answer {
                let mut response = HttpResponse::new(203, Default::default());
                response.body = Some(format!("answered by {name}"));
                return Ok(ModifyRequestResult {
                    patch: None,
                    cache: None,
                    request: None,
                    response: Some(response),
                });
            }
            set_header(&mut params.request.headers, "x-added", name);
            Ok(ModifyRequestResult {
                patch: None,
                cache: None,
                request: Some(params.request),
                response: None,
            })
        })
    }
    fn modify_response(
        &self,
        mut params: ModifyResponseParams,
    ) -> BoxFuture<'static, Result<ModifyResponseResult, HookError>> {
        let name = self.name;
        Box::pin(async move {
            set_header(&mut params.response.headers, "x-tagged-by", name);
            Ok(ModifyResponseResult {
                response: Some(params.response),
                patch: None,
            })
        })
    }
    fn modify_error_response(
        &self,
        _: ModifyErrorResponseParams,
    ) -> BoxFuture<'static, Result<ModifyResponseResult, HookError>> {
        Box::pin(async { Ok(ModifyResponseResult::default()) })
    }
}

/// A router plugin that finds no upstream for any request (404).
fn no_route() -> Arc<dyn Plugin> {
    FakePlugin::new("no-route", FailurePolicy::Closed { status: 500 })
        .on::<RouteRequest>(|_| Box::pin(async { Ok(RouteRequestResult::default()) }))
        .build()
}

/// A loadbalancer plugin that finds no backend for any request (503).
fn no_backend() -> Arc<dyn Plugin> {
    FakePlugin::new("no-backend", FailurePolicy::Closed { status: 500 })
        .on::<GetBackend>(|_| Box::pin(async { Ok(GetBackendResult::default()) }))
        .build()
}

fn tagged_by(headers: &http::HeaderMap) -> Option<&str> {
    headers.get("x-tagged-by").and_then(|v| v.to_str().ok())
}

#[tokio::test]
async fn new_requests_use_the_replaced_hooks() {
    let (proxy, _) = setup(vec![]).await;
    let (status, headers, body) = get(proxy.addr, "/api/x", None).await;
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("x-added=-"), "{body}");
    assert_eq!(tagged_by(&headers), None);

    let _ = proxy.hooks.replace(hooks_with(tagger("one")));
    let (status, headers, body) = get(proxy.addr, "/api/x", None).await;
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("x-added=one"), "{body}");
    assert_eq!(tagged_by(&headers), Some("one"));

    // A modifier answering by itself; its modify_response still runs.
    let _ = proxy.hooks.replace(hooks_with(Arc::new(Tagger {
        name: "two",
        answer: true,
        gate: None,
    })));
    let (status, headers, body) = get(proxy.addr, "/api/x", None).await;
    assert_eq!((status.as_u16(), body.as_str()), (203, "answered by two"));
    assert_eq!(tagged_by(&headers), Some("two"));

    // A router plugin, then a loadbalancer plugin.
    let _ = proxy.hooks.replace(Hooks {
        router: Some(no_route()),
        ..Hooks::default()
    });
    let (status, _, body) = get(proxy.addr, "/api/x", None).await;
    assert_eq!(status, 404, "{body}");
    let _ = proxy.hooks.replace(Hooks {
        loadbalancer: Some(no_backend()),
        ..Hooks::default()
    });
    let (status, _, body) = get(proxy.addr, "/api/x", None).await;
    assert_eq!(status, 503, "{body}");

    // No hooks at all: back to the plain behaviour (the fast path).
    let _ = proxy.hooks.replace(Hooks::default());
    let (status, headers, body) = get(proxy.addr, "/api/x", None).await;
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("x-added=-"), "{body}");
    assert_eq!(tagged_by(&headers), None);
}

#[tokio::test]
async fn a_request_in_flight_keeps_its_hooks() {
    let (entered, release) = (Arc::new(Notify::new()), Arc::new(Notify::new()));
    let gated = Arc::new(Tagger {
        name: "old",
        answer: false,
        gate: Some(Gate {
            entered: entered.clone(),
            release: release.clone(),
        }),
    });
    let (proxy, _) = setup(vec![gated]).await;
    let addr = proxy.addr;
    let first = tokio::spawn(async move { get(addr, "/api/first", None).await });
    timeout(WAIT, entered.notified())
        .await
        .expect("the first request reaches modify_request");

    let _ = proxy.hooks.replace(hooks_with(tagger("new")));
    // A new request gets the new hooks (and does not wait at the old modifier's gate).
    let (status, headers, body) = timeout(WAIT, get(addr, "/api/second", None))
        .await
        .expect("the second request is not held by the old hooks");
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("x-added=new"), "{body}");
    assert_eq!(tagged_by(&headers), Some("new"));

    // The first request finishes with the hooks it started with, modify_response included.
    release.notify_one();
    let (status, headers, body) = timeout(WAIT, first)
        .await
        .expect("the first request finishes")
        .unwrap();
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("GET /first"), "{body}");
    assert!(body.contains("x-added=old"), "{body}");
    assert_eq!(tagged_by(&headers), Some("old"));
}

/// Collects the paths of request records and the names of events it gets.
#[derive(Default)]
struct Collector {
    paths: Mutex<Vec<String>>,
    connect_us: Mutex<Vec<(String, u64)>>,
    events: Mutex<Vec<String>>,
}

impl Collector {
    fn paths(&self) -> Vec<String> {
        self.paths.lock().unwrap().clone()
    }
    fn events(&self) -> Vec<String> {
        self.events.lock().unwrap().clone()
    }
}

impl MetricsExporter for Collector {
    fn export_requests(&self, batch: Vec<RequestMetric>) -> BoxFuture<'static, ()> {
        for r in batch {
            let connect = r.phases.upstream_connect_us;
            self.connect_us
                .lock()
                .unwrap()
                .push((r.path.clone(), connect));
            self.paths.lock().unwrap().push(r.path);
        }
        Box::pin(async {})
    }
    fn export_events(&self, batch: Vec<EventMetric>) -> BoxFuture<'static, ()> {
        let names = batch.into_iter().map(|e| e.name);
        self.events.lock().unwrap().extend(names);
        Box::pin(async {})
    }
}

/// Takes only upstream records.
struct UpstreamOnly;

impl MetricsExporter for UpstreamOnly {
    fn wants(&self, kind: MetricKind) -> bool {
        kind == MetricKind::Upstream
    }
}

fn quick_flushes() -> MetricsConfig {
    MetricsConfig {
        flush_interval: Duration::from_millis(10),
        ..MetricsConfig::default()
    }
}

#[tokio::test]
async fn exporters_can_be_added_and_removed_while_serving() {
    let metrics = Metrics::new(quick_flushes(), vec![]);
    assert!(!metrics.is_enabled(), "no exporter wants anything yet");
    let m = metrics.clone();
    let (proxy, _) = setup_with(vec![], move |p| p.with_metrics(m)).await;
    let (status, _, _) = get(proxy.addr, "/api/one", None).await;
    assert_eq!(status, 200);

    let collector = Arc::new(Collector::default());
    metrics.set_exporters(vec![collector.clone()]);
    assert!(metrics.is_enabled() && metrics.wants(MetricKind::Request));
    let (status, _, _) = get(proxy.addr, "/api/two", None).await;
    assert_eq!(status, 200);
    eventually(|| {
        collector
            .paths()
            .contains(&"/api/two".to_string())
            .then_some(())
    })
    .await;
    // A backend first reached now gets a new connection, timed although no exporter wanted
    // request records when the proxy started.
    let hits = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let fresh = start_named_backend("fresh", hits).await;
    proxy
        .registry
        .add_upstream(upstream("fresh", "fresh", Some(500)))
        .unwrap();
    proxy
        .registry
        .add_backend("fresh", backend("f1", fresh))
        .unwrap();
    let (status, _, _) = get(proxy.addr, "/fresh/x", None).await;
    assert_eq!(status, 200);
    let connect = eventually(|| {
        let timings = collector.connect_us.lock().unwrap().clone();
        timings.into_iter().find(|(path, _)| path == "/fresh/x")
    })
    .await;
    assert!(connect.1 > 0, "a new connection was opened: {connect:?}");

    metrics.set_exporters(vec![]);
    assert!(!metrics.is_enabled());
    let (status, _, _) = get(proxy.addr, "/api/three", None).await;
    assert_eq!(status, 200);

    // Back to one exporter: records are delivered in order, so had `/api/three` been recorded
    // it would arrive no later than `/api/four`.
    metrics.set_exporters(vec![collector.clone()]);
    let (status, _, _) = get(proxy.addr, "/api/four", None).await;
    assert_eq!(status, 200);
    eventually(|| {
        collector
            .paths()
            .contains(&"/api/four".to_string())
            .then_some(())
    })
    .await;
    assert_eq!(collector.paths(), ["/api/two", "/fresh/x", "/api/four"]);
    metrics.shutdown().await;
    assert_eq!(metrics.dropped(), 0);
}

#[tokio::test]
async fn buffered_records_go_to_the_new_exporters() {
    let config = MetricsConfig {
        flush_interval: Duration::from_secs(3600),
        ..MetricsConfig::default()
    };
    let old = Arc::new(Collector::default());
    let metrics = Metrics::new(config, vec![old.clone()]);
    metrics.record_event("buffered", Object::new());
    let new = Arc::new(Collector::default());
    metrics.set_exporters(vec![new.clone()]);
    metrics.shutdown().await;
    assert_eq!(new.events(), ["buffered"]);
    assert!(old.events().is_empty());
}

#[tokio::test]
async fn a_kind_nobody_wanted_is_recorded_once_wanted() {
    let config = MetricsConfig {
        flush_interval: Duration::from_secs(3600),
        ..MetricsConfig::default()
    };
    let metrics = Metrics::new(config, vec![Arc::new(UpstreamOnly)]);
    assert!(!metrics.wants(MetricKind::Event) && metrics.wants(MetricKind::Upstream));
    metrics.record_event("unwanted", Object::new());
    let collector = Arc::new(Collector::default());
    metrics.set_exporters(vec![collector.clone()]);
    assert!(metrics.wants(MetricKind::Event));
    metrics.record_event("wanted", Object::new());
    metrics.shutdown().await;
    assert_eq!(collector.events(), ["wanted"]);
    assert_eq!(metrics.dropped(), 0);

    // A disabled handle stays disabled.
    let disabled = Metrics::disabled();
    disabled.set_exporters(vec![collector.clone()]);
    assert!(!disabled.is_enabled());
}
