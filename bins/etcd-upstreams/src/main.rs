//! `etcd-upstreams`: a gatekeeper upstream plugin that reads upstreams and backends from an etcd
//! v3 key prefix and follows it ([`plugin`]); and, as `etcd-upstreams register`, a helper that
//! registers a backend under that prefix with a lease and keeps it alive ([`register`]).
//!
//! Keys ([`keys`]): `PREFIX/upstreams/ID` (an upstream as `add_upstream` takes it, JSON) and
//! `PREFIX/backends/UPSTREAM/ID` (a backend as `add_backend` takes it, JSON). Config keys:
//! [`settings`]. Behaviour when etcd fails: [`follow`] and [`plugin`].
//!
//! Without a subcommand (as gatekeeper runs it) the program is the plugin.

mod cache;
mod follow;
mod keys;
mod mirror;
mod plugin;
mod push;
mod read;
mod register;
mod settings;
mod status;
#[cfg(test)]
mod test_support;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// The command line.
#[derive(Debug, Parser)]
#[command(
    name = "etcd-upstreams",
    about = "gatekeeper upstream plugin following an etcd prefix (run by gatekeeper without arguments)"
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
enum Command {
    /// Registers a backend under the prefix with a lease, keeps the lease alive, and revokes it
    /// on SIGTERM or SIGINT (the key goes at once); if the helper is killed, the key goes when
    /// the lease expires (TTL).
    Register(register::Args),
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    match Cli::parse().command {
        None => gatekeeper_plugin_sdk::serve_upstream(plugin::EtcdUpstreams::default()).await,
        Some(Command::Register(args)) => register::main(args).await,
    }
}
