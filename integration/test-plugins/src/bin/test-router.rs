//! `test-router`: a router plugin for the integration suites that routes by the `x-route` header
//! and records the upstreams it is told about.
//! Settings, behaviour and the shape of its records:
//! [`gatekeeper_test_plugins::router`].

use std::process::ExitCode;

use gatekeeper_test_plugins::router::TestRouter;

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    match gatekeeper_test_plugins::command_line("test-router") {
        Ok(args) => gatekeeper_plugin_sdk::serve_router(TestRouter::new(args)).await,
        Err(code) => code,
    }
}
