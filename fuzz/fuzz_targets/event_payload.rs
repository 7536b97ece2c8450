//! cargo-fuzz target: see `chatroom_fuzz::event_payload`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| chatroom_fuzz::event_payload(data));
