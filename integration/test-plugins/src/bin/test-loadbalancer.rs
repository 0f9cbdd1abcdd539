//! `test-loadbalancer`: a loadbalancer plugin for the integration suites that picks the backend
//! named by `x-backend`, else round robin, and records registry changes and upstream metrics.
//! Settings, behaviour and the shape of its records:
//! [`gatekeeper_test_plugins::loadbalancer`].

use std::process::ExitCode;

use gatekeeper_test_plugins::loadbalancer::TestLoadBalancer;

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    match gatekeeper_test_plugins::command_line("test-loadbalancer") {
        Ok(args) => gatekeeper_plugin_sdk::serve_loadbalancer(TestLoadBalancer::new(args)).await,
        Err(code) => code,
    }
}
