//! `test-modifier`: a modifier plugin for the integration suites whose hooks, delay, failure,
//! header and context behaviour come from its settings, and which records every hook call.
//! Settings, behaviour and the shape of its records: [`gatekeeper_test_plugins::modifier`].

use std::process::ExitCode;

use gatekeeper_plugin_sdk::rpc::env::PLUGIN_NAME;
use gatekeeper_test_plugins::modifier::TestModifier;

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let args = match gatekeeper_test_plugins::command_line("test-modifier") {
        Ok(args) => args,
        Err(code) => return code,
    };
    let name = std::env::var(PLUGIN_NAME).unwrap_or_else(|_| "test-modifier".to_owned());
    match TestModifier::new(name, args) {
        Ok(plugin) => gatekeeper_plugin_sdk::serve_modifier(plugin).await,
        Err(error) => {
            eprintln!("test-modifier: {error}");
            ExitCode::from(2)
        }
    }
}
