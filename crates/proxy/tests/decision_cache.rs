//! Decision caching through the whole proxy: a fake modifier that counts its calls answers with
//! `cache` instructions; requests with the same key get its decision without a call.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::*;
use futures::future::BoxFuture;
use gatekeeper_proxy::{DecisionCache, FailurePolicy, HookError, Parsed, Plugin, RawCall};
use gatekeeper_rpc::methods::{CacheKeyPart, ModifyRequest, ModifyRequestResult};
use gatekeeper_rpc::types::{header, set_header, HttpResponse};

const CLOSED: FailurePolicy = FailurePolicy::Closed { status: 503 };

/// A token check: `authorization: good` passes with `x-added: user-good`, anything else is a
/// 401; both cached for a minute by the Authorization header. Counts its calls.
fn token_check(calls: Arc<AtomicUsize>, cache: Arc<DecisionCache>) -> Arc<dyn Plugin> {
    FakePlugin::new("auth", CLOSED)
        .with_decision_cache(cache)
        .on::<ModifyRequest>(move |mut params| {
            calls.fetch_add(1, Ordering::SeqCst);
            Box::pin(async move {
                let request = &mut params.request;
                let result = if header(&request.headers, "authorization") == Some("good") {
                    set_header(&mut request.headers, "x-added", "user-good");
                    ModifyRequestResult::forward(params.request)
                } else {
                    ModifyRequestResult::respond(HttpResponse::new(401, Vec::new()))
                };
                Ok(result.cached(
                    Duration::from_secs(60),
                    [CacheKeyPart::header("Authorization")],
                ))
            })
        })
        .build()
}

async fn get_with_token(proxy: &TestProxy, path: &str, token: &str) -> Answer {
    send(proxy.addr, "GET", path, &[("authorization", token)], "").await
}

#[tokio::test]
async fn a_cached_decision_is_replayed_without_calling_the_plugin() {
    let calls = Arc::new(AtomicUsize::new(0));
    let cache = Arc::new(DecisionCache::default());
    let (proxy, hits) = setup(vec![token_check(calls.clone(), cache.clone())]).await;

    let (status, _, body) = get_with_token(&proxy, "/api/first", "good").await;
    assert_eq!(status, 200);
    assert!(body.starts_with("GET /first\n"), "{body}");
    assert!(body.contains("x-added=user-good"), "{body}");
    let (status, _, body) = get_with_token(&proxy, "/api/second?q=1", "good").await;
    assert_eq!(status, 200);
    assert!(
        body.starts_with("GET /second?q=1\n"),
        "the request keeps its own path: {body}"
    );
    assert!(body.contains("x-added=user-good"), "{body}");
    assert_eq!(
        calls.load(Ordering::SeqCst),
        1,
        "the second request made no call"
    );

    for _ in 0..3 {
        let (status, _, _) = get_with_token(&proxy, "/api/x", "bad").await;
        assert_eq!(status, 401);
    }
    assert_eq!(calls.load(Ordering::SeqCst), 2, "the 401 is replayed");
    assert_eq!(
        hits.load(Ordering::SeqCst),
        2,
        "401s never reach the backend"
    );

    let stats = cache.stats();
    assert_eq!((stats.hits, stats.misses, stats.entries), (3, 2, 2));
    cache.clear();
    let (status, _, _) = get_with_token(&proxy, "/api/x", "good").await;
    assert_eq!(status, 200);
    assert_eq!(
        calls.load(Ordering::SeqCst),
        3,
        "a cleared cache calls again"
    );
}

/// Answers `modify_request` with a fixed JSON text, parsed as a real plugin's answer is.
struct RawAnswer(&'static str);

impl Plugin for RawAnswer {
    fn name(&self) -> &str {
        "raw"
    }
    fn has_hook(&self, hook: &str) -> bool {
        hook == "modify_request"
    }
    fn failure_policy(&self) -> FailurePolicy {
        CLOSED
    }
    fn decision_cache(&self) -> Option<&DecisionCache> {
        None
    }
    fn call_raw(&self, call: RawCall) -> BoxFuture<'static, Result<Parsed, HookError>> {
        let parsed = call.parse(self.0).map_err(|e| HookError::BadResult {
            what: e.to_string(),
        });
        Box::pin(async move { parsed })
    }
}

#[tokio::test]
async fn a_cache_of_the_wrong_shape_is_a_bad_result() {
    let (proxy, hits) = setup(vec![Arc::new(RawAnswer(
        r#"{"cache": {"ttl_ms": 1000, "key": ["cookie"]}}"#,
    ))])
    .await;
    let (status, _, body) = get(proxy.addr, "/api/x", None).await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(hits.load(Ordering::SeqCst), 0);
}
