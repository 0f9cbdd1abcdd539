//! The `static-upstreams` binary: [`gatekeeper_static_upstreams::serve`] (everything lives in
//! the library, `lib.rs`).

use std::process::ExitCode;

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    gatekeeper_static_upstreams::serve().await
}
