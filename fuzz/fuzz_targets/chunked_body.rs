//! `lbhost::fuzz::chunked_body` under libFuzzer (see `host/src/fuzz.rs` for its properties).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| lbhost::fuzz::chunked_body(data));
