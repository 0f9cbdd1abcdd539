//! [`TestHostError`]: what went wrong in a test host, as a test reads it.

use crate::error::ServeError;

/// What went wrong in a test host.
#[derive(Debug, thiserror::Error)]
pub enum TestHostError {
    /// Serving could not begin or ended with an error (wrong type, handshake failed, …).
    #[error("the plugin's serve call failed: {0}")]
    Serve(#[from] ServeError),
    /// The handshake is one gatekeeper refuses.
    #[error("gatekeeper refuses the handshake: {0}")]
    BadHandshake(String),
    /// A hook called that the plugin did not declare (gatekeeper never calls it).
    #[error("the plugin did not declare `{hook}` in its handshake (it declared: {declared}), so gatekeeper never calls it")]
    NotDeclared {
        /// The hook called.
        hook: String,
        /// The declared hooks, comma-separated.
        declared: String,
    },
    /// Params gatekeeper never sends.
    #[error("gatekeeper never sends these params to `{method}`: {reason}")]
    BadParams {
        /// The method called.
        method: String,
        /// What is wrong.
        reason: String,
    },
    /// The plugin answered with an error.
    #[error("the plugin answered `{method}` with an error: {message} (code {code})")]
    ErrorAnswer {
        /// The method called.
        method: String,
        /// The error's code.
        code: i32,
        /// The error's message.
        message: String,
    },
    /// A result gatekeeper refuses (it then counts the call as failed).
    #[error("the plugin answered `{method}` with a result gatekeeper refuses (it would count the call as failed): {reason}; the result: {result}")]
    BadResult {
        /// The method called.
        method: String,
        /// What does not parse.
        reason: String,
        /// The result as sent.
        result: String,
    },
    /// No answer in time, or the plugin went away.
    #[error("`{method}`: {reason}")]
    NoAnswer {
        /// The method called.
        method: String,
        /// Timeout, or connection closed.
        reason: String,
    },
}

impl TestHostError {
    /// The error code, for an error answer.
    pub fn code(&self) -> Option<i32> {
        match self {
            TestHostError::ErrorAnswer { code, .. } => Some(*code),
            _ => None,
        }
    }
}
