//! `lbhost::fuzz::config_file` under libFuzzer (see `host/src/fuzz.rs` for its properties).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| lbhost::fuzz::config_file(data));
