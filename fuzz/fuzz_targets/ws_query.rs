//! cargo fuzz target: any query string on /ws/jobs/{id} (body: shipwatch_fuzz_targets::ws_query,
//! which CI also runs on stable over the corpus).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| shipwatch_fuzz_targets::ws_query(data));
