//! The request pipeline: one request is one [`Exchange`] that passes through these phases,
//! each a function in a file of its own under `pipeline/` (Pingora's `ProxyHttp` phases are
//! the model):
//!
//! ```text
//! client rate ─► request checks ─► route ─► modify request ─► pick backend ─► forward
//!   ─► modify response | (on any error) modify error response ─► respond ─► record
//! ```
//!
//! | phase | file | default (no plugin) |
//! |---|---|---|
//! | client rate | `client_rate.rs` | nothing (`client_request_rate` unset); over it: 429 |
//! | request checks | `checks.rs` | Host, transfer coding, dot segments, CONNECT refused |
//! | route | `route.rs` | built-in router (prefix, host) |
//! | modify request | `modify_request.rs` | nothing |
//! | pick backend | `pick_backend.rs` | the upstream's built-in balancer |
//! | forward | `forward.rs` | pooled client, one retry after a connect failure |
//! | modify response | `modify_response.rs` | nothing: the backend's response streams through |
//! | modify error response | `modify_error.rs` | the proxy's plain-text error |
//! | respond | `respond.rs` | a plugin's direct answer, after `modify_response` |
//! | record | `record.rs` | nothing (metrics off) |
//!
//! hyper's request [`Parts`] are the only copy of the request. The JSON view a hook sees
//! ([`HttpRequest`]) is built from them ([`Exchange::request_view`]) only when a hook is about to
//! be called, with what only plugins see (the context map, the upstream id, the prefix and
//! prefixless path, the body when a modifier wants it); what the hook returns is applied back to
//! the parts at once: only what changed from the view sent (`Exchange::apply_change`, for a
//! router's returned request and for the modifiers' results alike).
//!
//! The path without plugins is this pipeline with no hooks: every phase then takes its
//! default, no view is built (no JSON-related work) and, without metrics, nothing is timed.
//!
//! An exchange calls the hooks of the one snapshot ([`ActiveHooks`]) loaded when its request
//! arrived, from route to `modify_response` / `modify_error_response`, even if the hooks are
//! replaced meanwhile; whether it is measured is likewise decided once, when it starts.

mod apply_change;
mod checks;
mod client_rate;
mod forward;
mod modify_error;
mod modify_request;
mod modify_response;
mod pick_backend;
mod record;
mod respond;
mod route;

use std::sync::Arc;
use std::time::Instant;

use gatekeeper_rpc::metrics::Phases;
use gatekeeper_rpc::types::{HttpRequest, Object};
use http::request::Parts;
use http::uri::PathAndQuery;
use http::{HeaderValue, Method, Request, Response, Uri};
use hyper::body::Incoming;

pub(crate) use self::checks::request_checks;
use crate::body::{ProxyBody, RequestBody};
use crate::connection_info::ConnectionInfo;
use crate::hooks::ActiveHooks;
use crate::metrics::micros;
use crate::port::policy::HookFailure;
use crate::registry::{Snapshot, UpstreamEntry};
use crate::request_checks::Rejection;
use crate::router::{prefixless, request_host};
use crate::service::Shared;
use crate::timing::{RequestRecord, X_REQUEST_ID};
use crate::upgrade::UpgradeRequest;
use crate::view::{headers_to_view, Kind};

/// Handles one request that arrived on `connection`: the client's rate, the request checks,
/// then the rest of the pipeline ([`Exchange`]) with the hooks snapshot and metrics setting of this moment.
pub(crate) async fn handle(
    shared: &Shared,
    connection: &ConnectionInfo,
    request: Request<Incoming>,
) -> Response<ProxyBody> {
    let (mut parts, body) = request.into_parts();
    let measure = shared.metrics.measures_requests();
    if let Some(refused) = client_rate::client_rate(shared, connection, &parts, measure) {
        return refused;
    }
    let upgrade = match request_checks(shared, connection, &mut parts) {
        Ok(upgrade) => upgrade,
        Err(rejection) => return refused(shared, connection, &parts, rejection, measure),
    };
    // The request keeps this snapshot until it is answered, across awaits.
    let hooks = arc_swap::Guard::into_inner(shared.hooks.load());
    // The exchange lives in this future and the phases borrow it: one copy of it, not one per
    // nested future (every nested future is copied when first polled).
    let mut exchange = Exchange::new(shared, &hooks, measure, connection, parts, upgrade);
    let response = exchange.answer(body).await;
    exchange.record(response)
}

