//! `lbhost::fuzz::http2_frames` under libFuzzer (see `host/src/fuzz.rs` for its properties).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| lbhost::fuzz::http2_frames(data));
