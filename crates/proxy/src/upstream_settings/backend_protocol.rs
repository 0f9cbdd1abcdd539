//! [`BackendProtocol`]: how the proxy speaks to an upstream's backends (its `backend_protocol`).
//! The clients for each protocol are in [`crate::forward`].

use gatekeeper_rpc::types::Upstream;

/// How the proxy speaks to an upstream's backends (the upstream's `backend_protocol`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum BackendProtocol {
    /// `http1`: HTTP/1.1, one request at a time per connection (the default).
    #[default]
    Http1,
    /// `h2c`: HTTP/2 over plain TCP with prior knowledge; requests share connections.
    H2c,
}

impl BackendProtocol {
    /// The name used in `Upstream.backend_protocol`.
    pub fn as_str(self) -> &'static str {
        match self {
            BackendProtocol::Http1 => "http1",
            BackendProtocol::H2c => "h2c",
        }
    }

    /// The protocol an upstream asks for; the default when it names none (or an unknown one,
    /// which the registry refuses before it gets here).
    pub fn of(upstream: &Upstream) -> Self {
        upstream
            .backend_protocol
            .as_deref()
            .and_then(|name| name.parse().ok())
            .unwrap_or_default()
    }
}

impl std::str::FromStr for BackendProtocol {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        [BackendProtocol::Http1, BackendProtocol::H2c]
            .into_iter()
            .find(|p| p.as_str() == s)
            .ok_or_else(|| format!("unknown backend protocol `{s}`"))
    }
}
