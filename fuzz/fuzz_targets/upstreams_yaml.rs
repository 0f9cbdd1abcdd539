//! Fuzz target `upstreams_yaml`: see `gatekeeper_fuzz_targets::upstreams_yaml`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| gatekeeper_fuzz_targets::upstreams_yaml(data));
