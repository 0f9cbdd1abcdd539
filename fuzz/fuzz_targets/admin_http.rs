//! Fuzz target `admin_http`: see `gatekeeper_fuzz_targets::admin_http`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| gatekeeper_fuzz_targets::admin_http(data));
