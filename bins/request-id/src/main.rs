//! `request-id`: a gatekeeper modifier plugin that gives every request an `x-request-id` header
//! (keeping a sane one the client sent) and echoes it on the response.

mod plugin;

use std::process::ExitCode;

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    gatekeeper_plugin_sdk::serve_modifier(plugin::RequestId::default()).await
}
