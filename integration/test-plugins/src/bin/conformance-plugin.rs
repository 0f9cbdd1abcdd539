//! `conformance-plugin`: the Rust SDK's conformance plugin, which `integration/conformance.bats`
//! runs through gatekeeper in every plugin role (the type comes from `GATEKEEPER_PLUGIN_TYPE`).
//! Its behaviour is the SDK's reference plugin, [`gatekeeper_plugin_sdk::conformance`], as
//! `plugin-sdk/conformance/README.md` specifies it for every SDK.

use std::process::ExitCode;

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    gatekeeper_plugin_sdk::conformance::serve().await
}
