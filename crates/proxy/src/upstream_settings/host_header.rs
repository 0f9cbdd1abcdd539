//! [`HostHeader`]: the `Host` the backends of an upstream receive (its `host_header`). It is
//! applied to forwarded requests by [`crate::forwarded`].

use http::header::HeaderValue;
use http::uri::Authority;

/// The `Host` a backend of an upstream receives (the upstream's `host_header`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum HostHeader {
    /// The client's `Host`, as it is after the modifiers (`host_header` absent or `preserve`).
    #[default]
    Preserve,
    /// The backend's `host:port` (`host_header = "backend"`).
    Backend,
    /// This value (any other `host_header`).
    Literal(HeaderValue),
}

impl HostHeader {
    /// Reads an upstream's `host_header`; a literal must be a `host[:port]`.
    pub fn parse(value: Option<&str>) -> Result<Self, String> {
        match value {
            None | Some("preserve") => Ok(HostHeader::Preserve),
            Some("backend") => Ok(HostHeader::Backend),
            Some(literal) => {
                let invalid = || {
                    format!(
                        "host_header `{}` is not \"preserve\", \"backend\" or a host[:port]",
                        literal.escape_debug()
                    )
                };
                let authority: Authority = literal.parse().map_err(|_| invalid())?;
                if authority.host().is_empty() || literal.contains('@') {
                    return Err(invalid());
                }
                HeaderValue::from_str(literal)
                    .map(HostHeader::Literal)
                    .map_err(|_| invalid())
            }
        }
    }
}
