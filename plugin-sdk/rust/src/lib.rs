//! Write gatekeeper plugins in Rust.
//!
//! A gatekeeper plugin is a separate process: gatekeeper starts it with a few `GATEKEEPER_*`
//! environment variables, the plugin connects to a Unix socket and the two exchange JSON-RPC 2.0
//! calls, one JSON object per line (docs/protocol.md describes the wire). This crate hides all of
//! that: implement [`Plugin`] plus the trait of your plugin type, and hand the plugin to its
//! `serve_*` function, which
//!
//! 1. sets up `tracing` logging to stderr (gatekeeper copies a plugin's stderr into its log);
//! 2. reads the environment ([`PluginEnv`]) and fails with a clear message when it is missing,
//!    i.e. when the program was not started by gatekeeper;
//! 3. connects and handshakes (the token, the protocol version, the hooks it implements);
//! 4. answers calls, each on its own task, so a slow call delays no other;
//! 5. returns [`ExitCode::SUCCESS`](std::process::ExitCode) once `stop` has been answered or
//!    gatekeeper has closed the connection, and a failure code (with the error on stderr) if
//!    anything went wrong before.
//!
//! | plugin type | trait | serve with | the proxy calls (hooks) | the plugin calls |
//! |---|---|---|---|---|
//! | all | [`Plugin`] | | `configure` ([`Plugin::check`] when checking only), `start`, `heartbeat`, `stop` | [`ConfigReporter`]: `config_status` |
//! | upstream | [`UpstreamPlugin`] | [`serve_upstream`] | (optional) `upstream_metric` | [`Manager`]: `add_upstream`, `remove_upstream`, `add_backend`, `remove_backend`, `apply_batch` (changes built with [`BatchChange`], or from a [`desired::DesiredState`]) |
//! | modifier | [`ModifierPlugin`] | [`serve_modifier`] | `modify_request`, `modify_response`, `modify_error_response` | |
//! | router | [`RouterPlugin`] | [`serve_router`] | `add_upstream`, `remove_upstream`, `route_request` | |
//! | loadbalancer | [`LoadBalancerPlugin`] | [`serve_loadbalancer`] | `add_backend`, `remove_backend`, `upstream_metric`, `get_backend` | |
//! | metric | [`MetricPlugin`] | [`serve_metric`] | `event_metric`, `profiling_metric`, `plugin_metric`, `request_metric`, `upstream_metric` (batches) | |
//!
//! Trait methods have defaults (do nothing, change nothing, no route, no backend) and are
//! implemented with `async fn`. An error is a [`HookError`]: a JSON-RPC error code and message
//! for the proxy.
//!
//! Each type's trait has a `hooks()` method: the hooks sent in the handshake. The proxy never
//! calls a hook that was not declared, and the SDK refuses one if it arrives. The default
//! declares every hook of the type ([`MODIFIER_HOOKS`], [`ROUTER_HOOKS`],
//! [`LOADBALANCER_HOOKS`], [`METRIC_HOOKS`]), except for upstream plugins, which declare none
//! unless they override it.
//!
//! A hook call in flight on a process that dies is sent once more to another process, so a hook
//! may run twice for one request; list the hooks that must not in [`Plugin::no_retry`].
//!
//! # Runtime
//!
//! Run plugins on tokio's single-threaded runtime (`#[tokio::main(flavor = "current_thread")]`):
//! a hook does little work per call, and one thread saves the cross-thread wake-ups that
//! otherwise cost more than the hook (measured: one modifier hook per request went from 0.58x
//! to 0.71x of gatekeeper's plugin-free throughput on two cores). Calls still run concurrently
//! as tasks. For CPU-heavy hooks, use `tokio::task::spawn_blocking`, or run several processes
//! with `instances = N`.
//!
//! # Example
//!
//! A modifier that adds a header to every response:
//!
//! ```no_run
//! use std::process::ExitCode;
//!
//! use gatekeeper_plugin_sdk::{
//!     set_header, HookError, ModifierPlugin, ModifyResponse, ModifyResponseParams,
//!     ModifyResponseResult, Plugin, Method,
//! };
//!
//! struct PoweredBy;
//!
//! impl Plugin for PoweredBy {}
//!
//! impl ModifierPlugin for PoweredBy {
//!     fn hooks(&self) -> &'static [&'static str] {
//!         &[ModifyResponse::NAME]
//!     }
//!
//!     async fn modify_response(
//!         &self,
//!         params: ModifyResponseParams,
//!     ) -> Result<ModifyResponseResult, HookError> {
//!         let mut response = params.response;
//!         set_header(&mut response.headers, "x-powered-by", "gatekeeper");
//!         Ok(ModifyResponseResult { response: Some(response), patch: None })
//!     }
//! }
//!
//! #[tokio::main(flavor = "current_thread")]
//! async fn main() -> ExitCode {
//!     gatekeeper_plugin_sdk::serve_modifier(PoweredBy).await
//! }
//! ```
//!
//! To test a plugin without gatekeeper, [`testing`] runs it in memory as gatekeeper runs it
//! (`testing::modifier(plugin, config).await?`, then `host.modify_request(..)`, each result
//! checked as gatekeeper checks it). Underneath, the `run_*` functions ([`run_upstream`],
//! [`run_modifier`], [`run_router`], [`run_loadbalancer`], [`run_metric`]) serve it over any
//! connection, e.g. one end of `tokio::io::duplex` with a [`rpc::Peer`] playing the proxy on the
//! other end.
//!
//! Reading config values and requests: [`config`] (typed values from a flag's string or a TOML
//! value) and [`helpers`] (cookies, query parameters).
//!
//! The SDK's reference plugin is [`conformance`]: one plugin of every type, written with these
//! traits, that behaves exactly like the conformance plugins of the other SDKs
//! (`plugin-sdk/conformance`), and that the shared conformance suite runs.
//!
//! For a plugin that must speak the protocol itself (a test tool that breaks it on purpose, a
//! bridge to another process), [`connect`] does the setup the `serve_*` functions do (logging,
//! environment, type check, socket) and hands over the connection.

