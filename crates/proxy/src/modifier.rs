//! Modifiers as the proxy sees them: the [`Modifier`] trait (implemented by the gatekeeper
//! binary on top of the plugin host; the proxy does not know how plugins run) and the
//! [`Chain`] that calls the hooks of all modifiers in their configured order, applying each
//! modifier's [`FailurePolicy`] and, when asked, timing every hook call.
//!
//! Bodies: a modifier that declared it wants the body of a hook ([`Modifier::wants_body`]) gets
//! it as `body_base64`; the others get none (a response's text `body`, set by a plugin or the
//! proxy, is sent to them as it is). What a modifier returns keeps the current body unless it
//! sets `body_base64` (or, on responses, `body`, which wins): "absent" means "unchanged". The
//! request body only travels in `modify_request`.

use std::future::Future;
use std::sync::Arc;
use std::time::Instant;

use futures::future::BoxFuture;
use gatekeeper_rpc::methods::{
    Method, ModifyErrorResponse, ModifyErrorResponseParams, ModifyRequest, ModifyRequestParams,
    ModifyRequestResult, ModifyResponse, ModifyResponseParams, ModifyResponseResult,
};
use gatekeeper_rpc::metrics::ModifierPhase;
use gatekeeper_rpc::types::{encode_body, HttpRequest, HttpResponse, ProxyError};

use crate::metrics::micros;

/// What the proxy does when a modifier's hook fails (error, timeout, plugin down).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailurePolicy {
    /// Log a warning and continue as if the modifier had left the request or response alone.
    Open,
    /// Answer the client with `status` (plain-text body naming the plugin).
    Closed {
        /// The status code of the answer.
        status: u16,
    },
}

impl Default for FailurePolicy {
    /// Fail closed with 503.
    fn default() -> Self {
        FailurePolicy::Closed { status: 503 }
    }
}

/// A failed hook call.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct HookError {
    /// What went wrong, for the log.
    pub message: String,
}

impl HookError {
    /// A hook error with this message.
    pub fn new(message: impl Into<String>) -> Self {
        HookError {
            message: message.into(),
        }
    }
}

/// A modifier plugin, as the proxy calls it.
pub trait Modifier: Send + Sync + 'static {
    /// The plugin's configured name (used in logs and error bodies).
    fn name(&self) -> &str;
    /// Whether the plugin declared this hook (e.g. `modify_request`); undeclared hooks are never
    /// called.
    fn has_hook(&self, hook: &str) -> bool;
    /// What to do when a hook fails.
    fn failure_policy(&self) -> FailurePolicy;
    /// Whether the plugin declared that this (declared) hook wants the body. Default: no.
    fn wants_body(&self, _hook: &str) -> bool {
        false
    }
    /// `modify_request`: change the request, or answer it directly.
    fn modify_request(
        &self,
        params: ModifyRequestParams,
    ) -> BoxFuture<'static, Result<ModifyRequestResult, HookError>>;
    /// `modify_response`: change the backend's (or a direct) response's status and headers.
    fn modify_response(
        &self,
        params: ModifyResponseParams,
    ) -> BoxFuture<'static, Result<ModifyResponseResult, HookError>>;
    /// `modify_error_response`: change an error response the proxy generated.
    fn modify_error_response(
        &self,
        params: ModifyErrorResponseParams,
    ) -> BoxFuture<'static, Result<ModifyResponseResult, HookError>>;
}

/// A fail-closed hook failure: the request must be answered with `status`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HookFailure {
    /// Name of the plugin that failed.
    pub plugin: String,
    /// The status to answer with (the plugin's fail-closed status).
    pub status: u16,
    /// The hook error.
    pub message: String,
}

impl HookFailure {
    /// The error passed to `modify_error_response`.
    pub fn proxy_error(&self) -> ProxyError {
        ProxyError {
            kind: "plugin_failed".into(),
            message: format!("plugin `{}` failed: {}", self.plugin, self.message),
        }
    }