/// The answer to a request the request checks refused: recorded (when measured), and with the
/// client's `X-Request-Id`.
fn refused(
    shared: &Shared,
    connection: &ConnectionInfo,
    parts: &Parts,
    rejection: Rejection,
    measure: bool,
) -> Response<ProxyBody> {
    let mut response = rejection.response();
    if let Some(id) = parts.headers.get(X_REQUEST_ID) {
        response.headers_mut().insert(X_REQUEST_ID, id.clone());
    }
    if measure {
        let mut record = RequestRecord::start(&shared.metrics, connection, parts);
        record.status = response.status().as_u16();
        record.error = Some(rejection.error_kind());
        response.body_mut().set_record(record);
    }
    response
}

/// Why a request is answered without (further) forwarding.
pub(crate) enum Reject {
    /// The proxy answers with an error of this kind.
    Error(Kind, String),
    /// A fail-closed plugin failed.
    Failed(HookFailure),
}

/// One request on its way through the pipeline.
pub(crate) struct Exchange<'a> {
    shared: &'a Shared,
    /// The hooks this request uses from start to end.
    hooks: &'a ActiveHooks,
    connection: &'a ConnectionInfo,
    listener: &'a str,
    snapshot: Arc<Snapshot>,
    /// The request: the only copy (its URI is the client's until forwarded).
    parts: Parts,
    /// The plugins' request context, passed from hook to hook.
    context: Object,
    /// The upstream, once routed.
    upstream: Option<Arc<UpstreamEntry>>,
    /// Bytes of `/prefix` the built-in router matched.
    strip: Option<usize>,
    /// The path sent to the backend when a plugin set one (`prefixless_path`) other than the
    /// client's path without its prefix.
    backend_path: Option<String>,
    /// The request as response and error hooks see it, taken before the parts went to the
    /// backend (only when such hooks are declared).
    sent: Option<HttpRequest>,
    record: Option<Box<RequestRecord>>,
    /// The protocol switch the client asked for, if any.
    upgrade: Option<UpgradeRequest>,
    /// The request's `X-Request-Id` as it was forwarded (kept once the parts are gone).
    request_id: Option<HeaderValue>,
    /// The answer is an error of the proxy's own (it gets the request's `X-Request-Id`).
    proxy_error: bool,
}

impl Drop for Exchange<'_> {
    /// A request dropped before it was answered (the client went away, or the shutdown grace
    /// period cut its connection) is recorded with status 499 and `client_closed` or
    /// `grace_cut`.
    fn drop(&mut self) {
        if let Some(mut record) = self.record.take() {
            record.status = 499;
            record.error = Some(if self.connection.stopping() {
                "grace_cut"
            } else {
                "client_closed"
            });
            if let Some(upstream) = &self.upstream {
                record.upstream = Some(upstream.upstream.id.clone());
            }
            if let Some(id) = self.request_id() {
                record.request_id = id.to_str().ok().map(str::to_string);
            }
            record.finish(0);
        }
    }
}

impl<'a> Exchange<'a> {
    /// An exchange calling `hooks`, timed into a metrics record when `measure`.
    pub(crate) fn new(
        shared: &'a Shared,
        hooks: &'a ActiveHooks,
        measure: bool,
        connection: &'a ConnectionInfo,
        parts: Parts,
        upgrade: Option<UpgradeRequest>,
    ) -> Self {
        let record = measure.then(|| RequestRecord::start(&shared.metrics, connection, &parts));
        Exchange {
            shared,
            hooks,
            connection,
            listener: &connection.listener,
            snapshot: shared.registry.snapshot(),
            parts,
            context: Object::new(),
            upstream: None,
            strip: None,
            backend_path: None,
            sent: None,
            record,
            upgrade,
            request_id: None,
            proxy_error: false,
        }
    }

    /// Runs the phases after the request checks: the answer, which [`Exchange::record`] then
    /// hands the record to (the response body finishes it).
    pub(crate) async fn answer(&mut self, body: Incoming) -> Response<ProxyBody> {
        let counter = self.record.as_ref().map(|r| r.bytes_in.clone());
        let mut response = self.phases(RequestBody::new(body, counter)).await;
        if self.proxy_error && !response.headers().contains_key(X_REQUEST_ID) {
            if let Some(id) = self.request_id() {
                response.headers_mut().insert(X_REQUEST_ID, id);
            }
        }
        response
    }

