//! `rate-limit`: an example gatekeeper modifier plugin that limits how often each client (or
//! each value of a header, such as an API key) may send requests, with a token bucket per key.
//! Requests over the limit are answered directly with `429 Too Many Requests` and a
//! `Retry-After` header; the backend never sees them.
//!
//! See README.md for the config keys and how to run it.

mod limiter;
mod plugin;

use std::process::ExitCode;

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    gatekeeper_plugin_sdk::serve_modifier(plugin::RateLimit::default()).await
}
