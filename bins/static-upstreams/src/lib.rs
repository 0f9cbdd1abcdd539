//! `static-upstreams`: a gatekeeper upstream plugin that reads upstreams and backends from a YAML
//! file (config key `file`, e.g. gatekeeper's `--upstream-file`), pushes them all at start in
//! one `apply_batch` with `replace: true` ([`push`]), and pushes each new version of the file the
//! same way ([`watch`]): the proxy applies a version whole or not at all, replaces what changed
//! and removes what the file no longer has (also at a start after a restart, when the file
//! changed meanwhile).
//!
//! Config keys:
//!
//! | key | default | meaning |
//! |---|---|---|
//! | `file` | required | the YAML file |
//! | `backend_ids` (or `backend-ids`, from `--upstream-backend-ids`) | `url` | backend ids: `url` (the URL, `URL#2` for a repeat) or `index` (list position) |
//!
//! The file format is the original gatekeeper project's; see [`file`].

//!
//! The binary (`main.rs`) only calls [`serve`]; this library exists so that the fuzz targets
//! reach the file parser ([`fuzzing`]).

mod file;
#[doc(hidden)]
pub mod fuzzing;
mod plugin;
mod push;
mod values;
mod watch;

use std::process::ExitCode;

/// Serves the plugin on the connection the proxy set up, until the proxy stops it.
pub async fn serve() -> ExitCode {
    gatekeeper_plugin_sdk::serve_upstream(plugin::StaticUpstreams::default()).await
}
