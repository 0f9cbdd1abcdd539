//! Tests of the modifier chain: bodies, response merging, decision caching.

use std::sync::Mutex;

use futures::future::BoxFuture;
use gatekeeper_rpc::types::decode_body;

use super::*;
use crate::decision_cache::DecisionCache;
use crate::port::{FailurePolicy, HookError, Parsed, RawCall};

type Answer<P, R> = Box<dyn Fn(&P) -> R + Send + Sync>;

/// A modifier that records the params of its calls and answers with closures.
struct Fake {
    wants_body: bool,
    on_request: Answer<ModifyRequestParams, ModifyRequestResult>,
    on_response: Answer<ModifyResponseParams, ModifyResponseResult>,
    requests: Mutex<Vec<ModifyRequestParams>>,
    responses: Mutex<Vec<ModifyResponseParams>>,
    cache: Option<DecisionCache>,
}

impl Fake {
    fn new(wants_body: bool) -> Self {
        Fake {
            wants_body,
            on_request: Box::new(|_| ModifyRequestResult::default()),
            on_response: Box::new(|_| ModifyResponseResult::default()),
            requests: Mutex::default(),
            responses: Mutex::default(),
            cache: None,
        }
    }
}

impl Plugin for Fake {
    fn name(&self) -> &str {
        "fake"
    }
    fn has_hook(&self, _hook: &str) -> bool {
        true
    }
    fn wants_body(&self, _hook: &str) -> bool {
        self.wants_body
    }
    fn failure_policy(&self) -> FailurePolicy {
        FailurePolicy::Open
    }
    fn decision_cache(&self) -> Option<&DecisionCache> {
        self.cache.as_ref()
    }
    fn call_raw(&self, call: RawCall) -> BoxFuture<'static, Result<Parsed, HookError>> {
        let answer = if call.is::<ModifyRequest>() {
            call.params::<ModifyRequest>().and_then(|params| {
                let result = (self.on_request)(&params);
                self.requests.lock().unwrap().push(params);
                call.answer::<ModifyRequest>(&result)
            })
        } else if call.is::<ModifyResponse>() {
            call.params::<ModifyResponse>().and_then(|params| {
                let result = (self.on_response)(&params);
                self.responses.lock().unwrap().push(params);
                call.answer::<ModifyResponse>(&result)
            })
        } else {
            call.answer::<ModifyErrorResponse>(&ModifyResponseResult::default())
        };
        Box::pin(async move { answer })
    }
}

fn request_with_body(body: &[u8]) -> HttpRequest {
    HttpRequest {
        method: "POST".into(),
        path: "/".into(),
        body_base64: Some(encode_body(body)),
        ..HttpRequest::default()
    }
}

#[tokio::test]
async fn the_request_body_goes_only_to_modifiers_that_want_it_and_absent_means_unchanged() {
    let mut blind = Fake::new(false);
    blind.on_request = Box::new(|p| ModifyRequestResult {
        patch: None,
        cache: None,
        request: Some(p.request.clone()),
        response: None,
    });
    let blind = Arc::new(blind);
    let mut reader = Fake::new(true);
    reader.on_request = Box::new(|p| {
        let mut request = p.request.clone();
        let body = decode_body(request.body_base64.as_deref().unwrap()).unwrap();
        request.body_base64 = Some(encode_body(&body.to_ascii_uppercase()));
        ModifyRequestResult {
            patch: None,
            cache: None,
            request: Some(request),
            response: None,
        }
    });
    let reader = Arc::new(reader);
    let chain = Chain::new(vec![blind.clone(), reader.clone()]);
    assert!(chain.wants_body(ModifyRequest::NAME));
    assert!(!Chain::new(vec![blind.clone()]).wants_body(ModifyRequest::NAME));

    let outcome = chain.modify_request(request_with_body(b"abc"), None).await;
    let RequestOutcome::Forward {
        request, changed, ..
    } = outcome
    else {
        panic!("expected Forward");
    };
    assert!(changed);
    assert_eq!(request.body_base64, Some(encode_body(b"ABC")));
    assert_eq!(blind.requests.lock().unwrap()[0].request.body_base64, None);
    assert_eq!(
        reader.requests.lock().unwrap()[0].request.body_base64,
        Some(encode_body(b"abc"))
    );
}

