//! `simple-loadbalancer`: a gatekeeper loadbalancer plugin that picks a backend at random among
//! the backends gatekeeper told it about for the request's upstream (the original gatekeeper
//! project's default balancer). It takes no config.
//!
//! An upstream without backends gets no backend (`null`, which gatekeeper answers with 503).
//! See [`plugin`] for how it keeps its state.

mod plugin;

use std::process::ExitCode;

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    gatekeeper_plugin_sdk::serve_loadbalancer(plugin::SimpleLoadBalancer::default()).await
}
