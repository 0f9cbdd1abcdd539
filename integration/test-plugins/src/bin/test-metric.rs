//! `test-metric`: a metric plugin for the integration suites that records every metric batch it
//! receives.
//! Settings, behaviour and the shape of its records:
//! [`gatekeeper_test_plugins::metric`].

use std::process::ExitCode;

use gatekeeper_test_plugins::metric::TestMetric;

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    match gatekeeper_test_plugins::command_line("test-metric") {
        Ok(args) => gatekeeper_plugin_sdk::serve_metric(TestMetric::new(args)).await,
        Err(code) => code,
    }
}