#[tokio::test]
async fn response_bodies_text_converts_for_readers_text_wins_and_requests_lose_their_body() {
    let mut blind = Fake::new(false);
    blind.on_response = Box::new(|p| {
        let mut response = p.response.clone();
        response.headers.push(("x-blind".into(), "1".into()));
        ModifyResponseResult {
            response: Some(response),
            patch: None,
        }
    });
    let blind = Arc::new(blind);
    let mut reader = Fake::new(true);
    reader.on_response = Box::new(|p| {
        // Sets a text body while echoing the body_base64 it got: the text wins.
        let mut response = p.response.clone();
        response.body = Some("replaced".into());
        ModifyResponseResult {
            response: Some(response),
            patch: None,
        }
    });
    let reader = Arc::new(reader);
    let chain = Chain::new(vec![blind.clone(), reader.clone()]);
    let mut response = HttpResponse::new(200, Vec::new());
    response.body = Some("original".into());

    let request = request_with_body(b"request body");
    let (out, changed) = chain
        .modify_response(&request, response, None)
        .await
        .unwrap();
    assert_eq!(changed, ResponseChange::Whole);
    assert_eq!(out.body.as_deref(), Some("replaced"));
    assert_eq!(out.body_base64, None);
    assert_eq!(out.headers, vec![("x-blind".into(), "1".into())]);

    let blind_saw = &blind.responses.lock().unwrap()[0];
    assert_eq!(blind_saw.response.body.as_deref(), Some("original"));
    assert_eq!(blind_saw.response.body_base64, None);
    assert_eq!(blind_saw.request.body_base64, None);
    let reader_saw = &reader.responses.lock().unwrap()[0];
    assert_eq!(reader_saw.response.body, None);
    assert_eq!(
        reader_saw.response.body_base64,
        Some(encode_body(b"original"))
    );
    assert_eq!(reader_saw.request.body_base64, None);
}

#[test]
fn merging_a_response_without_body_fields_keeps_the_current_body() {
    let mut current = HttpResponse::new(200, Vec::new());
    current.body_base64 = Some(encode_body(b"kept"));
    current.body_omitted = true;
    merge_response(&mut current, HttpResponse::new(201, Vec::new()));
    assert_eq!(current.status, 201);
    assert_eq!(current.body_base64, Some(encode_body(b"kept")));
    let mut replaced = HttpResponse::new(201, Vec::new());
    replaced.body_base64 = Some(String::new());
    merge_response(&mut current, replaced);
    assert_eq!(current.body_base64.as_deref(), Some(""));
    assert!(!current.body_omitted);
}

fn with_token(token: &str, path: &str) -> HttpRequest {
    HttpRequest {
        method: "GET".into(),
        path: path.into(),
        headers: vec![("authorization".into(), token.into())],
        ..HttpRequest::default()
    }
}

fn forward(outcome: RequestOutcome) -> HttpRequest {
    match outcome {
        RequestOutcome::Forward {
            request, changed, ..
        } => {
            assert!(changed);
            request
        }
        other => panic!("expected Forward, got {other:?}"),
    }
}

