//! Fuzz target `rpc_framing`: see `gatekeeper_fuzz_targets::rpc_framing`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| gatekeeper_fuzz_targets::rpc_framing(data));
