//! The flags of `gatekeeper plugin call|check|replay`, and the plugin they name turned into the
//! plugin host's [`PluginSpec`] (the command resolved as gatekeeper resolves it, the config
//! read from JSON or `@file`).

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use gatekeeper_plugin_host::PluginSpec;
use gatekeeper_rpc::methods::PluginType;
use serde_json::{json, Value};

use super::outcome::Failure;
use super::Outcome;
use crate::config::{default_name, resolve_command};

/// The exit codes, as `--help` shows them (docs/plugins.md "Testing your plugin" too).
pub const EXIT_CODES: &str = "\
Exit codes:
  0  done: the result (call), a clean lifecycle (check), every line sent (replay)
  1  the plugin answered with an error (call), or refused its config (call, check, replay)
  2  bad usage: flags, --config or --input not JSON, a hook the type may not declare,
     params of the wrong shape, an unreadable replay line
  3  the plugin answered with a result of the wrong shape (call), or broke the protocol
     (check: a problem listed in its output)
  4  the plugin did not answer within --timeout (call), or did not start in time
  5  the plugin could not be started, exited, or closed its connection (crash: its exit
     status and last stderr lines are printed)";

/// gatekeeper plugin: drive one plugin from the shell, started exactly as gatekeeper starts it.
#[derive(Debug, Parser)]
#[command(name = "gatekeeper plugin", bin_name = "gatekeeper plugin", after_help = EXIT_CODES)]
pub struct PluginCli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Send one hook call and print its result as JSON.
    #[command(after_help = EXIT_CODES)]
    Call(CallArgs),
    /// Run the lifecycle (handshake, configure, start, heartbeat, stop) and print, as JSON,
    /// what the plugin declared, the manager calls it made and any protocol problem.
    #[command(after_help = EXIT_CODES)]
    Check(TargetArgs),
    /// Send every hook call of a JSON-lines file; print one JSON result (or error) per line.
    #[command(after_help = EXIT_CODES)]
    Replay(ReplayArgs),
}

impl Command {
    /// The plugin the subcommand runs.
    pub fn target(&self) -> &TargetArgs {
        match self {
            Command::Call(args) => &args.target,
            Command::Check(args) => args,
            Command::Replay(args) => &args.target,
        }
    }
}

/// The plugin to run.
#[derive(Debug, Args)]
pub struct TargetArgs {
    /// The plugin command: a path, or a name looked up next to gatekeeper and then on PATH.
    /// Words after the first are its arguments (`"python3 token_auth.py"`).
    #[arg(value_name = "CMD")]
    pub command: String,

    /// The plugin's type: upstream, modifier, router, loadbalancer or metric.
    #[arg(long = "type", value_name = "TYPE")]
    pub plugin_type: PluginType,

    /// The config map sent in `configure`: a JSON object, or `@FILE` holding one.
    #[arg(long, value_name = "JSON|@FILE")]
    pub config: Option<String>,

    /// The plugin's name (default: from the command, as gatekeeper names it).
    #[arg(long)]
    pub name: Option<String>,

    /// The hook timeout (as `hook_timeout`, e.g. `500ms`).
    #[arg(long, value_name = "DURATION", default_value = "1s", value_parser = humantime::parse_duration)]
    pub timeout: Duration,

    /// The start timeout (as `start_timeout`).
    #[arg(long, value_name = "DURATION", default_value = "10s", value_parser = humantime::parse_duration)]
    pub start_timeout: Duration,

    /// Directory in which to create the private socket directory (as `--socket-dir`).
    #[arg(long, value_name = "DIR")]
    pub socket_dir: Option<PathBuf>,

    /// Log filter for stderr (RUST_LOG syntax; `info` shows the plugin's own output lines).
    /// Default `warn`.
    #[arg(long, value_name = "FILTER")]
    pub log: Option<String>,
}

/// `gatekeeper plugin call`.
#[derive(Debug, Args)]
pub struct CallArgs {
    /// The plugin to run.
    #[command(flatten)]
    pub target: TargetArgs,