pub mod config;
pub mod conformance;
pub mod desired;
mod dispatch;
mod env;
mod error;
pub mod helpers;
mod loadbalancer;
mod manager;
mod metric;
mod plugin;
mod router;
mod serve;
pub mod testing;

pub use env::PluginEnv;
pub use error::{HookError, ServeError};
pub use loadbalancer::{LoadBalancerPlugin, LOADBALANCER_HOOKS};
pub use manager::{ConfigReporter, Manager, DEFAULT_MANAGER_TIMEOUT};
pub use metric::{MetricPlugin, METRIC_HOOKS};
pub use plugin::{ModifierPlugin, Plugin, UpstreamPlugin, MODIFIER_HOOKS};
pub use router::{RouterPlugin, ROUTER_HOOKS};
pub use serve::{
    connect, init_logging, run_loadbalancer, run_metric, run_modifier, run_router, run_upstream,
    serve_loadbalancer, serve_metric, serve_modifier, serve_router, serve_upstream,
};

/// The protocol crate, for what this crate does not re-export.
pub use gatekeeper_rpc as rpc;
/// Every method type of the protocol table and its params and results (`ModifyRequest`,
/// `ModifyRequestParams`, …), the table itself (`METHODS`) and its derived lists (`hooks_of`).
pub use gatekeeper_rpc::methods::*;
pub use gatekeeper_rpc::metrics::{
    events, now_ms, EventMetric, ModifierPhase, Phases, PluginMetric, ProfilingMetric,
    RequestMetric, UpstreamMetric,
};
/// Patch results: the changes a modifier makes, instead of a whole request or response (the
/// SDK sends returned whole values as patches by itself).
/// The request parts a hook may declare it needs ([`ModifierPlugin::request_parts`]).
pub use gatekeeper_rpc::parts::RequestPart;
pub use gatekeeper_rpc::patch::{
    FieldName, FieldValue, FieldValues, PatchStatus, RequestPatch, ResponsePatch,
};
pub use gatekeeper_rpc::types::{
    header, set_header, Backend, Headers, HttpRequest, HttpResponse, Object, ProxyError, Upstream,
    BALANCERS,
};
pub use gatekeeper_rpc::{codes, CallError, PROTOCOL_VERSION};
