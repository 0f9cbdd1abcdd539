//! `static-upstreams`: a gatekeeper upstream plugin that reads upstreams and backends from a YAML
//! file (config key `file`, e.g. gatekeeper's `--upstream-file`), pushes them all at start, and
//! pushes the changes whenever the file changes ([`watch`]). At a start after a restart, an
//! upstream or backend the proxy still holds with other content (the file changed meanwhile) is
//! removed and pushed again.
//!
//! Config keys:
//!
//! | key | default | meaning |
//! |---|---|---|
//! | `file` | required | the YAML file |
//! | `backend_ids` (or `backend-ids`, from `--upstream-backend-ids`) | `url` | backend ids: `url` (the URL, `URL#2` for a repeat) or `index` (list position) |
//!
//! The file format is the original gatekeeper project's; see [`file`].

mod diff;
mod file;
mod plugin;
mod values;
mod watch;

use std::process::ExitCode;

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    gatekeeper_plugin_sdk::serve_upstream(plugin::StaticUpstreams::default()).await
}
