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
//! | plugin type | trait | serve with | the proxy calls | the plugin calls |
//! |---|---|---|---|---|
//! | all | [`Plugin`] | | `configure`, `start`, `heartbeat`, `stop` | |
//! | upstream | [`UpstreamPlugin`] | [`serve_upstream`] | | [`Manager`]: `add_upstream`, `remove_upstream`, `add_backend`, `remove_backend` |
//! | modifier | [`ModifierPlugin`] | [`serve_modifier`] | `modify_request`, `modify_response`, `modify_error_response` | |
//!
//! Trait methods have defaults (do nothing, change nothing) and are implemented with `async fn`.
//! An error is a [`HookError`]: a JSON-RPC error code and message for the proxy.
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
//!         Ok(ModifyResponseResult { response: Some(response) })
//!     }
//! }
//!
//! #[tokio::main]
//! async fn main() -> ExitCode {
//!     gatekeeper_plugin_sdk::serve_modifier(PoweredBy).await
//! }
//! ```
//!
//! To test a plugin without gatekeeper, [`run_modifier`] and [`run_upstream`] serve it over any
//! connection, e.g. one end of `tokio::io::duplex` with a [`rpc::Peer`] playing the proxy on the
//! other end.

mod env;
mod error;
mod manager;
mod plugin;
mod serve;

pub use env::PluginEnv;
pub use error::{HookError, ServeError};
pub use manager::{Manager, DEFAULT_MANAGER_TIMEOUT};
pub use plugin::{ModifierPlugin, Plugin, UpstreamPlugin, MODIFIER_HOOKS};
pub use serve::{init_logging, run_modifier, run_upstream, serve_modifier, serve_upstream};

/// The protocol crate, for what this crate does not re-export.
pub use gatekeeper_rpc as rpc;
pub use gatekeeper_rpc::methods::{
    Method, ModifyErrorResponse, ModifyErrorResponseParams, ModifyRequest, ModifyRequestParams,
    ModifyRequestResult, ModifyResponse, ModifyResponseParams, ModifyResponseResult, PluginType,
};
pub use gatekeeper_rpc::types::{
    header, set_header, Backend, Headers, HttpRequest, HttpResponse, Object, ProxyError, Upstream,
};
pub use gatekeeper_rpc::{codes, CallError, PROTOCOL_VERSION};
