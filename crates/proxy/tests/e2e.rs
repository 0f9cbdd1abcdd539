//! End-to-end tests: a tiny hyper backend and the proxy, both on 127.0.0.1.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::future::BoxFuture;
use gatekeeper_proxy::{
    FailurePolicy, HookError, ListenerConfig, Modifier, Proxy, ProxyConfig, Registry,
};
use gatekeeper_rpc::methods::{
    ModifyErrorResponseParams, ModifyRequestParams, ModifyRequestResult, ModifyResponseParams,
    ModifyResponseResult,
};
use gatekeeper_rpc::types::{set_header, Backend, HttpResponse, Upstream};
use http::{Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpListener;
use tokio::sync::oneshot;

/// A backend answering `METHOD URI` and a few request headers; sleeps on `/slow`.
async fn start_backend(hits: Arc<AtomicUsize>) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            let hits = hits.clone();
            tokio::spawn(async move {
                let service = service_fn(move |req: Request<Incoming>| {
                    hits.fetch_add(1, Ordering::SeqCst);
                    async move {
                        if req.uri().path() == "/slow" {
                            tokio::time::sleep(Duration::from_secs(3)).await;
                        }
                        let header = |n: &str| {
                            req.headers()
                                .get(n)
                                .and_then(|v| v.to_str().ok())
                                .unwrap_or("-")
                                .to_string()
                        };
                        let body = format!(
                            "{} {}\nhost={}\nx-added={}\nconnection={}",
                            req.method(),
                            req.uri(),
                            header("host"),
                            header("x-added"),
                            header("x-hop"),
                        );
                        let mut resp = http::Response::new(Full::new(Bytes::from(body)));
                        resp.headers_mut()
                            .insert("x-backend", http::HeaderValue::from_static("yes"));
                        Ok::<_, Infallible>(resp)
                    }
                });
                let _ = http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    addr
}

struct TestProxy {
    addr: SocketAddr,
    registry: Arc<Registry>,
    stop: Option<oneshot::Sender<()>>,
    done: tokio::task::JoinHandle<()>,
}

async fn start_proxy(modifiers: Vec<Arc<dyn Modifier>>) -> TestProxy {
    let registry = Arc::new(Registry::new());
    let config = ProxyConfig {
        listeners: vec![ListenerConfig {
            name: "http".into(),
            addr: "127.0.0.1:0".parse().unwrap(),
        }],
        ..ProxyConfig::default()
    };
    let bound = Proxy::new(config, registry.clone(), modifiers)
        .bind()
        .await
        .unwrap();
    let addr = bound.local_addrs()[0];
    let (tx, rx) = oneshot::channel::<()>();
    let done = tokio::spawn(bound.serve(async move {
        let _ = rx.await;
    }));
    TestProxy {
        addr,
        registry,
        stop: Some(tx),
        done,
    }
}

fn upstream(id: &str, prefix: &str, timeout_ms: Option<u64>) -> Upstream {
    Upstream {
        id: id.into(),
        name: String::new(),
        timeout_ms,
        protocols: vec![],
        hostnames: vec![format!("{id}.test")],
        prefixes: vec![prefix.into()],
        balancer: None,
        extra: Default::default(),
    }
}

fn backend(id: &str, addr: SocketAddr) -> Backend {
    Backend {
        id: id.into(),
        address: format!("http://{addr}"),
        extra: Default::default(),
    }
}

/// Sends a GET and returns status, headers and body text.
async fn get(
    proxy: SocketAddr,
    path: &str,
    host: Option<&str>,
) -> (StatusCode, http::HeaderMap, String) {
    let client = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    let mut req = Request::get(format!("http://{proxy}{path}"))
        .header("connection", "x-hop")
        .header("x-hop", "secret");
    if let Some(h) = host {
        req = req.header("host", h);
    }
    let resp = client
        .request(req.body(Full::default()).unwrap())
        .await
        .unwrap();
    let (parts, body) = resp.into_parts();
    let body = body.collect().await.unwrap().to_bytes();
    (
        parts.status,
        parts.headers,
        String::from_utf8_lossy(&body).into_owned(),
    )
}

/// A proxy with upstream `api` (prefix `api`) whose one backend is a live test backend.
async fn setup(modifiers: Vec<Arc<dyn Modifier>>) -> (TestProxy, Arc<AtomicUsize>) {
    let hits = Arc::new(AtomicUsize::new(0));
    let backend_addr = start_backend(hits.clone()).await;
    let proxy = start_proxy(modifiers).await;
    proxy
        .registry
        .add_upstream(upstream("api", "api", Some(500)))
        .unwrap();
    proxy
        .registry
        .add_backend("api", backend("b1", backend_addr))
        .unwrap();
    (proxy, hits)
}

#[tokio::test]
async fn prefix_routing_strips_prefix_and_keeps_host() {
    let (proxy, _) = setup(vec![]).await;
    let (status, headers, body) = get(proxy.addr, "/api/x?q=1", Some("client.example")).await;
    assert_eq!(status, 200, "{body}");
    assert!(body.starts_with("GET /x?q=1\n"), "{body}");
    assert!(body.contains("host=client.example"), "{body}");
    assert!(
        body.contains("connection=-"),
        "hop-by-hop header leaked: {body}"
    );
    assert_eq!(headers["x-backend"], "yes");
    let (_, _, body) = get(proxy.addr, "/api", None).await;
    assert!(body.starts_with("GET /\n"), "{body}");
    // Hostname routing (port stripped, case-insensitive), no prefix stripped.
    let (status, _, body) = get(proxy.addr, "/other/y", Some("API.test:8080")).await;
    assert_eq!(status, 200);
    assert!(body.starts_with("GET /other/y\n"), "{body}");
}

#[tokio::test]
async fn no_route_is_404() {
    let (proxy, hits) = setup(vec![]).await;
    let (status, _, body) = get(proxy.addr, "/nope/x", Some("unknown.test")).await;
    assert_eq!(status, 404);
    assert_eq!(body, "no route\n");
    assert_eq!(hits.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn no_backend_is_503() {
    let (proxy, _) = setup(vec![]).await;
    proxy
        .registry
        .add_upstream(upstream("empty", "empty", None))
        .unwrap();
    let (status, _, body) = get(proxy.addr, "/empty/x", None).await;
    assert_eq!(status, 503);
    assert_eq!(body, "no backend available\n");
}

#[tokio::test]
async fn dead_backend_is_502() {
    let (proxy, _) = setup(vec![]).await;
    let dead = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    proxy
        .registry
        .add_upstream(upstream("dead", "dead", None))
        .unwrap();
    proxy
        .registry
        .add_backend("dead", backend("d", dead))
        .unwrap();
    let (status, _, body) = get(proxy.addr, "/dead/x", None).await;
    assert_eq!(status, 502);
    assert_eq!(body, "backend unreachable\n");
}

#[tokio::test]
async fn slow_backend_is_504() {
    let (proxy, _) = setup(vec![]).await;
    let started = std::time::Instant::now();
    let (status, _, body) = get(proxy.addr, "/api/slow", None).await;
    assert_eq!(status, 504);
    assert_eq!(body, "backend timeout\n");
    assert!(started.elapsed() < Duration::from_secs(2));
}

/// What a test modifier does.
#[derive(Clone, Copy)]
enum Behaviour {
    AddHeader,
    Deny,
    Fail,
    AddResponseHeader,
    RewriteError,
}

struct TestModifier {
    name: &'static str,
    behaviour: Behaviour,
    policy: FailurePolicy,
}

fn modifier(name: &'static str, behaviour: Behaviour, policy: FailurePolicy) -> Arc<dyn Modifier> {
    Arc::new(TestModifier {
        name,
        behaviour,
        policy,
    })
}

impl Modifier for TestModifier {
    fn name(&self) -> &str {
        self.name
    }

    fn has_hook(&self, hook: &str) -> bool {
        match self.behaviour {
            Behaviour::AddHeader | Behaviour::Deny | Behaviour::Fail => hook == "modify_request",
            Behaviour::AddResponseHeader => hook == "modify_response",
            Behaviour::RewriteError => hook == "modify_error_response",
        }
    }

    fn failure_policy(&self) -> FailurePolicy {
        self.policy
    }

    fn modify_request(
        &self,
        mut params: ModifyRequestParams,
    ) -> BoxFuture<'static, Result<ModifyRequestResult, HookError>> {
        let behaviour = self.behaviour;
        Box::pin(async move {
            match behaviour {
                Behaviour::AddHeader => {
                    set_header(&mut params.request.headers, "x-added", "yes");
                    set_header(&mut params.request.headers, "bad header", "ignored");
                    Ok(ModifyRequestResult {
                        request: Some(params.request),
                        response: None,
                    })
                }
                Behaviour::Deny => Ok(ModifyRequestResult {
                    request: None,
                    response: Some(HttpResponse {
                        status: 401,
                        headers: vec![("www-authenticate".into(), "Bearer".into())],
                        body: Some("denied".into()),
                    }),
                }),
                _ => Err(HookError::new("boom")),
            }
        })
    }

    fn modify_response(
        &self,
        mut params: ModifyResponseParams,
    ) -> BoxFuture<'static, Result<ModifyResponseResult, HookError>> {
        Box::pin(async move {
            set_header(&mut params.response.headers, "x-resp", "1");
            Ok(ModifyResponseResult {
                response: Some(params.response),
            })
        })
    }

    fn modify_error_response(
        &self,
        mut params: ModifyErrorResponseParams,
    ) -> BoxFuture<'static, Result<ModifyResponseResult, HookError>> {
        Box::pin(async move {
            params.response.body = Some(format!("custom {}", params.error.kind));
            Ok(ModifyResponseResult {
                response: Some(params.response),
            })
        })
    }
}

const CLOSED: FailurePolicy = FailurePolicy::Closed { status: 503 };

#[tokio::test]
async fn modifier_adds_request_and_response_headers() {
    let (proxy, _) = setup(vec![
        modifier("add", Behaviour::AddHeader, CLOSED),
        modifier("resp", Behaviour::AddResponseHeader, CLOSED),
    ])
    .await;
    let (status, headers, body) = get(proxy.addr, "/api/x?q=1", None).await;
    assert_eq!(status, 200);
    assert!(body.starts_with("GET /x?q=1\n"), "{body}");
    assert!(body.contains("x-added=yes"), "{body}");
    assert!(body.contains("connection=-"), "{body}");
    assert_eq!(headers["x-resp"], "1");
    assert_eq!(headers["x-backend"], "yes");
}

#[tokio::test]
async fn modifier_answers_directly() {
    let (proxy, hits) = setup(vec![
        modifier("deny", Behaviour::Deny, CLOSED),
        modifier("add", Behaviour::AddHeader, CLOSED),
        modifier("resp", Behaviour::AddResponseHeader, CLOSED),
    ])
    .await;
    let (status, headers, body) = get(proxy.addr, "/api/x", None).await;
    assert_eq!(status, 401);
    assert_eq!(body, "denied");
    assert_eq!(headers["www-authenticate"], "Bearer");
    assert_eq!(
        headers["x-resp"], "1",
        "modify_response runs on direct answers"
    );
    assert_eq!(hits.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn fail_closed_modifier_answers_with_its_status() {
    let (proxy, hits) = setup(vec![modifier("authz", Behaviour::Fail, CLOSED)]).await;
    let (status, _, body) = get(proxy.addr, "/api/x", None).await;
    assert_eq!(status, 503);
    assert!(body.contains("authz"), "{body}");
    assert_eq!(hits.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn fail_open_modifier_is_skipped() {
    let (proxy, _) = setup(vec![
        modifier("flaky", Behaviour::Fail, FailurePolicy::Open),
        modifier("add", Behaviour::AddHeader, CLOSED),
    ])
    .await;
    let (status, _, body) = get(proxy.addr, "/api/x", None).await;
    assert_eq!(status, 200);
    assert!(body.contains("x-added=yes"), "{body}");
}

#[tokio::test]
async fn error_responses_go_through_modify_error_response() {
    let (proxy, _) = setup(vec![modifier("errors", Behaviour::RewriteError, CLOSED)]).await;
    let (status, _, body) = get(proxy.addr, "/nope", None).await;
    assert_eq!(status, 404);
    assert_eq!(body, "custom no_route");
    let (status, _, body) = get(proxy.addr, "/api/slow", None).await;
    assert_eq!(status, 504);
    assert_eq!(body, "custom timeout");
}

#[tokio::test]
async fn serve_stops_on_shutdown() {
    let (mut proxy, _) = setup(vec![]).await;
    let (status, _, _) = get(proxy.addr, "/api/x", None).await;
    assert_eq!(status, 200);
    let _ = proxy.stop.take().unwrap().send(());
    tokio::time::timeout(Duration::from_secs(5), &mut proxy.done)
        .await
        .expect("serve did not return")
        .unwrap();
    assert!(tokio::net::TcpStream::connect(proxy.addr).await.is_err());
}

#[tokio::test]
async fn bind_error_names_the_address() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap();
    let config = ProxyConfig {
        listeners: vec![ListenerConfig {
            name: "http".into(),
            addr,
        }],
        ..ProxyConfig::default()
    };
    let err = Proxy::new(config, Arc::new(Registry::new()), vec![])
        .bind()
        .await
        .unwrap_err();
    assert!(err.to_string().contains(&addr.to_string()), "{err}");
}
