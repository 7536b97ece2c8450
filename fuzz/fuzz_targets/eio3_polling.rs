//! cargo-fuzz target: see `chatroom_fuzz::eio3_polling`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| chatroom_fuzz::eio3_polling(data));
