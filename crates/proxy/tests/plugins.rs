//! End-to-end tests of router and loadbalancer plugins (test implementations of the hooks).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use common::*;
use futures::future::BoxFuture;
use gatekeeper_proxy::{FailurePolicy, HookError, Parsed, Plugin, RawCall};
use gatekeeper_rpc::methods::{
    GetBackend, GetBackendParams, GetBackendResult, Method, RouteRequest, RouteRequestParams,
    RouteRequestResult,
};
use gatekeeper_rpc::types::{header, set_header};

const CLOSED: FailurePolicy = FailurePolicy::Closed { status: 503 };

/// What the test router does.
#[derive(Clone, Copy)]
enum Routing {
    /// Upstream from `x-route`; `x-strip: yes` strips the first segment; adds `x-added: routed`.
    ByHeader,
    /// Every call fails.
    Fail,
}

struct TestRouter {
    routing: Routing,
    available: bool,
    policy: FailurePolicy,
    calls: Arc<AtomicUsize>,
}

impl Plugin for TestRouter {
    fn name(&self) -> &str {
        "test-router"
    }

    fn is_available(&self) -> bool {
        self.available
    }

    fn failure_policy(&self) -> FailurePolicy {
        self.policy
    }

    fn has_hook(&self, hook: &str) -> bool {
        hook == RouteRequest::NAME
    }

    fn call_raw(&self, call: RawCall) -> BoxFuture<'static, Result<Parsed, HookError>> {
        match call.method() {
            RouteRequest::NAME => typed::<RouteRequest>(call, |p| self.route(p)),
            _ => Box::pin(async { Err(error_answer("not a hook of this fake")) }),
        }
    }
}

impl TestRouter {
    fn route(
        &self,
        mut params: RouteRequestParams,
    ) -> BoxFuture<'static, Result<RouteRequestResult, HookError>> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        let routing = self.routing;
        Box::pin(async move {
            let request = &mut params.request;
            assert_eq!(
                request.upstream, None,
                "the router sees an unrouted request"
            );
            match routing {
                Routing::Fail => Err(error_answer("router broke")),
                Routing::ByHeader => {
                    let upstream = header(&request.headers, "x-route").map(str::to_string);
                    let prefixless_path = (header(&request.headers, "x-strip") == Some("yes"))
                        .then(|| {
                            let rest = request.path.trim_start_matches('/');
                            format!("/{}", rest.split_once('/').map_or("", |(_, r)| r))
                        });
                    set_header(&mut request.headers, "x-added", "routed");
                    Ok(RouteRequestResult {
                        upstream,
                        prefixless_path,
                        request: Some(params.request),
                    })
                }
            }
        })
    }
}

fn router(routing: Routing, available: bool, policy: FailurePolicy) -> Arc<TestRouter> {
    Arc::new(TestRouter {
        routing,
        available,
        policy,
        calls: Arc::default(),
    })
}

/// A proxy (configured by `configure`) with upstreams `api` (prefix `api`, backend `b1`) and
/// `web` (prefix `web`, backends `w1` and `w2`).
async fn two_upstreams(
    configure: impl FnOnce(gatekeeper_proxy::Proxy) -> gatekeeper_proxy::Proxy,
) -> TestProxy {
    let (proxy, _) = setup_with(vec![], configure).await;
    let hits = Arc::new(AtomicUsize::new(0));
    let w1 = start_named_backend("w1", hits.clone()).await;
    let w2 = start_named_backend("w2", hits).await;
    proxy
        .registry
        .add_upstream(upstream("web", "web", Some(500)))
        .unwrap();
    proxy
        .registry
        .add_backend("web", backend("w1", w1))
        .unwrap();
    proxy
        .registry
        .add_backend("web", backend("w2", w2))
        .unwrap();
    proxy
}

