//! cargo-fuzz target: see `chatroom_fuzz::token_extraction`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| chatroom_fuzz::token_extraction(data));
