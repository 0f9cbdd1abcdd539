//! Fuzz target `config_toml`: see `gatekeeper_fuzz_targets::config_toml`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| gatekeeper_fuzz_targets::config_toml(data));
