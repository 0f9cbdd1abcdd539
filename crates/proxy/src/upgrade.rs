//! `Upgrade` requests (WebSocket and other protocols): recognised before the hop-by-hop headers
//! are removed, forwarded with their `Upgrade` header and `Connection: upgrade`, and, when the
//! backend switches protocols (101), answered with 101 while a task splices the client's and the
//! backend's connections together until either side closes.
//!
//! A backend that does not switch (any other status) is answered as any other response. The
//! upgraded byte stream has no timeout of its own: it lasts as long as both TCP connections do.
//! `h2c` upgrades (deprecated by RFC 9113) are not passed through: the request is forwarded as a
//! plain HTTP/1.1 request.

use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderValue};
use http::request::Parts;
use http::{Response, StatusCode, Version};
use hyper::body::Incoming;
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::oneshot;
use tokio_util::task::TaskTracker;

use crate::body::ProxyBody;
use crate::forward::strip_hop_by_hop;
use crate::registry::InFlight;

const UPGRADE_TOKEN: HeaderValue = HeaderValue::from_static("upgrade");

/// A client's byte stream after a `101`.
pub(crate) trait UpgradedStream: AsyncRead + AsyncWrite + Send + Unpin {}

impl<T: AsyncRead + AsyncWrite + Send + Unpin> UpgradedStream for T {}

/// The client's connection handed over after a `101` (with any bytes the client sent after its
/// request first).
pub(crate) type ClientConnection = Box<dyn UpgradedStream>;

/// The request extension through which a client's HTTP/1 connection is handed over after the
/// `101` is written (the listener's HTTP/1 driver puts it into requests that ask to upgrade;
/// hyper's own upgrade machinery is not used, because the driver takes the connection back from
/// hyper itself).
/// (An extension must be `Clone`: the receiver is shared, and taken by the first to use it.)
#[derive(Clone)]
pub(crate) struct ClientUpgrade(Arc<Mutex<Option<oneshot::Receiver<ClientConnection>>>>);

impl std::fmt::Debug for ClientUpgrade {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ClientUpgrade")
    }
}

impl ClientUpgrade {
    /// Resolves to what the receiver's sender sends.
    pub(crate) fn new(receiver: oneshot::Receiver<ClientConnection>) -> Self {
        ClientUpgrade(Arc::new(Mutex::new(Some(receiver))))
    }

    /// The client's connection once it is handed over; `None` if the connection ended first
    /// (or this was awaited already).
    async fn connection(self) -> Option<ClientConnection> {
        let receiver = self.0.lock().unwrap_or_else(|e| e.into_inner()).take()?;
        receiver.await.ok()
    }
}

/// A client's request to switch protocols, and the client's connection once it is switched.
pub(crate) struct UpgradeRequest {
    /// The client's `Upgrade` header.
    protocol: HeaderValue,
    /// Resolves to the client's connection after the 101 is written.
    client: ClientUpgrade,
}

impl std::fmt::Debug for UpgradeRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UpgradeRequest")
            .field("protocol", &self.protocol)
            .finish_non_exhaustive()
    }
}

/// Whether the `Connection` header lists `token`.
fn connection_lists(headers: &HeaderMap, token: &str) -> bool {
    headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| t.trim().eq_ignore_ascii_case(token))
}

impl UpgradeRequest {
    /// The upgrade a client's request asks for (an HTTP/1.1 request with `Upgrade` and
    /// `Connection: upgrade`, not `h2c`), taking the client's side of it from the request.
    /// Call before removing hop-by-hop headers.
    pub(crate) fn detect(parts: &mut Parts) -> Option<Self> {
        if parts.version != Version::HTTP_11 {
            return None;
        }
        let protocol = parts.headers.get(header::UPGRADE)?;
        let h2c = protocol
            .to_str()
            .map(|p| p.split(',').any(|t| t.trim().eq_ignore_ascii_case("h2c")))
            .unwrap_or(false);
        if h2c || !connection_lists(&parts.headers, "upgrade") {
            return None;
        }
        let protocol = protocol.clone();
        let client = parts.extensions.remove::<ClientUpgrade>()?;
        Some(UpgradeRequest { protocol, client })
    }

