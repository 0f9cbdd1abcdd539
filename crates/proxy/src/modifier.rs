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
use gatekeeper_rpc::parts::{PartialModifyRequestParams, PartialRequest};
use gatekeeper_rpc::patch::ResponsePatch;
use gatekeeper_rpc::types::{encode_body, HttpRequest, HttpResponse, ProxyError};

use crate::decision_cache::change::{Decision, HeaderChange, RequestChange};
use crate::metrics::micros;
use crate::port::policy::{HookFailure, HookedPlugin};
use crate::port::HookError;
use crate::port::Plugin;

/// The default of `max_plugin_body`: the largest body sent to a plugin (1 MiB).
pub const DEFAULT_MAX_PLUGIN_BODY: usize = 1024 * 1024;

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
    match (&result.response, &result.request, &result.patch) {
        (Some(response), _, _) => Decision::Respond(response.clone()),
        (None, Some(returned), _) => Decision::Change(RequestChange::between(sent, returned)),
        (None, None, Some(patch)) => Decision::Change(RequestChange::of_patch(patch)),
        (None, None, None) => Decision::Unchanged,
    }
}

/// What the `modify_response` hooks changed.
#[derive(Debug, Clone, PartialEq, Default)]
pub(crate) enum ResponseChange {
    /// Nothing: the backend's response goes on as it is.
    #[default]
    Unchanged,
    /// Only patches: the status (if set) and these header changes, in order, to apply to the
    /// response's parts.
    Patched {
        /// The new status, if a patch set one.
        status: Option<u16>,
        /// The header operations, in order.
        headers: Vec<HeaderChange>,
    },
    /// A whole response was returned: the final view replaces status, headers (and body).
    Whole,
}

impl ResponseChange {
    /// Adds a patch: still a patch unless a whole response came before.
    fn then_patch(&mut self, patch: &ResponsePatch) {
        if patch.is_empty() {
            return;
        }
        let changes = HeaderChange::of_patch(
            &patch.remove_headers,
            &patch.set_headers,
            &patch.append_headers,
        );
        match self {
            ResponseChange::Whole => {}
            ResponseChange::Unchanged => {
                *self = ResponseChange::Patched {
                    status: patch.status.map(|s| s.get()),
                    headers: changes,
                }
            }
            ResponseChange::Patched { status, headers } => {
                if let Some(new) = patch.status {
                    *status = Some(new.get());
                }
                headers.extend(changes);
            }
        }
    }
}

/// Takes a modifier's response patch or returned response as the current response, and notes
/// what changed in `change`.
fn apply_response_result(
    current: &mut HttpResponse,
    result: ModifyResponseResult,
    change: &mut ResponseChange,
) {
    match (result.response, result.patch) {
        (Some(new), _) => {
            merge_response(current, new);
            *change = ResponseChange::Whole;
        }
        (None, Some(patch)) => {
            patch.apply(current);
            change.then_patch(&patch);
        }
        (None, None) => {}
    }
}

/// The params of a `modify_request` call: the whole request, or only the parts the plugin
/// declared.
enum SentParams<'a> {
    Whole(&'a ModifyRequestParams),
    Partial(PartialModifyRequestParams<'a>),
}

impl serde::Serialize for SentParams<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            SentParams::Whole(params) => params.serialize(serializer),
            SentParams::Partial(params) => params.serialize(serializer),
        }
    }
}

/// What the `modify_request` hooks decided.
#[derive(Debug)]
pub(crate) enum RequestOutcome {
    /// Forward the request (`changed` is false when no modifier returned a request or patch).
    Forward {
        /// The request as the last modifier left it.
        request: HttpRequest,
        /// Whether any modifier returned a changed request or a patch.
        changed: bool,
        /// What the modifiers changed, in order: what the proxy applies to its request.
        change: RequestChange,
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
        let mut total = RequestChange::default();
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
                        total.then(change);
                        changed = true;
                    }
                    Decision::Respond(response) => {
                        return RequestOutcome::Respond { request, response }
                    }
                }
                continue;
            }
            // The request itself is sent (no copy), without its body unless the hook wants
            // it, and taken back after the call.
            let wants_body = m.plugin().wants_body(ModifyRequest::NAME);
            let kept_body = if wants_body {
                None
            } else {
                request.body_base64.take()
            };
            let params = ModifyRequestParams { request };
            let parts = m.plugin().request_parts(ModifyRequest::NAME);
            let sent = match &parts {
                None => SentParams::Whole(&params),
                Some(parts) => SentParams::Partial(PartialModifyRequestParams {
                    request: PartialRequest {
                        request: &params.request,
                        parts,
                    },
                }),
            };
            let call = m.call_with::<ModifyRequest>(&sent);
            let mut outcome = timed(&mut phases, m, ModifyRequest::NAME, call).await;
            if parts.is_some() && matches!(&outcome, Ok(Some(result)) if result.request.is_some()) {
                // It was not sent the whole request, so it cannot return one.
                let what = "returned a whole `request` from a hook that declared its parts \
                            (answer with a `patch`)"
                    .to_string();
                outcome = m
                    .failed(ModifyRequest::NAME, HookError::BadResult { what })
                    .map(|()| None);
            }
            if let (Ok(Some(result)), Some(cache)) = (&outcome, cache) {
                if let Some(instruction) = &result.cache {
                    let decision = decision_of(&params.request, result);
                    cache.insert(ModifyRequest::NAME, &params.request, instruction, decision);
                }
            }
            request = params.request;
            if kept_body.is_some() {
                request.body_base64 = kept_body;
            }
            match outcome {
                Ok(Some(result)) => {
                    if let Some(mut new) = result.request {
                        if new.body_base64.is_none() {
                            new.body_base64 = request.body_base64.take();
                        }
                        total.then(RequestChange::between(&request, &new));
                        request = new;
                        changed = true;
                    } else if let Some(patch) = &result.patch {
                        let change = RequestChange::of_patch(patch);
                        change.apply(&mut request);
                        total.then(change);
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
        RequestOutcome::Forward {
            request,
            changed,
            change: total,
        }
    }

    /// Runs the `modify_response` hooks. Returns the final response and what the modifiers
    /// changed, or the failure of a fail-closed modifier. With `phases`, each hook call's
    /// latency is appended to it.
    pub(crate) async fn modify_response(
        &self,
        request: &HttpRequest,
        mut response: HttpResponse,
        mut phases: Option<&mut Vec<ModifierPhase>>,
    ) -> Result<(HttpResponse, ResponseChange), HookFailure> {
        let mut changed = ResponseChange::Unchanged;
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
            if let Some(result) = answer {
                apply_response_result(&mut response, result, &mut changed);
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
                Ok(Some(result)) => {
                    apply_response_result(&mut response, result, &mut ResponseChange::Whole);
                }
                Ok(None) => {}
                Err(failure) => return failure.response(),
            }
        }
        response
    }
}

#[cfg(test)]
mod tests;
