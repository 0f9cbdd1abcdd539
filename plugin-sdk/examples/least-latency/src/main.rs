//! `least-latency`: an example gatekeeper loadbalancer plugin that sends each request to the
//! backend of its upstream with the lowest moving average (EWMA) of recent latencies, as
//! reported by the proxy's `upstream_metric` batches. Backends without a recent sample are
//! tried first, one request at a time; failed requests count as a large penalty latency.
//!
//! See README.md for the config keys and how to run it.

mod balancer;
mod plugin;

use std::process::ExitCode;

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    gatekeeper_plugin_sdk::serve_loadbalancer(plugin::LeastLatency::default()).await
}
