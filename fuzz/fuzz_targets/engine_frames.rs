//! cargo-fuzz target: see `chatroom_fuzz::engine_frames`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| chatroom_fuzz::engine_frames(data));
