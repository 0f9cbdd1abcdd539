//! Phase 0, **client rate**: runs first, for every request, before the request checks, the
//! hooks snapshot and routing, when `client_request_rate` is set (without it: one branch). A
//! request over its client's rate ([`crate::client_limits`]) is answered here with
//! `429 Too Many Requests` and `Retry-After` (whole seconds until the client's next request is
//! allowed, at least 1), recorded with the error kind `client_rate_limited` and counted on its
//! listener; no plugin sees it, `modify_error_response` included.

use std::time::{Duration, Instant};

use http::header::{CONTENT_TYPE, RETRY_AFTER};
use http::request::Parts;
use http::{HeaderValue, Response, StatusCode};

use crate::body::ProxyBody;
use crate::client_limits::ClientKey;
use crate::connection_info::ConnectionInfo;
use crate::service::Shared;
use crate::timing::{RequestRecord, X_REQUEST_ID};

/// The error kind of a request refused for its client's rate.
pub(crate) const CLIENT_RATE_LIMITED: &str = "client_rate_limited";

/// `None` when the request may go on (no rate set, or within it); else the 429 to answer.
pub(crate) fn client_rate(
    shared: &Shared,
    connection: &ConnectionInfo,
    parts: &Parts,
    measure: bool,
) -> Option<Response<ProxyBody>> {
    let limits = &shared.client_limits;
    let rate = limits.rate.as_ref()?;
    let now = Instant::now();
    let wait = rate
        .check(ClientKey::of(connection.remote.ip()), now)
        .err()?;
    connection.counters.client_limited_request();
    if let Some(refused) = limits.requests_refused.refused(now) {
        tracing::warn!(
            listener = %connection.listener,
            client = %connection.remote.ip(),
            refused,
            "requests over client_request_rate answered 429 (count since the last such line; see gatekeeper_client_limited_total)"
        );
    }
    let mut response = too_many_requests(wait);
    if let Some(id) = parts.headers.get(X_REQUEST_ID) {
        response.headers_mut().insert(X_REQUEST_ID, id.clone());
    }
    if measure {
        let mut record = RequestRecord::start(&shared.metrics, connection, parts);
        record.status = StatusCode::TOO_MANY_REQUESTS.as_u16();
        record.error = Some(CLIENT_RATE_LIMITED);
        response.body_mut().set_record(record);
    }
    Some(response)
}

/// `429 Too Many Requests`, `Retry-After: ⌈wait⌉` seconds (at least 1), plain text.
fn too_many_requests(wait: Duration) -> Response<ProxyBody> {
    let seconds = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
    let mut response = Response::new(ProxyBody::full("too many requests\n"));
    *response.status_mut() = StatusCode::TOO_MANY_REQUESTS;
    let headers = response.headers_mut();
    headers.insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    headers.insert(RETRY_AFTER, HeaderValue::from(seconds.max(1)));
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_is_whole_seconds_rounded_up_and_at_least_one() {
        let retry = |wait| too_many_requests(wait).headers()[RETRY_AFTER].clone();
        assert_eq!(retry(Duration::from_millis(100)), "1");
        assert_eq!(retry(Duration::ZERO), "1");
        assert_eq!(retry(Duration::from_millis(2001)), "3");
        assert_eq!(retry(Duration::from_secs(2)), "2");
        assert_eq!(
            too_many_requests(Duration::ZERO).status(),
            StatusCode::TOO_MANY_REQUESTS
        );
    }
}