#[tokio::test]
async fn a_cached_change_is_replayed_on_the_next_request_without_a_call() {
    use gatekeeper_rpc::methods::{CacheInstruction, CacheKeyPart};
    let mut auth = Fake::new(false);
    auth.cache = Some(DecisionCache::default());
    auth.on_request = Box::new(|p| {
        let token = gatekeeper_rpc::types::header(&p.request.headers, "authorization");
        let cache = Some(CacheInstruction {
            ttl_ms: 60_000,
            key: vec![CacheKeyPart::Header("authorization".into())],
        });
        if token == Some("bad") {
            return ModifyRequestResult {
                patch: None,
                request: None,
                response: Some(HttpResponse::new(401, Vec::new())),
                cache,
            };
        }
        let mut request = p.request.clone();
        request
            .headers
            .push(("x-user".into(), format!("user-of-{}", token.unwrap_or("-"))));
        ModifyRequestResult {
            patch: None,
            request: Some(request),
            response: None,
            cache,
        }
    });
    let auth = Arc::new(auth);
    let chain = Chain::new(vec![auth.clone()]);
    let calls = || auth.requests.lock().unwrap().len();

    let first = forward(chain.modify_request(with_token("t1", "/a"), None).await);
    let second = forward(chain.modify_request(with_token("t1", "/b"), None).await);
    assert_eq!(calls(), 1, "the second request is answered from the cache");
    assert_eq!(second.path, "/b", "the old request's path is not replayed");
    assert_eq!(first.headers, second.headers);
    assert_eq!(
        gatekeeper_rpc::types::header(&second.headers, "x-user"),
        Some("user-of-t1")
    );

    let other = forward(chain.modify_request(with_token("t2", "/a"), None).await);
    assert_eq!(calls(), 2, "another token calls again");
    assert_eq!(
        gatekeeper_rpc::types::header(&other.headers, "x-user"),
        Some("user-of-t2")
    );

    for _ in 0..2 {
        let outcome = chain.modify_request(with_token("bad", "/"), None).await;
        let RequestOutcome::Respond { response, .. } = outcome else {
            panic!("expected Respond");
        };
        assert_eq!(response.status, 401);
    }
    assert_eq!(calls(), 3, "the 401 is replayed");
    let stats = auth.cache.as_ref().unwrap().stats();
    assert_eq!((stats.hits, stats.misses, stats.entries), (2, 3, 3));
}

#[tokio::test]
async fn without_a_cache_instruction_every_request_calls() {
    let auth = Arc::new(Fake {
        cache: Some(DecisionCache::default()),
        ..Fake::new(false)
    });
    let chain = Chain::new(vec![auth.clone()]);
    for _ in 0..3 {
        chain.modify_request(with_token("t1", "/"), None).await;
    }
    assert_eq!(auth.requests.lock().unwrap().len(), 3);
}

#[tokio::test]
async fn response_patches_compose_and_a_whole_response_wins() {
    use gatekeeper_rpc::patch::ResponsePatch;
    let patcher = |status: u16, name: &'static str| {
        let mut fake = Fake::new(false);
        fake.on_response = Box::new(move |_| {
            let patch: ResponsePatch = serde_json::from_value(serde_json::json!({
                "status": status, "append_headers": [[name, "1"]]
            }))
            .unwrap();
            ModifyResponseResult {
                response: None,
                patch: Some(patch),
            }
        });
        Arc::new(fake)
    };
    let chain = Chain::new(vec![patcher(201, "x-a"), patcher(202, "x-b")]);
    let request = request_with_body(b"");
    let (out, change) = chain
        .modify_response(&request, HttpResponse::new(200, Vec::new()), None)
        .await
        .unwrap();
    assert_eq!(out.status, 202);
    assert_eq!(
        change,
        ResponseChange::Patched {
            status: Some(202),
            headers: vec![
                HeaderChange::Append("x-a".into(), "1".into()),
                HeaderChange::Append("x-b".into(), "1".into()),
            ],
        }
    );

    let mut whole = Fake::new(false);
    whole.on_response = Box::new(|p| ModifyResponseResult {
        response: Some(p.response.clone()),
        patch: None,
    });
    let chain = Chain::new(vec![Arc::new(whole), patcher(201, "x-a")]);
    let (out, change) = chain
        .modify_response(&request, HttpResponse::new(200, Vec::new()), None)
        .await
        .unwrap();
    assert_eq!(change, ResponseChange::Whole);
    assert_eq!(out.headers, vec![("x-a".to_owned(), "1".to_owned())]);
}