    /// The request's `X-Request-Id`: as forwarded, else as the parts have it now (the client's,
    /// or one a plugin set).
    fn request_id(&self) -> Option<HeaderValue> {
        self.request_id
            .clone()
            .or_else(|| self.parts.headers.get(X_REQUEST_ID).cloned())
    }

    /// The error and direct-answer paths are boxed (allocated only when taken), as is the
    /// forwarding, so that this future stays small (measured with `-Zprint-type-sizes`).
    async fn phases(&mut self, body: RequestBody) -> Response<ProxyBody> {
        if self.parts.method == Method::CONNECT {
            let reject = Reject::Error(Kind::BadRequest, "CONNECT is not supported".into());
            return Box::pin(self.modify_error(reject)).await;
        }
        let started = self.now();
        let routed = self.route().await;
        self.phase(started, |p, us| p.router_us = us);
        if let Err(reject) = routed {
            return Box::pin(self.modify_error(reject)).await;
        }
        let body = match self.modify_request(body).await {
            Ok(Ok(body)) => body,
            Ok(Err(answer)) => return Box::pin(self.respond(answer)).await,
            Err(reject) => return Box::pin(self.modify_error(reject)).await,
        };
        let started = self.now();
        let picked = self.pick_backend().await;
        self.phase(started, |p, us| p.loadbalancer_us = us);
        let (upstream, backend) = match picked {
            Ok(picked) => picked,
            Err(reject) => return Box::pin(self.modify_error(reject)).await,
        };
        // Boxed: forwarding (with retries and timeouts) is the largest phase; boxing it keeps
        // the request's own future, which hyper moves into place, small.
        match Box::pin(self.forward(&upstream, backend, body)).await {
            Ok(forwarded) => self.modify_response(&upstream, forwarded).await,
            Err(reject) => Box::pin(self.modify_error(reject)).await,
        }
    }

    /// Now, when the exchange is measured.
    fn now(&self) -> Option<Instant> {
        self.record.is_some().then(Instant::now)
    }

    /// Records the latency of a phase started at `started` (when measured).
    fn phase(&mut self, started: Option<Instant>, set: impl FnOnce(&mut Phases, u64)) {
        if let (Some(record), Some(started)) = (&mut self.record, started) {
            set(&mut record.phases, micros(started.elapsed()));
        }
    }

    /// The path the backend gets: the one a plugin set, else the client's without its prefix.
    fn backend_path(&self) -> &str {
        match &self.backend_path {
            Some(path) => path,
            None => prefixless(self.parts.uri.path(), self.strip),
        }
    }

    /// The request as a hook sees it, built from the parts now (with `body_base64`, for the
    /// modifiers that want the body).
    fn request_view(&self, body_base64: Option<String>) -> HttpRequest {
        let parts = &self.parts;
        let path = parts.uri.path();
        HttpRequest {
            listener: self.listener.to_string(),
            remote_addr: self.connection.remote_text.to_string(),
            method: parts.method.as_str().to_string(),
            host: request_host(parts).unwrap_or_default().to_string(),
            path: path.to_string(),
            prefix: self.strip.and_then(|n| path.get(1..n)).map(str::to_string),
            prefixless_path: self.backend_path().to_string(),
            query: parts.uri.query().map(str::to_string),
            headers: headers_to_view(&parts.headers),
            upstream: self.upstream.as_ref().map(|u| u.upstream.id.clone()),
            context: self.context.clone(),
            body_base64,
        }
    }

    /// Routes to the upstream `id` a plugin chose, when it names another one than the current.
    fn choose_upstream(&mut self, id: Option<&str>) -> Result<(), Reject> {
        let current = self.upstream.as_ref().map(|u| u.upstream.id.as_str());
        if let Some(id) = id.filter(|id| Some(*id) != current) {
            match self.snapshot.upstream(id) {
                Some(upstream) => self.upstream = Some(upstream.clone()),
                None => {
                    let message = format!("a plugin chose the unknown upstream `{id}`");
                    return Err(Reject::Error(Kind::NoRoute, message));
                }
            }
        }
        Ok(())
    }
}

/// `uri` with another path and query (scheme and authority kept).
fn with_path_and_query(uri: &Uri, path: &str, query: Option<&str>) -> Result<Uri, http::Error> {
    let path_and_query = match query {
        Some(query) => PathAndQuery::try_from(format!("{path}?{query}"))?,
        None => PathAndQuery::try_from(path)?,
    };
    let mut parts = uri.clone().into_parts();
    parts.path_and_query = Some(path_and_query);
    Ok(Uri::from_parts(parts)?)
}