    /// Puts the upgrade back into the headers of the request to the backend.
    pub(crate) fn prepare(&self, headers: &mut HeaderMap) {
        headers.insert(header::UPGRADE, self.protocol.clone());
        headers.insert(header::CONNECTION, UPGRADE_TOKEN);
    }
}

/// Handles a backend's 101: the 101 for the client (the backend's headers without its
/// hop-by-hop ones, plus `Upgrade` and `Connection: upgrade`) and a task splicing the two
/// connections, which holds `in_flight` until they close. `None` when the client did not ask
/// for an upgrade (the backend misbehaves).
pub(crate) fn switch(
    upgrade: Option<UpgradeRequest>,
    mut response: Response<Incoming>,
    in_flight: InFlight,
    upgraded: &TaskTracker,
) -> Option<Response<ProxyBody>> {
    let Some(upgrade) = upgrade else {
        tracing::warn!(
            backend = %in_flight.backend().backend.id,
            "backend switched protocols for a request that did not ask to"
        );
        return None;
    };
    let backend = hyper::upgrade::on(&mut response);
    let (parts, _empty) = response.into_parts();
    let mut headers = parts.headers;
    let protocol = headers
        .get(header::UPGRADE)
        .cloned()
        .unwrap_or(upgrade.protocol);
    strip_hop_by_hop(&mut headers);
    headers.insert(header::UPGRADE, protocol);
    headers.insert(header::CONNECTION, UPGRADE_TOKEN);
    let mut answer = Response::new(ProxyBody::full(Bytes::new()));
    *answer.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    *answer.headers_mut() = headers;
    upgraded.spawn(splice(upgrade.client, backend, in_flight));
    Some(answer)
}

/// Copies bytes both ways between the upgraded connections until both directions ended (or
/// either failed).
async fn splice(client: ClientUpgrade, backend: OnUpgrade, in_flight: InFlight) {
    let backend_id = &in_flight.backend().backend.id;
    let (client, backend) = tokio::join!(client.connection(), backend);
    let (mut client, backend) = match (client, backend) {
        (Some(client), Ok(backend)) => (client, backend),
        (None, _) => {
            tracing::debug!(backend = %backend_id, "upgrade failed: the client's connection ended before the 101 was sent");
            return;
        }
        (_, Err(e)) => {
            tracing::debug!(backend = %backend_id, error = %e, "upgrade failed");
            return;
        }
    };
    let mut backend = TokioIo::new(backend);
    match tokio::io::copy_bidirectional(&mut client, &mut backend).await {
        Ok((up, down)) => {
            tracing::debug!(backend = %backend_id, up, down, "upgraded connection closed")
        }
        Err(e) => {
            tracing::debug!(backend = %backend_id, error = %e, "upgraded connection failed")
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use http::Request;

    fn parts(version: Version, headers: &[(&str, &str)]) -> Parts {
        let mut request = Request::get("/ws").version(version);
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let mut parts = request.body(()).unwrap().into_parts().0;
        // Stands for the one the listener puts into upgrade requests.
        let (_sender, receiver) = oneshot::channel();
        parts.extensions.insert(ClientUpgrade::new(receiver));
        parts
    }

    #[test]
    fn only_complete_http11_upgrades_are_detected() {
        let ws = [
            ("connection", "keep-alive, Upgrade"),
            ("upgrade", "websocket"),
        ];
        let mut p = parts(Version::HTTP_11, &ws);
        let upgrade = UpgradeRequest::detect(&mut p).unwrap();
        assert!(p.extensions.get::<ClientUpgrade>().is_none());
        let mut out = HeaderMap::new();
        upgrade.prepare(&mut out);
        assert_eq!(out[header::UPGRADE], "websocket");
        assert_eq!(out[header::CONNECTION], "upgrade");

        assert!(UpgradeRequest::detect(&mut parts(Version::HTTP_10, &ws)).is_none());
        let no_connection = [("upgrade", "websocket")];
        assert!(UpgradeRequest::detect(&mut parts(Version::HTTP_11, &no_connection)).is_none());
        let h2c = [
            ("connection", "Upgrade, HTTP2-Settings"),
            ("upgrade", "h2c"),
        ];
        assert!(UpgradeRequest::detect(&mut parts(Version::HTTP_11, &h2c)).is_none());
    }
}
