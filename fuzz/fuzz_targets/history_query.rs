//! cargo-fuzz target: see `chatroom_fuzz::history_query`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| chatroom_fuzz::history_query(data));
