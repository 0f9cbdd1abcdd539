//! gatekeeper: read flags and config, set up logging, run until a signal. Everything else lives
//! in the crates (`gatekeeper-proxy`, `gatekeeper-plugin-host`) and in `run`.
//!
//! The binary (`main.rs`) only sets the allocator and calls [`main`]; this library exists so
//! that the fuzz targets reach the config and admin parsers ([`fuzzing`]).

mod activation;
mod admin;
mod check;
mod check_plugins;
mod cli;
mod config;
mod ctl;
#[doc(hidden)]
pub mod fuzzing;
mod logging;
mod notify;
mod plugin_cli;
mod plugins;
mod process_metrics;
mod prometheus;
mod reload;
mod run;
mod wiring;

use std::process::ExitCode;

/// Runs gatekeeper with the process arguments: `check`, `plugin` and `ctl` subcommands, or the
/// proxy itself until a signal.
pub fn main() -> ExitCode {
    if std::env::args().nth(1).as_deref() == Some("check") {
        let mut args: Vec<String> = std::env::args().collect();
        args.remove(1);
        return check::main(args);
    }
    if std::env::args().nth(1).as_deref() == Some("plugin") {
        return plugin_cli::main(std::env::args().skip(1).collect());
    }
    if std::env::args().nth(1).as_deref() == Some("ctl") {
        return ctl::main(std::env::args().skip(1).collect());
    }
    let cli = cli::Cli::from_env();
    let settings = match config::Settings::load(&cli) {
        Ok(settings) => settings,
        Err(e) => {
            eprintln!("gatekeeper: {}", describe(&e));
            return ExitCode::from(2);
        }
    };
    if cli.check {
        match serde_json::to_string_pretty(&settings) {
            Ok(json) => println!("{json}"),
            Err(e) => eprintln!("gatekeeper: cannot print the settings: {e}"),
        }
        return ExitCode::SUCCESS;
    }

    logging::init(&settings.log, settings.log_format);

    let runtime = match runtime_for(settings.workers) {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("gatekeeper: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let log_format = settings.log_format;
    match runtime.block_on(run::run(settings)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{}", fatal_text(&describe(&e), log_format));
            ExitCode::from(exit_status_of(&e))
        }
    }
}

/// The runtime serving everything: with one worker a current-thread runtime (the request path
/// then runs on the main thread with no cross-thread wake-ups or work-stealing bookkeeping;
/// measured 1.2× the req/s of a one-worker multi-thread runtime), else a multi-thread runtime
/// with `workers` worker threads.
fn runtime_for(workers: usize) -> std::io::Result<tokio::runtime::Runtime> {
    let mut builder = if workers == 1 {
        tokio::runtime::Builder::new_current_thread()
    } else {
        let mut builder = tokio::runtime::Builder::new_multi_thread();
        builder.worker_threads(workers);
        builder
    };
    builder
        .enable_all()
        .on_thread_park(gatekeeper_allocator::release_idle_memory)
        .build()
}

/// The exit status of a failed start: 2 (as for a bad config file) when what failed is
/// configuration that a restart cannot fix (a plugin refused its config, or its command cannot
/// be run), so that systemd's `RestartPreventExitStatus=2` stops a restart loop; else 1.
fn exit_status_of(error: &anyhow::Error) -> u8 {
    use gatekeeper_plugin_host::error::{HostError, StartError};
    match error.downcast_ref::<HostError>() {
        Some(HostError::Start {
            source: StartError::Configure(_) | StartError::Spawn { .. },
            ..
        }) => 2,
        _ => 1,
    }
}

/// The error that stops gatekeeper, whole, as stderr gets it: `gatekeeper: …`; under the
/// journal every line (a plugin's stderr lines, say) carries the error priority `<3>`, so the
/// journal keeps them together as errors rather than as lines of their own at info level.
fn fatal_text(message: &str, format: logging::LogFormat) -> String {
    let text = format!("gatekeeper: {message}");
    if format != logging::LogFormat::Journald {
        return text;
    }
    text.lines()
        .map(|line| format!("<3>{line}"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// An error with its causes, each said once: the library errors already include their source in
/// their message, so a cause whose text is already there is not repeated.
fn describe(error: &anyhow::Error) -> String {
    let mut text = String::new();
    for cause in error.chain() {
        let message = cause.to_string();
        if text.contains(&message) {
            continue;
        }
        if !text.is_empty() {
            text.push_str(": ");
        }
        text.push_str(&message);
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fatal_error_keeps_every_line_and_marks_each_for_the_journal() {
        let message = "plugin `mod` did not start after 3 attempts: exit status: 3\n  stderr: boom";
        assert_eq!(
            fatal_text(message, logging::LogFormat::Text),
            format!("gatekeeper: {message}")
        );
        assert_eq!(
            fatal_text(message, logging::LogFormat::Journald),
            "<3>gatekeeper: plugin `mod` did not start after 3 attempts: exit status: 3\n<3>  stderr: boom"
        );
    }
}
