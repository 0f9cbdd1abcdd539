//! Patch results through the proxy: a modifier answering `modify_request` or `modify_response`
//! with a `patch` (as JSON text, read as the port reads a plugin's answer) changes what the
//! backend and the client get; the next hook sees the patched request; a bad patch is a bad
//! result under the plugin's failure policy.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use common::*;
use futures::future::BoxFuture;
use gatekeeper_proxy::{FailurePolicy, HookError, Parsed, Plugin, RawCall};
use gatekeeper_rpc::methods::{ModifyRequest, ModifyRequestParams, ModifyRequestResult};
use gatekeeper_rpc::parts::RequestPart;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

/// A modifier that answers `hook` with this JSON result text, whatever the request; with
/// `parts`, it declared those request parts, and it records the params it was sent.
struct JsonAnswer {
    hook: &'static str,
    result: &'static str,
    policy: FailurePolicy,
    parts: Option<Arc<[RequestPart]>>,
    sent: Arc<Mutex<Vec<serde_json::Value>>>,
}

impl Plugin for JsonAnswer {
    fn name(&self) -> &str {
        "patcher"
    }

    fn has_hook(&self, hook: &str) -> bool {
        hook == self.hook
    }

    fn failure_policy(&self) -> FailurePolicy {
        self.policy
    }

    fn request_parts(&self, hook: &str) -> Option<Arc<[RequestPart]>> {
        self.parts.clone().filter(|_| hook == self.hook)
    }

    fn call_raw(&self, call: RawCall) -> BoxFuture<'static, Result<Parsed, HookError>> {
        let params = serde_json::from_str(call.params_json().get()).unwrap();
        self.sent.lock().unwrap().push(params);
        let parsed = call.parse(self.result).map_err(|e| HookError::BadResult {
            what: e.to_string(),
        });
        Box::pin(async move { parsed })
    }
}

fn answering(hook: &'static str, result: &'static str, policy: FailurePolicy) -> Arc<dyn Plugin> {
    Arc::new(JsonAnswer {
        hook,
        result,
        policy,
        parts: None,
        sent: Arc::default(),
    })
}

/// A backend answering its request's method, URI and every header, one `name: value` a line
/// (names sorted, values in order).
async fn start_echo_backend() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let service = service_fn(|req: http::Request<Incoming>| async move {
                    let mut lines: Vec<String> = req
                        .headers()
                        .iter()
                        .map(|(n, v)| format!("{n}: {}", v.to_str().unwrap_or("?")))
                        .collect();
                    lines.sort_by(|a, b| a.split(':').next().cmp(&b.split(':').next()));
                    let body = format!("{} {}\n{}\n", req.method(), req.uri(), lines.join("\n"));
                    let mut response = http::Response::new(Full::new(Bytes::from(body)));
                    response
                        .headers_mut()
                        .insert("server", http::HeaderValue::from_static("echo"));
                    Ok::<_, Infallible>(response)
                });
                let _ = http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    addr
}

async fn proxy_with(modifiers: Vec<Arc<dyn Plugin>>) -> TestProxy {
    let backend_addr = start_echo_backend().await;
    let proxy = start_proxy(modifiers).await;
    proxy
        .registry
        .add_upstream(upstream("api", "api", Some(2000)))
        .unwrap();
    proxy
        .registry
        .add_backend("api", backend("b1", backend_addr))
        .unwrap();
    proxy
}

const CLOSED: FailurePolicy = FailurePolicy::Closed { status: 503 };

const REQUEST_PATCH: &str = r#"{"patch": {
    "set_headers": {"x-set": "s", "x-keep": ["k1", "k2"], "keep-alive": "timeout=5"},
    "append_headers": [["x-multi", "b"]],
    "remove_headers": ["x-drop"],
    "query": "z=1",
    "context": {"user": "alice"}
}}"#;

