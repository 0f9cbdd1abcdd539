//! The bodies of gatekeeper's fuzz targets, one plain function of the input bytes each
//! ([`TARGETS`]). The cargo-fuzz crate (`fuzz/`, nightly, libFuzzer) calls them from its
//! `fuzz_targets/*.rs`, and `cargo test` replays each one on stable over the committed corpus
//! (`fuzz/corpus/<target>/`) and a bounded number of deterministic mutations of it
//! ([`mutate`], `tests/replay.rs`): the same function both ways, so a crash libFuzzer finds and
//! a regression CI catches are the same code.
//!
//! A target must never panic, whatever the input: a panic is a crash. Each target also checks
//! a few properties of what it parsed (e.g. a normalised path has no dot segment left).
//!
//! - [`rpc_framing`]: NDJSON framing and JSON-RPC message decoding (`crates/rpc`);
//! - [`rpc_method`]: a method's params or result as a plugin sends them, through the protocol
//!   table, and the manager methods applied to a registry as gatekeeper does;
//! - [`request_checks`]: the proxy's request checks (Host, transfer codings, dot segments);
//! - [`config_toml`]: a config file as `gatekeeper check` reads it;
//! - [`upstreams_yaml`]: the static-upstreams plugin's YAML file;
//! - [`admin_http`]: raw connections to the admin socket's and the metrics listener's HTTP
//!   server.

pub mod mutate;
mod targets;

pub use targets::{
    admin_http, config_toml, request_checks, rpc_framing, rpc_method, upstreams_yaml,
};

/// A fuzz target: its name (the `fuzz/fuzz_targets/<name>.rs` file and the
/// `fuzz/corpus/<name>/` directory) and its body.
pub type Target = (&'static str, fn(&[u8]));

/// Every target, by name.
pub const TARGETS: &[Target] = &[
    ("rpc_framing", rpc_framing),
    ("rpc_method", rpc_method),
    ("request_checks", request_checks),
    ("config_toml", config_toml),
    ("upstreams_yaml", upstreams_yaml),
    ("admin_http", admin_http),
];
