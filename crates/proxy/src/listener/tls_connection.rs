//! A connection accepted on a TLS listener: the TLS handshake (bounded by the head's time
//! limit, abandoned at shutdown), what it negotiated (ALPN protocol, SNI, client certificate,
//! version and cipher) as the request path sees it, then HTTP over the TLS stream. Kept apart
//! from plain connections, whose task it would otherwise make about twice as large.

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::TcpStream;
use tokio::sync::watch;

use super::connection::{serve_http, stopped, Protocol, Protocols, WatchedIo};
use crate::client_limits::ConnectionPermit;
use crate::connection_info::ConnectionInfo;
use crate::metrics::listener_stats::OpenConnection;
use crate::service::Shared;
use crate::tls::client_cert::subject_of;
use crate::tls::TlsListener;

/// A TCP connection accepted on a TLS listener, before its handshake.
pub(super) struct TlsConnection {
    pub(super) stream: TcpStream,
    pub(super) remote: SocketAddr,
    pub(super) listener: Arc<str>,
    pub(super) permit: ConnectionPermit,
    pub(super) open: OpenConnection,
}

/// Runs the TLS handshake on `connection`, then serves HTTP over it.
pub(super) async fn serve_tls(
    connection: TlsConnection,
    tls: &TlsListener,
    shared: Arc<Shared>,
    protocols: &Protocols,
    mut shutdown: watch::Receiver<bool>,
) {
    let TlsConnection {
        stream,
        remote,
        listener,
        permit,
        open,
    } = connection;
    // The handshake has the head's time limit: a client that stalls in it is dropped.
    let handshake =
        tokio::time::timeout(protocols.header_read_timeout, tls.acceptor().accept(stream));
    let stream = tokio::select! {
        result = handshake => match result {
            Ok(Ok(stream)) => stream,
            Ok(Err(e)) => {
                open.counters().tls_handshake_failed();
                tracing::debug!(%remote, %listener, error = %e, "TLS handshake failed");
                return;
            }
            Err(_) => {
                open.counters().tls_handshake_failed();
                tracing::debug!(%remote, %listener, "TLS handshake timed out");
                return;
            }
        },
        _ = stopped(&mut shutdown) => return,
    };
    let (_, session) = stream.get_ref();
    let protocol = match session.alpn_protocol() {
        Some(b"h2") => Protocol::Http2,
        _ => Protocol::Http1,
    };
    let info = ConnectionInfo {
        listener,
        remote,
        remote_text: Arc::from(remote.to_string()),
        tls: true,
        sni: session.server_name().map(Arc::from),
        client_cert_subject: session
            .peer_certificates()
            .and_then(|chain| chain.first())
            .and_then(subject_of),
        tls_version: session.protocol_version().and_then(|v| v.as_str()),
        tls_cipher: session
            .negotiated_cipher_suite()
            .and_then(|suite| suite.suite().as_str()),
        shutdown: shutdown.clone(),
        counters: open.shared_counters(),
    };
    let io = WatchedIo::new(stream, protocol, permit, open, protocols);
    serve_http(io, info, Some(tls.clone()), shared, protocols, shutdown).await;
}
