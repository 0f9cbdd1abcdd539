//! The gatekeeper binary: the allocator, then [`gatekeeper::main`] (everything lives in the
//! library, `lib.rs`).

use std::process::ExitCode;

/// mimalloc instead of the system allocator: the request path allocates from several threads at
/// once, where glibc's malloc contends on its arenas (measured with perf under wrk). Each runtime
/// thread gives its free memory back when it goes idle (`release_idle_memory`).
#[global_allocator]
static GLOBAL: gatekeeper_allocator::Allocator = gatekeeper_allocator::Allocator;

fn main() -> ExitCode {
    gatekeeper::main()
}
