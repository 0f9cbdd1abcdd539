//! End-to-end tests: a tiny hyper backend and the proxy, both on 127.0.0.1.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use common::*;
use futures::future::BoxFuture;
use gatekeeper_proxy::{
    FailurePolicy, HookError, ListenerConfig, Parsed, Plugin, Proxy, ProxyConfig, RawCall, Registry,
};
use gatekeeper_rpc::methods::{
    Method, ModifyErrorResponse, ModifyErrorResponseParams, ModifyRequest, ModifyRequestParams,
    ModifyRequestResult, ModifyResponse, ModifyResponseParams, ModifyResponseResult,
};
use gatekeeper_rpc::types::{set_header, HttpResponse};

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

fn modifier(name: &'static str, behaviour: Behaviour, policy: FailurePolicy) -> Arc<dyn Plugin> {
    Arc::new(TestModifier {
        name,
        behaviour,
        policy,
    })
}

impl Plugin for TestModifier {
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

impl TestModifier {
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
                        patch: None,
                        cache: None,
                        request: Some(params.request),
                        response: None,
                    })
                }
                Behaviour::Deny => Ok(ModifyRequestResult {
                    patch: None,
                    cache: None,
                    request: None,
                    response: Some(HttpResponse {
                        status: 401,
                        headers: vec![("www-authenticate".into(), "Bearer".into())],
                        body: Some("denied".into()),
                        body_base64: None,
                        body_omitted: false,
                    }),
                }),
                _ => Err(error_answer("boom")),
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
                patch: None,
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
                patch: None,
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
