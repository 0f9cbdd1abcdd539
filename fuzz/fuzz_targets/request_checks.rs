//! Fuzz target `request_checks`: see `gatekeeper_fuzz_targets::request_checks`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| gatekeeper_fuzz_targets::request_checks(data));