    /// The plain-text response sent to the client.
    pub fn response(&self) -> HttpResponse {
        text_response(self.status, &format!("plugin `{}` failed", self.plugin))
    }
}

/// A plain-text response with this status and body (a newline is appended).
pub fn text_response(status: u16, body: &str) -> HttpResponse {
    let headers = vec![("content-type".into(), "text/plain; charset=utf-8".into())];
    let mut response = HttpResponse::new(status, headers);
    response.body = Some(format!("{body}\n"));
    response
}

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

/// What the `modify_request` hooks decided.
#[derive(Debug)]
pub enum RequestOutcome {
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
#[derive(Clone)]
pub struct Chain {
    modifiers: Vec<Arc<dyn Modifier>>,
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

/// Applies a modifier's failure policy: `Some` when the request must be answered.
fn on_failure(modifier: &dyn Modifier, hook: &str, error: HookError) -> Option<HookFailure> {
    match modifier.failure_policy() {
        FailurePolicy::Open => {
            tracing::warn!(plugin = modifier.name(), hook, %error, "hook failed (fail-open: skipped)");
            None
        }
        FailurePolicy::Closed { status } => {
            tracing::warn!(plugin = modifier.name(), hook, %error, status, "hook failed (fail-closed)");
            Some(HookFailure {
                plugin: modifier.name().to_string(),
                status,
                message: error.message,
            })
        }
    }
}

/// Awaits one hook call, appending its latency to `phases` when given.
async fn timed<T>(
    phases: &mut Option<&mut Vec<ModifierPhase>>,
    modifier: &dyn Modifier,
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
    pub fn new(modifiers: Vec<Arc<dyn Modifier>>) -> Self {
        Chain {
            modifiers,
            max_body: DEFAULT_MAX_PLUGIN_BODY,
        }
    }

    /// Sets the largest body sent to modifiers that want bodies (default
    /// [`DEFAULT_MAX_PLUGIN_BODY`]).
    pub fn with_max_body(mut self, max_body: usize) -> Self {
        self.max_body = max_body;
        self
    }

    /// The largest body sent to modifiers that want bodies.
    pub fn max_body(&self) -> usize {
        self.max_body
    }

    /// Whether any modifier declared this hook and wants its body (the proxy then reads the
    /// body into memory, up to [`Chain::max_body`]).
    pub fn wants_body(&self, hook: &str) -> bool {
        self.modifiers
            .iter()
            .any(|m| m.has_hook(hook) && m.wants_body(hook))
    }

    /// Whether there are no modifiers at all (the proxy then skips building plugin views).
    pub fn is_empty(&self) -> bool {
        self.modifiers.is_empty()
    }

    /// Whether any modifier declared this hook.
    pub fn has_hook(&self, hook: &str) -> bool {
        self.modifiers.iter().any(|m| m.has_hook(hook))
    }

    /// Runs the `modify_request` hooks; each sees the previous one's output. With `phases`,
    /// each hook call's latency is appended to it.
    pub async fn modify_request(
        &self,
        mut request: HttpRequest,
        mut phases: Option<&mut Vec<ModifierPhase>>,
    ) -> RequestOutcome {
        let mut changed = false;
        for m in &self.modifiers {
            if !m.has_hook(ModifyRequest::NAME) {
                continue;
            }
            let params = ModifyRequestParams {
                request: request_for(&mut request, m.wants_body(ModifyRequest::NAME)),
            };
            let call = m.modify_request(params);
            match timed(&mut phases, m.as_ref(), ModifyRequest::NAME, call).await {
                Ok(result) => {
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
                Err(e) => {
                    if let Some(failure) = on_failure(m.as_ref(), ModifyRequest::NAME, e) {
                        return RequestOutcome::Failed { request, failure };
                    }
                }
            }
        }
        RequestOutcome::Forward { request, changed }
    }

    /// Runs the `modify_response` hooks. Returns the final response and whether any modifier
    /// changed it, or the failure of a fail-closed modifier. With `phases`, each hook call's
    /// latency is appended to it.
    pub async fn modify_response(
        &self,
        request: &HttpRequest,
        mut response: HttpResponse,
        mut phases: Option<&mut Vec<ModifierPhase>>,
    ) -> Result<(HttpResponse, bool), HookFailure> {
        let mut changed = false;
        for m in &self.modifiers {
            if !m.has_hook(ModifyResponse::NAME) {
                continue;
            }
            let params = ModifyResponseParams {
                request: without_body(request),
                response: response_for(&response, m.wants_body(ModifyResponse::NAME)),
            };
            let call = m.modify_response(params);
            match timed(&mut phases, m.as_ref(), ModifyResponse::NAME, call).await {
                Ok(ModifyResponseResult {
                    response: Some(new),
                }) => {
                    merge_response(&mut response, new);
                    changed = true;
                }
                Ok(ModifyResponseResult { response: None }) => {}
                Err(e) => {
                    if let Some(failure) = on_failure(m.as_ref(), ModifyResponse::NAME, e) {
                        return Err(failure);
                    }
                }
            }
        }
        Ok((response, changed))
    }

    /// Runs the `modify_error_response` hooks and returns the response to send. A fail-closed
    /// failure here ends the chain with that plugin's plain-text failure response. With
    /// `phases`, each hook call's latency is appended to it.
    pub async fn modify_error_response(
        &self,
        request: &HttpRequest,
        mut response: HttpResponse,
        error: &ProxyError,
        mut phases: Option<&mut Vec<ModifierPhase>>,
    ) -> HttpResponse {
        for m in &self.modifiers {
            if !m.has_hook(ModifyErrorResponse::NAME) {
                continue;
            }
            let params = ModifyErrorResponseParams {
                request: without_body(request),
                response: response_for(&response, m.wants_body(ModifyErrorResponse::NAME)),
                error: error.clone(),
            };
            let call = m.modify_error_response(params);
            match timed(&mut phases, m.as_ref(), ModifyErrorResponse::NAME, call).await {
                Ok(ModifyResponseResult {
                    response: Some(new),
                }) => merge_response(&mut response, new),
                Ok(ModifyResponseResult { response: None }) => {}
                Err(e) => {
                    if let Some(failure) = on_failure(m.as_ref(), ModifyErrorResponse::NAME, e) {
                        return failure.response();
                    }
                }
            }
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use gatekeeper_rpc::types::decode_body;

    use super::*;

    type Answer<P, R> = Box<dyn Fn(&P) -> R + Send + Sync>;

    /// A modifier that records the params of its calls and answers with closures.
    struct Fake {
        wants_body: bool,
        on_request: Answer<ModifyRequestParams, ModifyRequestResult>,
        on_response: Answer<ModifyResponseParams, ModifyResponseResult>,
        requests: Mutex<Vec<ModifyRequestParams>>,
        responses: Mutex<Vec<ModifyResponseParams>>,
    }

    impl Fake {
        fn new(wants_body: bool) -> Self {
            Fake {
                wants_body,
                on_request: Box::new(|_| ModifyRequestResult::default()),
                on_response: Box::new(|_| ModifyResponseResult::default()),
                requests: Mutex::default(),
                responses: Mutex::default(),
            }
        }
    }

    impl Modifier for Fake {
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
        fn modify_request(
            &self,
            params: ModifyRequestParams,
        ) -> BoxFuture<'static, Result<ModifyRequestResult, HookError>> {
            let result = (self.on_request)(&params);
            self.requests.lock().unwrap().push(params);
            Box::pin(async move { Ok(result) })
        }
        fn modify_response(
            &self,
            params: ModifyResponseParams,
        ) -> BoxFuture<'static, Result<ModifyResponseResult, HookError>> {
            let result = (self.on_response)(&params);
            self.responses.lock().unwrap().push(params);
            Box::pin(async move { Ok(result) })
        }
        fn modify_error_response(
            &self,
            _params: ModifyErrorResponseParams,
        ) -> BoxFuture<'static, Result<ModifyResponseResult, HookError>> {
            Box::pin(async { Ok(ModifyResponseResult::default()) })
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
}