#[tokio::test]
async fn router_routes_by_header() {
    let r = router(Routing::ByHeader, true, CLOSED);
    let hook: Arc<dyn Plugin> = r.clone();
    let proxy = two_upstreams(|p| p.with_router(hook)).await;
    // `/api/...` would go to `api` with the built-in router; the plugin sends it to `web`,
    // with the full path (no prefixless_path) and its changed headers.
    let (status, headers, body) =
        send(proxy.addr, "GET", "/api/x?q=1", &[("x-route", "web")], "").await;
    assert_eq!(status, 200, "{body}");
    assert!(headers["x-backend-name"].to_str().unwrap().starts_with('w'));
    assert!(body.starts_with("GET /api/x?q=1\n"), "{body}");
    assert!(body.contains("x-added=routed"), "{body}");
    // prefixless_path is the backend path.
    let h = [("x-route", "api"), ("x-strip", "yes")];
    let (status, headers, body) = send(proxy.addr, "GET", "/any/y?z", &h, "").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(headers["x-backend-name"], "b1");
    assert!(body.starts_with("GET /y?z\n"), "{body}");
    // No upstream, or an unknown one: 404.
    let (status, _, body) = send(proxy.addr, "GET", "/api/x", &[], "").await;
    assert_eq!((status.as_u16(), body.as_str()), (404, "no route\n"));
    let (status, _, _) = send(proxy.addr, "GET", "/api/x", &[("x-route", "nope")], "").await;
    assert_eq!(status, 404);
    assert_eq!(r.calls.load(Ordering::SeqCst), 4);
}

#[tokio::test]
async fn failing_router_open_falls_back_closed_answers() {
    let r = router(Routing::Fail, true, FailurePolicy::Open);
    let hook: Arc<dyn Plugin> = r.clone();
    let proxy = two_upstreams(|p| p.with_router(hook)).await;
    let (status, headers, body) = send(proxy.addr, "GET", "/api/x", &[], "").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(headers["x-backend-name"], "b1");
    assert!(
        body.starts_with("GET /x\n"),
        "built-in routing strips the prefix: {body}"
    );
    assert_eq!(r.calls.load(Ordering::SeqCst), 1);

    let hook: Arc<dyn Plugin> = router(Routing::Fail, true, CLOSED);
    let proxy = two_upstreams(|p| p.with_router(hook)).await;
    let (status, _, body) = send(proxy.addr, "GET", "/api/x", &[], "").await;
    assert_eq!(status, 503);
    assert!(body.contains("test-router"), "{body}");
}

#[tokio::test]
async fn unavailable_router_uses_the_built_in_router() {
    let r = router(Routing::ByHeader, false, FailurePolicy::Open);
    let hook: Arc<dyn Plugin> = r.clone();
    let proxy = two_upstreams(|p| p.with_router(hook)).await;
    let (status, headers, body) =
        send(proxy.addr, "GET", "/api/x", &[("x-route", "web")], "").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(headers["x-backend-name"], "b1");
    assert_eq!(
        r.calls.load(Ordering::SeqCst),
        0,
        "an unavailable plugin is not called"
    );

    let hook: Arc<dyn Plugin> = router(
        Routing::ByHeader,
        false,
        FailurePolicy::Closed { status: 502 },
    );
    let proxy = two_upstreams(|p| p.with_router(hook)).await;
    let (status, _, _) = send(proxy.addr, "GET", "/api/x", &[], "").await;
    assert_eq!(status, 502);
}

/// A loadbalancer answering with the backend named in `x-pick` (`none` → no backend), or
/// failing without that header.
struct TestBalancer {
    available: bool,
    policy: FailurePolicy,
    calls: Arc<AtomicUsize>,
}

impl Plugin for TestBalancer {
    fn name(&self) -> &str {
        "test-lb"
    }

    fn is_available(&self) -> bool {
        self.available
    }

    fn failure_policy(&self) -> FailurePolicy {
        self.policy
    }

    fn has_hook(&self, hook: &str) -> bool {
        hook == GetBackend::NAME
    }

    fn call_raw(&self, call: RawCall) -> BoxFuture<'static, Result<Parsed, HookError>> {
        match call.method() {
            GetBackend::NAME => typed::<GetBackend>(call, |p| self.get_backend(p)),
            _ => Box::pin(async { Err(error_answer("not a hook of this fake")) }),
        }
    }
}

