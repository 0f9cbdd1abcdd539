//! `gatekeeper plugin call`: starts the plugin, sends one hook call, prints its result as JSON
//! on stdout (or, for an error answer, `{"error": {...}}` with the plugin's code and message),
//! stops the plugin.

use serde_json::Value;

use super::args::{read_json_object, CallArgs};
use super::request::{checked_params, hook_of, request_params, takes_request, RequestSpec};
use super::session::Session;
use super::{outcome::Failure, Outcome};

/// Runs `call`.
pub async fn run(args: &CallArgs) -> Outcome<()> {
    let method = hook_of(args.target.plugin_type, &args.hook)?;
    let params = match &args.input {
        Some(input) => read_json_object("--input", input)?,
        None if takes_request(method.name) => request_params(&RequestSpec {
            method: &args.method,
            path: &args.path,
            host: &args.host,
            remote_addr: &args.remote_addr,
            headers: &args.headers,
        })?,
        None => {
            return Err(Failure::Usage(format!(
                "`{}` needs its params: --input JSON|@FILE|-",
                method.name
            )))
        }
    };
    let params = checked_params(method, &params)?;
    let mut session = Session::start(&args.target).await?;
    let outcome = session.call(method, &params).await;
    session.stop().await;
    match outcome {
        Ok(result) => {
            print_json(&result);
            Ok(())
        }
        Err(failure) => {
            if let Failure::ErrorAnswer { .. } = failure {
                print_json(&failure.to_json());
            }
            Err(failure)
        }
    }
}

/// Prints one JSON value on one line of stdout.
pub fn print_json(value: &Value) {
    println!("{value}");
}
