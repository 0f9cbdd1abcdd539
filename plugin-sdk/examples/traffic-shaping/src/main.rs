//! `traffic-shaping`: an example gatekeeper modifier plugin that caps how many requests each
//! upstream has in flight. A request takes a slot of its upstream (waiting a little for one) or
//! is answered `503` with `Retry-After: 1`; the slot comes back when the response (or the
//! proxy's error response) passes, or after a long timeout if it never does.
//!
//! See README.md for the config keys and how to run it.

mod plugin;
mod slots;
#[cfg(test)]
mod testhost;

use std::process::ExitCode;

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    gatekeeper_plugin_sdk::serve_modifier(plugin::TrafficShaping::default()).await
}
