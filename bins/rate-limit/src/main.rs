//! `rate-limit`: a built-in gatekeeper modifier plugin that limits how often each client (or
//! each value of a header, such as an API key) may send requests, with a token bucket per key.
//! Requests over the limit are answered directly with `429 Too Many Requests` and a
//! `Retry-After` header; the backend never sees them. The buckets live in this process
//! (`store = "memory"`) or in Redis (`store = "redis"`), where every gatekeeper and every plugin
//! instance using the same Redis shares them.
//!
//! See README.md for the config keys, the algorithm and what a Redis outage does.

mod limiter;
mod plugin;
mod redis_store;
mod settings;
mod shared;
#[cfg(test)]
mod test_support;

use std::process::ExitCode;

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    gatekeeper_plugin_sdk::serve_modifier(plugin::RateLimit::default()).await
}