#[tokio::test]
async fn a_request_patch_changes_only_the_named_headers_and_reaches_the_next_hook() {
    let seen: Arc<Mutex<Vec<ModifyRequestParams>>> = Arc::default();
    let recorder = {
        let seen = seen.clone();
        FakePlugin::new("recorder", CLOSED)
            .on::<ModifyRequest>(move |params| {
                seen.lock().unwrap().push(params);
                Box::pin(async { Ok(ModifyRequestResult::unchanged()) })
            })
            .build()
    };
    let proxy = proxy_with(vec![
        answering("modify_request", REQUEST_PATCH, CLOSED),
        recorder,
    ])
    .await;
    let headers = [
        ("x-drop", "1"),
        ("x-keep", "k"),
        ("x-multi", "a"),
        ("x-other", "o"),
    ];
    let (status, _, body) = send(proxy.addr, "GET", "/api/x?q=1", &headers, "").await;
    assert_eq!(status, 200, "{body}");
    let lines: Vec<&str> = body.lines().collect();
    assert_eq!(lines[0], "GET /x?z=1", "{body}");
    for expected in [
        "x-keep: k1",
        "x-keep: k2",
        "x-multi: a",
        "x-multi: b",
        "x-other: o",
        "x-set: s",
    ] {
        assert!(lines.contains(&expected), "{expected} in {body}");
    }
    assert!(!body.contains("x-drop"), "{body}");
    assert!(
        !body.contains("keep-alive"),
        "hop-by-hop headers stay out: {body}"
    );

    let seen = seen.lock().unwrap();
    let next = &seen[0].request;
    assert_eq!(next.context.get("user"), Some(&serde_json::json!("alice")));
    assert_eq!(next.query.as_deref(), Some("z=1"));
    let header = |name: &str| gatekeeper_rpc::types::header(&next.headers, name);
    assert_eq!(header("x-set"), Some("s"));
    assert_eq!(header("x-drop"), None);
}

#[tokio::test]
async fn a_bad_patch_is_a_bad_result_under_the_failure_policy() {
    for bad in [
        r#"{"patch": {"set_headers": {"bad name": "x"}}}"#,
        r#"{"patch": {"headers": []}}"#,
        r#"{"patch": {}, "request": {"method": "GET", "path": "/"}}"#,
    ] {
        let proxy = proxy_with(vec![answering("modify_request", bad, CLOSED)]).await;
        let (status, _, body) = send(proxy.addr, "GET", "/api/x", &[], "").await;
        assert_eq!(status, 503, "{bad}: {body}");
        assert!(body.contains("patcher"), "{body}");

        let open = answering("modify_request", bad, FailurePolicy::Open);
        let proxy = proxy_with(vec![open]).await;
        let (status, _, body) = send(proxy.addr, "GET", "/api/x", &[("x-a", "1")], "").await;
        assert_eq!(status, 200, "{bad}: fail-open forwards unchanged: {body}");
        assert!(body.contains("x-a: 1"), "{body}");
    }
}

#[tokio::test]
async fn a_response_patch_sets_the_status_and_headers_and_keeps_the_body() {
    let patch = r#"{"patch": {"status": 203, "set_headers": {"x-resp": "1"},
        "append_headers": [["x-resp", "2"]], "remove_headers": ["server"]}}"#;
    let proxy = proxy_with(vec![answering("modify_response", patch, CLOSED)]).await;
    let (status, headers, body) = send(proxy.addr, "GET", "/api/x", &[], "").await;
    assert_eq!(status, 203, "{body}");
    let values: Vec<_> = headers.get_all("x-resp").iter().collect();
    assert_eq!(values, ["1", "2"]);
    assert!(!headers.contains_key("server"));
    assert!(body.starts_with("GET /x\n"), "{body}");

    let bad = r#"{"patch": {"status": 1000}}"#;
    let proxy = proxy_with(vec![answering("modify_response", bad, CLOSED)]).await;
    let (status, _, _) = send(proxy.addr, "GET", "/api/x", &[], "").await;
    assert_eq!(status, 503);
}

#[tokio::test]
async fn a_hook_that_declared_its_parts_is_sent_only_those_and_answers_with_a_patch() {
    let parts: Arc<[RequestPart]> = Arc::from(vec![RequestPart::Header("authorization".into())]);
    let sent: Arc<Mutex<Vec<serde_json::Value>>> = Arc::default();
    let plugin = Arc::new(JsonAnswer {
        hook: "modify_request",
        result: r#"{"patch": {"set_headers": {"x-user": "alice"}}}"#,
        policy: CLOSED,
        parts: Some(parts.clone()),
        sent: sent.clone(),
    });
    let proxy = proxy_with(vec![plugin]).await;
    let headers = [("authorization", "Bearer t"), ("x-other", "o")];
    let (status, _, body) = send(proxy.addr, "GET", "/api/x?q=1", &headers, "").await;
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("x-user: alice"), "{body}");
    assert!(
        body.contains("x-other: o"),
        "the headers not sent are kept: {body}"
    );
    assert_eq!(
        sent.lock().unwrap()[0],
        serde_json::json!({"request": {"method": "GET", "path": "/api/x",
            "headers": [["authorization", "Bearer t"]]}})
    );

    // A whole request from such a hook is a bad result.
    let whole = Arc::new(JsonAnswer {
        hook: "modify_request",
        result: r#"{"request": {"method": "GET", "path": "/api/x"}}"#,
        policy: CLOSED,
        parts: Some(parts),
        sent: Arc::default(),
    });
    let proxy = proxy_with(vec![whole]).await;
    let (status, _, body) = send(proxy.addr, "GET", "/api/x", &headers, "").await;
    assert_eq!(status, 503, "{body}");
}