impl TestBalancer {
    fn get_backend(
        &self,
        params: GetBackendParams,
    ) -> BoxFuture<'static, Result<GetBackendResult, HookError>> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        Box::pin(async move {
            assert_eq!(
                params.request.upstream.as_deref(),
                Some(params.upstream_id.as_str())
            );
            match header(&params.request.headers, "x-pick") {
                None => Err(error_answer("no x-pick")),
                Some("none") => Ok(GetBackendResult { backend_id: None }),
                Some(id) => Ok(GetBackendResult {
                    backend_id: Some(id.to_string()),
                }),
            }
        })
    }
}

fn balancer(available: bool, policy: FailurePolicy) -> Arc<TestBalancer> {
    Arc::new(TestBalancer {
        available,
        policy,
        calls: Arc::default(),
    })
}

#[tokio::test]
async fn loadbalancer_chooses_the_backend() {
    let lb = balancer(true, CLOSED);
    let hook: Arc<dyn Plugin> = lb.clone();
    let proxy = two_upstreams(|p| p.with_loadbalancer(hook)).await;
    for _ in 0..5 {
        let (status, headers, body) =
            send(proxy.addr, "GET", "/web/x", &[("x-pick", "w2")], "").await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(headers["x-backend-name"], "w2");
    }
    let (status, _, body) = send(proxy.addr, "GET", "/web/x", &[("x-pick", "none")], "").await;
    assert_eq!(
        (status.as_u16(), body.as_str()),
        (503, "no backend available\n")
    );
    // An id the upstream does not have is a hook failure: fail-closed answers 503.
    let (status, _, body) = send(proxy.addr, "GET", "/web/x", &[("x-pick", "b1")], "").await;
    assert_eq!(status, 503);
    assert!(body.contains("test-lb"), "{body}");
    assert_eq!(lb.calls.load(Ordering::SeqCst), 7);
}

#[tokio::test]
async fn failing_or_unavailable_loadbalancer_open_uses_the_built_in() {
    let hook: Arc<dyn Plugin> = balancer(true, FailurePolicy::Open);
    let proxy = two_upstreams(|p| p.with_loadbalancer(hook)).await;
    let (status, _, body) = send(proxy.addr, "GET", "/web/x", &[("x-pick", "zz")], "").await;
    assert_eq!(status, 200, "unknown id, fail-open: {body}");
    let (status, _, body) = send(proxy.addr, "GET", "/api/x", &[], "").await;
    assert_eq!(status, 200, "hook error, fail-open: {body}");

    let lb = balancer(false, FailurePolicy::Open);
    let hook: Arc<dyn Plugin> = lb.clone();
    let proxy = two_upstreams(|p| p.with_loadbalancer(hook)).await;
    let (status, _, _) = send(proxy.addr, "GET", "/web/x", &[("x-pick", "none")], "").await;
    assert_eq!(status, 200);
    assert_eq!(lb.calls.load(Ordering::SeqCst), 0);

    let hook: Arc<dyn Plugin> = balancer(false, FailurePolicy::Closed { status: 500 });
    let proxy = two_upstreams(|p| p.with_loadbalancer(hook)).await;
    let (status, _, _) = send(proxy.addr, "GET", "/web/x", &[], "").await;
    assert_eq!(status, 500);
}

#[tokio::test]
async fn round_robin_upstream_alternates() {
    let proxy = two_upstreams(|p| p).await;
    let mut rr = upstream("rr", "rr", Some(500));
    rr.balancer = Some("round_robin".into());
    proxy.registry.add_upstream(rr).unwrap();
    let hits = Arc::new(AtomicUsize::new(0));
    for name in ["r1", "r2"] {
        let addr = start_named_backend(name, hits.clone()).await;
        proxy
            .registry
            .add_backend("rr", backend(name, addr))
            .unwrap();
    }
    let mut names = Vec::new();
    for _ in 0..4 {
        let (_, headers, _) = send(proxy.addr, "GET", "/rr/x", &[], "").await;
        names.push(headers["x-backend-name"].to_str().unwrap().to_string());
    }
    assert_ne!(names[0], names[1]);
    assert_eq!(names[0], names[2]);
    assert_eq!(names[1], names[3]);
}
