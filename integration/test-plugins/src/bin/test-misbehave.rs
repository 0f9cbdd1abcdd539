//! `test-misbehave`: a modifier plugin for the integration suites that breaks the protocol once
//! per process (garbage, an oversized line, an unknown response id) or answers `modify_request`
//! with a result of the wrong type, as its `mode` setting says.
//! Details: [`gatekeeper_test_plugins::misbehave`].

use std::process::ExitCode;

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    match gatekeeper_test_plugins::command_line("test-misbehave") {
        Ok(args) => gatekeeper_test_plugins::misbehave::serve(args).await,
        Err(code) => code,
    }
}
