//! Plugins for the integration suites (`integration/*.bats`), which run them under the real
//! gatekeeper binary. Each is a thin `main` in `src/bin/` over a module here, written with the
//! SDK (except [`misbehave`], which breaks the protocol on purpose and so speaks it itself).
//!
//! | binary | type | module |
//! |---|---|---|
//! | `test-router` | router | [`router`] |
//! | `test-loadbalancer` | loadbalancer | [`loadbalancer`] |
//! | `test-metric` | metric | [`metric`] |
//! | `test-modifier` | modifier | [`modifier`] |
//! | `test-misbehave` | modifier | [`misbehave`] |
//!
//! `test-backend` is no plugin: an echo backend speaking HTTP/1.1 and h2c (see its file).
//!
//! All of them take their [`Settings`] from the `configure` map (gatekeeper's
//! `--<type>-<key> VALUE` flags and `[plugin.config]` tables), overridden by `--key VALUE` words
//! on their own command line (`--modifier-plugin "test-modifier --context_key a"`), which is how
//! two instances of one binary get different settings. With the key `file`, a plugin appends
//! what it receives to that file as JSON lines ([`Recorder`]), flushed line by line so a test
//! can read the file while gatekeeper runs.

pub mod loadbalancer;
pub mod metric;
pub mod misbehave;
pub mod modifier;
pub mod record;
pub mod router;
pub mod settings;

pub use record::Recorder;
pub use settings::Settings;

use std::process::ExitCode;

/// What every `main` does first: reads [`Settings`] from the command line, or prints why it
/// cannot (exit status 2).
pub fn command_line(program: &str) -> Result<Settings, ExitCode> {
    Settings::from_args(std::env::args().skip(1)).map_err(|error| {
        eprintln!("{program}: {error}");
        ExitCode::from(2)
    })
}
