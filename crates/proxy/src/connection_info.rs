//! [`ConnectionInfo`]: what the request path knows about the client connection a request came
//! on. The listeners fill it in; the request path reads it.

use std::net::SocketAddr;
use std::sync::Arc;

/// What the request path knows about the connection a request came on.
#[derive(Debug, Clone)]
pub(crate) struct ConnectionInfo {
    /// The listener's name.
    pub(crate) listener: Arc<str>,
    /// The client's address.
    pub(crate) remote: SocketAddr,
    /// Whether the connection is TLS.
    #[allow(dead_code)] // for X-Forwarded-Proto and plugins
    pub(crate) tls: bool,
    /// The SNI name the client asked for (TLS only).
    #[allow(dead_code)] // for X-Forwarded-Host and plugins
    pub(crate) sni: Option<Arc<str>>,
    /// The subject of the client certificate the handshake verified (mTLS listeners only; as
    /// the `x-client-cert-subject` request header carries it).
    pub(crate) client_cert_subject: Option<http::HeaderValue>,
}
