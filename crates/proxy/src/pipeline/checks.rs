//! Phase 1, **request checks**: runs first, for every request, before the hooks snapshot is
//! loaded. Refuses requests that must not be proxied (Host rules: 400; a transfer coding other
//! than chunked: 501; the connection is then closed, see [`crate::request_checks`]), removes dot
//! segments from the path, takes a protocol switch (WebSocket) aside
//! ([`UpgradeRequest::detect`]), strips hop-by-hop headers and adds the `X-Forwarded-*` and
//! `Via` headers. No plugin is called here. (`CONNECT` is refused by the pipeline before it
//! routes, so that the answer goes through `modify_error_response`.)

use http::request::Parts;

use crate::connection_info::ConnectionInfo;
use crate::forward::strip_hop_by_hop;
use crate::request_checks::{check_request, Rejection};
use crate::service::Shared;
use crate::upgrade::UpgradeRequest;

/// Checks and prepares `parts`: the protocol switch the client asked for, or why the request
/// is refused (answer with [`Rejection::response`]).
pub(crate) fn request_checks(
    shared: &Shared,
    connection: &ConnectionInfo,
    parts: &mut Parts,
) -> Result<Option<UpgradeRequest>, Rejection> {
    if let Err(rejection) = check_request(parts) {
        let remote = connection.remote;
        tracing::debug!(%remote, reason = rejection.reason(), "request refused");
        return Err(rejection);
    }
    let upgrade = UpgradeRequest::detect(parts);
    strip_hop_by_hop(&mut parts.headers);
    shared
        .forwarded
        .apply(parts, connection.remote.ip(), connection.tls);
    Ok(upgrade)
}
