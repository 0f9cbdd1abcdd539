//! `static-upstreams`: a gatekeeper upstream plugin that reads upstreams and backends from a YAML
//! file (config key `file`, e.g. gatekeeper's `--upstream-file`) and pushes them all at start.
//!
//! The file format is the original gatekeeper project's; see [`file`].

mod file;
mod plugin;

use std::process::ExitCode;

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    gatekeeper_plugin_sdk::serve_upstream(plugin::StaticUpstreams::default()).await
}
