//! [`ConnectionInfo`]: what the request path knows about the client connection a request came
//! on. The listeners fill it in; the request path reads it.

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::sync::watch;

use crate::metrics::listener_stats::ListenerCounters;

/// What the request path knows about the connection a request came on.
#[derive(Debug, Clone)]
pub(crate) struct ConnectionInfo {
    /// The listener's name.
    pub(crate) listener: Arc<str>,
    /// The client's address.
    pub(crate) remote: SocketAddr,
    /// `remote` as text (`ip:port`), formatted once per connection for the plugins' views.
    pub(crate) remote_text: Arc<str>,
    /// Whether the connection is TLS.
    #[allow(dead_code)] // for X-Forwarded-Proto and plugins
    pub(crate) tls: bool,
    /// The SNI name the client asked for (TLS only).
    pub(crate) sni: Option<Arc<str>>,
    /// The subject of the client certificate the handshake verified (mTLS listeners only; as
    /// the `x-client-cert-subject` request header carries it).
    pub(crate) client_cert_subject: Option<http::HeaderValue>,
    /// The TLS version negotiated (`TLSv1_3`, …; TLS only).
    pub(crate) tls_version: Option<&'static str>,
    /// The TLS cipher suite negotiated (TLS only).
    pub(crate) tls_cipher: Option<&'static str>,
    /// Turns true when the listener stops (shutdown or reload): a request cut after that was
    /// cut by the shutdown grace period.
    pub(crate) shutdown: watch::Receiver<bool>,
    /// The listener's connection counters (requests refused by the per-client rate).
    pub(crate) counters: Arc<ListenerCounters>,
}

impl ConnectionInfo {
    /// Whether the listener is stopping.
    pub(crate) fn stopping(&self) -> bool {
        *self.shutdown.borrow()
    }
}
