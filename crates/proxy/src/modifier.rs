//! The modifier chain: the `Chain` calls the hooks of all modifiers (each a
//! [`Plugin`]) in their configured order, applying each one's
//! [`FailurePolicy`](crate::FailurePolicy) through the port ([`crate::port::policy`]) and, when
//! asked, timing every hook call.
//!
//! Bodies: a modifier that declared it wants the body of a hook ([`Plugin::wants_body`]) gets
//! it as `body_base64`; the others get none (a response's text `body`, set by a plugin or the
//! proxy, is sent to them as it is). What a modifier returns keeps the current body unless it
//! sets `body_base64` (or, on responses, `body`, which wins): "absent" means "unchanged". The
//! request body only travels in `modify_request`.

use std::future::Future;
use std::sync::Arc;
use std::time::Instant;

use gatekeeper_rpc::methods::{
    Method, ModifyErrorResponse, ModifyErrorResponseParams, ModifyRequest, ModifyRequestParams,
    ModifyRequestResult, ModifyResponse, ModifyResponseParams, ModifyResponseResult,
};
use gatekeeper_rpc::metrics::ModifierPhase;
use gatekeeper_rpc::types::{encode_body, HttpRequest, HttpResponse, ProxyError};

use crate::decision_cache::change::{Decision, RequestChange};
use crate::metrics::micros;
use crate::port::policy::{HookFailure, HookedPlugin};
use crate::port::Plugin;

/// The default of `max_plugin_body`: the largest body sent to a plugin (1 MiB).
pub const DEFAULT_MAX_PLUGIN_BODY: usize = 1024 * 1024;

/// The request as a modifier's hook gets it: without `body_base64` unless it wants the body.
fn request_for(request: &mut HttpRequest, wants_body: bool) -> HttpRequest {
    if wants_body {
        return request.clone();
    }
    let body = request.body_base64.take();
    let sent = request.clone();
    request.body_base64 = body;
    sent
}

/// The request as response hooks get it: the request body only travels in `modify_request`.
fn without_body(request: &HttpRequest) -> HttpRequest {
    let mut sent = request.clone();
    sent.body_base64 = None;
    sent
}

/// The response as a modifier's hook gets it: a modifier that wants the body gets it as
/// `body_base64` only (a text `body` converted); the others get no `body_base64`.
fn response_for(response: &HttpResponse, wants_body: bool) -> HttpResponse {
    let mut sent = HttpResponse::new(response.status, response.headers.clone());
    sent.body_omitted = response.body_omitted;
    if wants_body {
        sent.body_base64 = match &response.body {
            Some(text) => Some(encode_body(text.as_bytes())),
            None => response.body_base64.clone(),
        };
    } else {
        sent.body = response.body.clone();
    }
    sent
}

/// Takes a modifier's returned response as the current one: with neither body field, it keeps
/// the current body; `body` (text) wins over `body_base64`.
fn merge_response(current: &mut HttpResponse, mut new: HttpResponse) {
    match (&new.body, &new.body_base64) {
        (Some(_), _) => new.body_base64 = None,
        (None, Some(_)) => {}
        (None, None) => {
            new.body = current.body.take();
            new.body_base64 = current.body_base64.take();
        }
    }
    new.body_omitted = current.body_omitted && new.body.is_none() && new.body_base64.is_none();
    *current = new;
}

/// A `modify_request` result as a decision that can be replayed on another request.
fn decision_of(sent: &HttpRequest, result: &ModifyRequestResult) -> Decision {
    match (&result.response, &result.request) {
        (Some(response), _) => Decision::Respond(response.clone()),
        (None, Some(returned)) => Decision::Change(RequestChange::between(sent, returned)),
        (None, None) => Decision::Unchanged,
    }
}

