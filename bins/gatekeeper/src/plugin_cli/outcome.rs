//! Why a `gatekeeper plugin` command failed ([`Failure`]), each kind with its own exit code
//! (listed in [`super::args::EXIT_CODES`]) and, for `replay`, its JSON error object.

use serde_json::{json, Value};

/// Exit code: the plugin answered with an error (or refused its config).
pub const ERROR_ANSWER: u8 = 1;
/// Exit code: bad usage (flags, input, an unknown hook, params of the wrong shape).
pub const USAGE: u8 = 2;
/// Exit code: a result of the wrong shape, or a protocol problem.
pub const BAD_RESULT: u8 = 3;
/// Exit code: no answer in time.
pub const TIMEOUT: u8 = 4;
/// Exit code: the plugin could not be started, exited or closed its connection.
pub const CRASH: u8 = 5;

/// Why a command failed.
#[derive(Debug, thiserror::Error)]
pub enum Failure {
    /// Bad flags or input.
    #[error("{0}")]
    Usage(String),
    /// The plugin answered with a JSON-RPC error.
    #[error("the plugin answered `{hook}` with an error: {message} (code {code})")]
    ErrorAnswer {
        /// The hook called.
        hook: String,
        /// The error's code.
        code: i32,
        /// The error's message.
        message: String,
        /// The error's data, if any.
        data: Option<Value>,
    },
    /// The plugin refused its config (an error answer to `configure`).
    #[error("{0}")]
    ConfigRefused(String),
    /// The plugin's result is not what the hook's result type allows.
    #[error("{0}")]
    BadResult(String),
    /// The plugin broke the protocol (check).
    #[error("the plugin broke the protocol: {0}")]
    Protocol(String),
    /// No answer within the timeout.
    #[error("{0}")]
    Timeout(String),
    /// The plugin could not be started, exited or closed its connection.
    #[error("{0}")]
    Start(String),
}

impl Failure {
    /// The exit code of this kind of failure.
    pub fn exit_code(&self) -> u8 {
        match self {
            Failure::ErrorAnswer { .. } | Failure::ConfigRefused(_) => ERROR_ANSWER,
            Failure::Usage(_) => USAGE,
            Failure::BadResult(_) | Failure::Protocol(_) => BAD_RESULT,
            Failure::Timeout(_) => TIMEOUT,
            Failure::Start(_) => CRASH,
        }
    }

    /// The kind's name in JSON output.
    pub fn kind(&self) -> &'static str {
        match self {
            Failure::Usage(_) => "usage",
            Failure::ErrorAnswer { .. } => "error_answer",
            Failure::ConfigRefused(_) => "config_refused",
            Failure::BadResult(_) => "bad_result",
            Failure::Protocol(_) => "protocol",
            Failure::Timeout(_) => "timeout",
            Failure::Start(_) => "crash",
        }
    }

    /// The failure as a JSON error object: `{"error": {"kind", "message", "code"?, "data"?}}`;
    /// for an error answer, `code`, `message` and `data` are the plugin's own.
    pub fn to_json(&self) -> Value {
        match self {
            Failure::ErrorAnswer {
                code,
                message,
                data,
                ..
            } => {
                json!({"error": {"kind": self.kind(), "code": code, "message": message, "data": data}})
            }
            other => json!({"error": {"kind": other.kind(), "message": other.to_string()}}),
        }
    }
}
