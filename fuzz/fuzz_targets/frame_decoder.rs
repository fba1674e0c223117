//! cargo fuzz target: bytes on runners.sock through both ends' frame decoders (body:
//! shipwatch_fuzz_targets::frame_decoder, which CI also runs on stable over the corpus).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| shipwatch_fuzz_targets::frame_decoder(data));