/// What the `modify_request` hooks decided.
#[derive(Debug)]
pub(crate) enum RequestOutcome {
    /// Forward the request (`changed` is false when no modifier returned a request).
    Forward {
        /// The request as the last modifier left it.
        request: HttpRequest,
        /// Whether any modifier returned a changed request.
        changed: bool,
    },
    /// Answer the client with this response (then run `modify_response` hooks on it).
    Respond {
        /// The request as the answering modifier saw it.
        request: HttpRequest,
        /// The response.
        response: HttpResponse,
    },
    /// A fail-closed modifier failed.
    Failed {
        /// The request as the failing modifier saw it.
        request: HttpRequest,
        /// The failure.
        failure: HookFailure,
    },
}

/// The configured modifiers, in order, and the largest body they are sent.
pub(crate) struct Chain {
    modifiers: Vec<HookedPlugin>,
    max_body: usize,
}

impl Default for Chain {
    fn default() -> Self {
        Chain::new(Vec::new())
    }
}

impl std::fmt::Debug for Chain {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list()
            .entries(self.modifiers.iter().map(|m| m.name().to_string()))
            .finish()
    }
}

/// Awaits one hook call, appending its latency to `phases` when given.
async fn timed<T>(
    phases: &mut Option<&mut Vec<ModifierPhase>>,
    modifier: &HookedPlugin,
    hook: &str,
    call: impl Future<Output = T>,
) -> T {
    let Some(phases) = phases else {
        return call.await;
    };
    let started = Instant::now();
    let out = call.await;
    phases.push(ModifierPhase {
        plugin: modifier.name().to_string(),
        hook: hook.to_string(),
        latency_us: micros(started.elapsed()),
    });
    out
}

impl Chain {
    /// A chain of these modifiers, called in this order.
    pub(crate) fn new(modifiers: Vec<Arc<dyn Plugin>>) -> Self {
        Chain {
            modifiers: modifiers.into_iter().map(HookedPlugin::new).collect(),
            max_body: DEFAULT_MAX_PLUGIN_BODY,
        }
    }

    /// Sets the largest body sent to modifiers that want bodies (default
    /// [`DEFAULT_MAX_PLUGIN_BODY`]).
    pub(crate) fn with_max_body(mut self, max_body: usize) -> Self {
        self.max_body = max_body;
        self
    }

    /// The largest body sent to modifiers that want bodies.
    pub(crate) fn max_body(&self) -> usize {
        self.max_body
    }

    /// Whether any modifier declared this hook and wants its body (the proxy then reads the
    /// body into memory, up to [`Chain::max_body`]).
    pub(crate) fn wants_body(&self, hook: &str) -> bool {
        self.modifiers
            .iter()
            .any(|m| m.plugin().has_hook(hook) && m.plugin().wants_body(hook))
    }

    #[cfg(test)]
    /// Whether there are no modifiers at all (the proxy then skips building plugin views).
    pub(crate) fn is_empty(&self) -> bool {
        self.modifiers.is_empty()
    }

    /// Whether any modifier declared `modify_response` or `modify_error_response` (their
    /// calls need the request's view after it went to the backend).
    pub(crate) fn has_response_hooks(&self) -> bool {
        self.has_hook(ModifyResponse::NAME) || self.has_hook(ModifyErrorResponse::NAME)
    }

    /// Whether any modifier declared this hook.
    pub(crate) fn has_hook(&self, hook: &str) -> bool {
        self.modifiers.iter().any(|m| m.plugin().has_hook(hook))
    }