    /// The hook to call (e.g. `modify_request`, `route_request`, `get_backend`).
    #[arg(long, value_name = "HOOK")]
    pub hook: String,

    /// The hook's params: a JSON object, `@FILE` holding one, or `-` for stdin. Without it,
    /// `modify_request` and `route_request` get a request built from the flags below.
    #[arg(long, value_name = "JSON|@FILE|-")]
    pub input: Option<String>,

    /// The built request's method.
    #[arg(long, default_value = "GET")]
    pub method: String,

    /// The built request's path, with its query (`/api/x?q=1`).
    #[arg(long, default_value = "/")]
    pub path: String,

    /// A header of the built request, `NAME: VALUE` (repeatable).
    #[arg(long = "header", short = 'H', value_name = "NAME: VALUE")]
    pub headers: Vec<String>,

    /// The built request's Host.
    #[arg(long, default_value = "localhost")]
    pub host: String,

    /// The built request's client address, `IP:PORT`.
    #[arg(long, default_value = "127.0.0.1:40000")]
    pub remote_addr: String,
}

/// `gatekeeper plugin replay`.
#[derive(Debug, Args)]
pub struct ReplayArgs {
    /// The plugin to run.
    #[command(flatten)]
    pub target: TargetArgs,

    /// The JSON-lines file of calls (`-`: stdin): `{"hook": "...", "params": {...}}` per line,
    /// or an access-log line (`method`, `host`, `path`, …) sent as `modify_request` to a
    /// modifier, `route_request` to a router.
    #[arg(value_name = "FILE")]
    pub file: String,
}

impl TargetArgs {
    /// The plugin host's spec of this plugin: one instance, one start attempt, the given
    /// timeouts, the config map read from `--config`.
    pub fn spec(&self) -> Outcome<PluginSpec> {
        let mut words = self.command.split_whitespace();
        let Some(command) = words.next() else {
            return Err(Failure::Usage("the plugin command is empty".into()));
        };
        let args: Vec<String> = words.map(str::to_owned).collect();
        let command = resolve_command(command).map_err(|e| Failure::Start(e.to_string()))?;
        let name = match &self.name {
            Some(name) => name.clone(),
            None => default_name(&command, &args).unwrap_or_else(|| "plugin".into()),
        };
        let config = match &self.config {
            Some(text) => read_json_object("--config", text)?,
            None => json!({}),
        };
        let spec = json!({
            "name": name,
            "type": self.plugin_type.as_str(),
            "command": command,
            "args": args,
            "config": config,
            "start_attempts": 1,
            "start_timeout": humantime::format_duration(self.start_timeout).to_string(),
            "hook_timeout": humantime::format_duration(self.timeout).to_string(),
        });
        let spec: PluginSpec = serde_json::from_value(spec)
            .map_err(|e| Failure::Usage(format!("bad plugin settings: {e}")))?;
        spec.validate()
            .map_err(|e| Failure::Usage(format!("bad plugin settings: {e}")))?;
        Ok(spec)
    }
}

/// Reads a JSON object given inline, as `@FILE`, or as `-` (stdin).
pub fn read_json_object(flag: &str, text: &str) -> Outcome<Value> {
    let source = read_text(flag, text)?;
    let value: Value = serde_json::from_str(&source)
        .map_err(|e| Failure::Usage(format!("{flag}: not JSON: {e}")))?;
    if !value.is_object() {
        return Err(Failure::Usage(format!("{flag}: expected a JSON object")));
    }
    Ok(value)
}

/// The text of an inline value, `@FILE` or `-` (stdin).
pub fn read_text(flag: &str, text: &str) -> Outcome<String> {
    if text == "-" {
        let mut input = String::new();
        std::io::Read::read_to_string(&mut std::io::stdin(), &mut input)
            .map_err(|e| Failure::Usage(format!("{flag}: cannot read stdin: {e}")))?;
        return Ok(input);
    }
    match text.strip_prefix('@') {
        Some(path) => std::fs::read_to_string(path)
            .map_err(|e| Failure::Usage(format!("{flag}: cannot read {path}: {e}"))),
        None => Ok(text.to_owned()),
    }
}
