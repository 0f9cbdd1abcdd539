//! `dogstatsd-metrics`: a gatekeeper metric plugin that turns gatekeeper's metric batches into
//! [DogStatsD](https://docs.datadoghq.com/developers/dogstatsd/datagram_shell/) lines and sends
//! them over UDP to a Datadog agent (or anything that speaks StatsD with tags).
//!
//! Config keys (gatekeeper's `--metric-<key>` flags or the plugin's `config` table):
//!
//! | key | default | meaning |
//! |---|---|---|
//! | `address` | `127.0.0.1:8125` | `host:port` of the agent (a name is resolved once, at `configure`) |
//! | `prefix` | `gatekeeper.` | put before every metric name |
//! | `tags` | none | constant tags added to every line: a comma list `env:prod,region:eu` (or an array of strings) |
//!
//! What is sent is listed in [`format`]. Lines are packed into datagrams of at most
//! [`format::MAX_DATAGRAM_BYTES`], newline-separated. Sending never blocks and never fails a
//! hook: a datagram the socket refuses is dropped, logged at debug level and counted (the count
//! is logged at `stop`).

mod format;
mod plugin;

use std::process::ExitCode;

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    gatekeeper_plugin_sdk::serve_metric(plugin::DogStatsd::default()).await
}