    /// Runs the `modify_request` hooks; each sees the previous one's output. With `phases`,
    /// each hook call's latency is appended to it.
    pub(crate) async fn modify_request(
        &self,
        mut request: HttpRequest,
        mut phases: Option<&mut Vec<ModifierPhase>>,
    ) -> RequestOutcome {
        let mut changed = false;
        for m in &self.modifiers {
            if !m.plugin().has_hook(ModifyRequest::NAME) {
                continue;
            }
            let cache = m.plugin().decision_cache();
            if let Some(decision) = cache.and_then(|c| c.lookup(ModifyRequest::NAME, &request)) {
                match decision {
                    Decision::Unchanged => {}
                    Decision::Change(change) => {
                        change.apply(&mut request);
                        changed = true;
                    }
                    Decision::Respond(response) => {
                        return RequestOutcome::Respond { request, response }
                    }
                }
                continue;
            }
            let wants_body = m.plugin().wants_body(ModifyRequest::NAME);
            let params = ModifyRequestParams {
                request: request_for(&mut request, wants_body),
            };
            let call = m.call::<ModifyRequest>(&params);
            match timed(&mut phases, m, ModifyRequest::NAME, call).await {
                Ok(Some(result)) => {
                    if let (Some(cache), Some(instruction)) = (cache, &result.cache) {
                        let decision = decision_of(&params.request, &result);
                        cache.insert(ModifyRequest::NAME, &params.request, instruction, decision);
                    }
                    if let Some(mut new) = result.request {
                        if new.body_base64.is_none() {
                            new.body_base64 = request.body_base64.take();
                        }
                        request = new;
                        changed = true;
                    }
                    if let Some(response) = result.response {
                        return RequestOutcome::Respond { request, response };
                    }
                }
                Ok(None) => {}
                Err(failure) => return RequestOutcome::Failed { request, failure },
            }
        }
        RequestOutcome::Forward { request, changed }
    }

    /// Runs the `modify_response` hooks. Returns the final response and whether any modifier
    /// changed it, or the failure of a fail-closed modifier. With `phases`, each hook call's
    /// latency is appended to it.
    pub(crate) async fn modify_response(
        &self,
        request: &HttpRequest,
        mut response: HttpResponse,
        mut phases: Option<&mut Vec<ModifierPhase>>,
    ) -> Result<(HttpResponse, bool), HookFailure> {
        let mut changed = false;
        for m in &self.modifiers {
            if !m.plugin().has_hook(ModifyResponse::NAME) {
                continue;
            }
            let wants_body = m.plugin().wants_body(ModifyResponse::NAME);
            let params = ModifyResponseParams {
                request: without_body(request),
                response: response_for(&response, wants_body),
            };
            let call = m.call::<ModifyResponse>(&params);
            let answer = timed(&mut phases, m, ModifyResponse::NAME, call).await?;
            if let Some(new) = answer.and_then(|a| a.response) {
                merge_response(&mut response, new);
                changed = true;
            }
        }
        Ok((response, changed))
    }

    /// Runs the `modify_error_response` hooks and returns the response to send. A fail-closed
    /// failure here ends the chain with that plugin's plain-text failure response. With
    /// `phases`, each hook call's latency is appended to it.
    pub(crate) async fn modify_error_response(
        &self,
        request: &HttpRequest,
        mut response: HttpResponse,
        error: &ProxyError,
        mut phases: Option<&mut Vec<ModifierPhase>>,
    ) -> HttpResponse {
        for m in &self.modifiers {
            if !m.plugin().has_hook(ModifyErrorResponse::NAME) {
                continue;
            }
            let wants_body = m.plugin().wants_body(ModifyErrorResponse::NAME);
            let params = ModifyErrorResponseParams {
                request: without_body(request),
                response: response_for(&response, wants_body),
                error: error.clone(),
            };
            let call = m.call::<ModifyErrorResponse>(&params);
            match timed(&mut phases, m, ModifyErrorResponse::NAME, call).await {
                Ok(Some(ModifyResponseResult {
                    response: Some(new),
                })) => merge_response(&mut response, new),
                Ok(Some(ModifyResponseResult { response: None }) | None) => {}
                Err(failure) => return failure.response(),
            }
        }
        response
    }
}

#[cfg(test)]
mod tests {
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
        let RequestOutcome::Forward { request, changed } = outcome else {
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
        assert!(changed);
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
            RequestOutcome::Forward { request, changed } => {
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
}
