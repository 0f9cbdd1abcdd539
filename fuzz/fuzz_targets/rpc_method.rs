//! Fuzz target `rpc_method`: see `gatekeeper_fuzz_targets::rpc_method`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| gatekeeper_fuzz_targets::rpc_method(data));
