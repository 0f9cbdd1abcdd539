//! Errors: the JSON-RPC error object on the wire, gatekeeper's own error codes, and the error a
//! local caller gets from [`crate::Peer::call`].

use std::time::Duration;

pub use jsonrpsee_types::{ErrorCode, ErrorObjectOwned as ErrorObject};

/// Error codes of the JSON-RPC 2.0 spec and gatekeeper's own (in the spec's server range).
pub mod codes {
    /// Invalid JSON was received.
    pub const PARSE_ERROR: i32 = -32700;
    /// The JSON sent is not a valid request object.
    pub const INVALID_REQUEST: i32 = -32600;
    /// The method does not exist or is not available.
    pub const METHOD_NOT_FOUND: i32 = -32601;
    /// Invalid method parameters.
    pub const INVALID_PARAMS: i32 = -32602;
    /// Internal error of the side that answers.
    pub const INTERNAL_ERROR: i32 = -32603;
    /// The handshake token is wrong, or a call came before a successful handshake.
    pub const UNAUTHORIZED: i32 = -32000;
    /// The plugin speaks a protocol version the proxy does not.
    pub const UNSUPPORTED_VERSION: i32 = -32001;
    /// Manager: the upstream named in the call does not exist.
    pub const UNKNOWN_UPSTREAM: i32 = -32010;
    /// Manager: the id exists with different content, or a prefix or hostname is already claimed
    /// by another upstream on an overlapping set of listeners.
    pub const CONFLICT: i32 = -32011;
    /// Manager: a field has a value that cannot be used (e.g. an unparseable backend address).
    pub const INVALID_VALUE: i32 = -32012;
    /// Manager: the backend named in the call does not exist in its upstream.
    pub const UNKNOWN_BACKEND: i32 = -32013;
    /// The plugin cannot answer right now (e.g. not started); the proxy applies its failure policy.
    pub const UNAVAILABLE: i32 = -32020;
}

/// Builds an error object with a code and message and no data.
pub fn error_object(code: i32, message: impl Into<String>) -> ErrorObject {
    ErrorObject::owned(code, message.into(), None::<()>)
}

/// Why a call made with [`crate::Peer::call`] did not produce a result.
#[derive(Debug, thiserror::Error)]
pub enum CallError {
    /// No response arrived within the call's timeout.
    #[error("`{method}` timed out after {timeout:?}")]
    Timeout {
        /// The method that was called.
        method: String,
        /// The timeout that elapsed.
        timeout: Duration,
    },
    /// The connection closed before the response arrived, or was already closed.
    #[error("connection closed before `{method}` was answered")]
    Closed {
        /// The method that was called.
        method: String,
    },
    /// The other side answered with a JSON-RPC error.
    #[error("`{method}` failed: {} (code {})", error.message(), error.code())]
    Remote {
        /// The method that was called.
        method: String,
        /// The error object the other side sent.
        error: ErrorObject,
    },
    /// The result did not have the expected shape.
    #[error("`{method}` returned a result of the wrong type: {source}")]
    InvalidResult {
        /// The method that was called.
        method: String,
        /// What did not match.
        #[source]
        source: serde_json::Error,
    },
    /// The encoded call is longer than the connection's line limit.
    #[error("`{method}` call is {bytes} bytes, over the {limit}-byte line limit")]
    TooLarge {
        /// The method that was called.
        method: String,
        /// Size of the encoded call.
        bytes: usize,
        /// The line limit.
        limit: usize,
    },
    /// The params could not be serialized.
    #[error("could not encode params of `{method}`: {source}")]
    Encode {
        /// The method that was called.
        method: String,
        /// The serializer's error.
        #[source]
        source: serde_json::Error,
    },
}

impl CallError {
    /// The method the failed call was for.
    pub fn method(&self) -> &str {
        match self {
            CallError::Timeout { method, .. }
            | CallError::Closed { method }
            | CallError::Remote { method, .. }
            | CallError::InvalidResult { method, .. }
            | CallError::TooLarge { method, .. }
            | CallError::Encode { method, .. } => method,
        }
    }
}
