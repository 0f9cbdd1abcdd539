//! `gatekeeper plugin …`: drives one plugin from the shell, started exactly as gatekeeper
//! starts it (the plugin host's private socket, token, environment, handshake, `configure`,
//! `start`), with no proxy around it:
//!
//! - `call`: one hook call, its result printed as JSON ([`call`]);
//! - `check`: the whole lifecycle and what the plugin declared ([`check`]);
//! - `replay`: a JSON-lines file of hook calls, one result per line ([`replay`]).
//!
//! The flags are in [`args`]; the plugin's run in [`session`]; the exit codes in [`outcome`].

mod args;
mod call;
mod check;
mod outcome;
mod recording_manager;
mod replay;
mod request;
mod session;
mod stderr_tail;
#[cfg(test)]
mod tests;

use std::process::ExitCode;

use clap::Parser;

use args::{Command, PluginCli};
use outcome::Failure;

/// Runs `gatekeeper plugin ARGS…` (`args` starts with `plugin`); returns the exit status.
pub fn main(args: Vec<String>) -> ExitCode {
    let cli = match PluginCli::try_parse_from(args) {
        Ok(cli) => cli,
        Err(e) => {
            // --help and --version print to stdout and exit 0; usage errors exit 2.
            let _ = e.print();
            return ExitCode::from(u8::try_from(e.exit_code()).unwrap_or(outcome::USAGE));
        }
    };
    stderr_tail::init_logging(cli.command.target().log.as_deref());
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("gatekeeper plugin: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let outcome = runtime.block_on(async {
        match &cli.command {
            Command::Call(args) => call::run(args).await,
            Command::Check(args) => check::run(args).await,
            Command::Replay(args) => replay::run(args).await,
        }
    });
    // Anything the host left running in the background (a plugin that ignored `stop`) goes
    // with the runtime.
    runtime.shutdown_timeout(std::time::Duration::from_secs(1));
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(failure) => {
            eprintln!("gatekeeper plugin: {failure}");
            ExitCode::from(failure.exit_code())
        }
    }
}

/// Shorthand for the failures of this module.
pub(crate) type Outcome<T> = Result<T, Failure>;
