//! cargo-fuzz target: see `chatroom_fuzz::upload_sniff`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| chatroom_fuzz::upload_sniff(data));
