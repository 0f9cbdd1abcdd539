//! The SDK's errors: [`HookError`], what a plugin method returns and the proxy receives as a
//! JSON-RPC error, and [`ServeError`], why serving a plugin could not start or had to stop.

use std::path::PathBuf;

use gatekeeper_rpc::error::error_object;
use gatekeeper_rpc::{codes, CallError, ErrorObject};

/// An error a plugin method returns. On the wire it becomes a JSON-RPC error object with this
/// code and message; the proxy logs it and applies the plugin's failure policy.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message} (code {code})")]
pub struct HookError {
    code: i32,
    message: String,
}

impl HookError {
    /// An error with an explicit code (see [`codes`](crate::codes)).
    pub fn new(code: i32, message: impl Into<String>) -> Self {
        HookError {
            code,
            message: message.into(),
        }
    }

    /// An internal error of the plugin (`-32603`). Formats `error` with `{:#}`, so an
    /// `anyhow::Error` shows its whole chain of causes.
    pub fn internal(error: impl std::fmt::Display) -> Self {
        HookError::new(codes::INTERNAL_ERROR, format!("{error:#}"))
    }

    /// The params, or the plugin's configuration, cannot be used (`-32602`).
    pub fn invalid_params(message: impl Into<String>) -> Self {
        HookError::new(codes::INVALID_PARAMS, message)
    }

    /// The plugin cannot answer right now, e.g. it has not been configured (`-32020`).
    pub fn unavailable(message: impl Into<String>) -> Self {
        HookError::new(codes::UNAVAILABLE, message)
    }

    /// The JSON-RPC error code.
    pub fn code(&self) -> i32 {
        self.code
    }

    /// The human-readable message.
    pub fn message(&self) -> &str {
        &self.message
    }
}

impl From<HookError> for ErrorObject {
    fn from(error: HookError) -> Self {
        error_object(error.code, error.message)
    }
}

/// A failed call to the proxy (e.g. a [`Manager`](crate::Manager) call made while starting)
/// becomes an error of the hook that made it: the proxy's own error keeps its code, anything
/// else (timeout, closed connection) is an internal error.
impl From<CallError> for HookError {
    fn from(error: CallError) -> Self {
        match error {
            // The code goes in `code` only: shown once, as `… (code -32012)`.
            CallError::Remote { method, error } => HookError::new(
                error.code(),
                format!("`{method}` failed: {}", error.message()),
            ),
            other => HookError::new(codes::INTERNAL_ERROR, other.to_string()),
        }
    }
}

/// Why a plugin could not be served, or stopped being served abnormally.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// A required environment variable is missing: the program was not started by gatekeeper.
    #[error(
        "environment variable {var} is not set: this program is a gatekeeper plugin, \
         run me from gatekeeper (it sets GATEKEEPER_SOCKET, GATEKEEPER_TOKEN and the other \
         GATEKEEPER_* variables)"
    )]
    NotUnderGatekeeper {
        /// The missing variable.
        var: &'static str,
    },
    /// An environment variable has a value that cannot be used.
    #[error("environment variable {var} has an invalid value `{value}`: {reason}")]
    InvalidEnv {
        /// The variable.
        var: &'static str,
        /// Its value.
        value: String,
        /// What is wrong with it.
        reason: String,
    },
    /// gatekeeper started this program as a different type of plugin than it is.
    #[error(
        "gatekeeper started this program as a `{configured}` plugin, but it is an `{actual}` plugin"
    )]
    WrongType {
        /// The type gatekeeper was configured with (`GATEKEEPER_PLUGIN_TYPE`).
        configured: String,
        /// The type this program implements.
        actual: &'static str,
    },
    /// The socket could not be connected to.
    #[error("could not connect to the gatekeeper socket {}: {source}", path.display())]
    Connect {
        /// The socket path.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// The proxy refused the handshake, or did not answer it.
    #[error("handshake with gatekeeper failed: {0}")]
    Handshake(#[source] CallError),
    /// The connection broke in a way that is not a normal close (e.g. a line over the limit).
    #[error("the connection to gatekeeper failed: {0}")]
    Connection(String),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_proxy_error_keeps_its_code_and_shows_it_once() {
        let error = HookError::from(CallError::Remote {
            method: "add_upstream".into(),
            error: error_object(codes::INVALID_VALUE, "prefix must not be empty"),
        });
        assert_eq!(error.code(), codes::INVALID_VALUE);
        assert_eq!(
            error.to_string(),
            "`add_upstream` failed: prefix must not be empty (code -32012)"
        );
    }
}
