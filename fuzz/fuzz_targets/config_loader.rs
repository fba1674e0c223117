//! cargo fuzz target: any text as a shipwatch.toml (body: shipwatch_fuzz_targets::config_loader,
//! which CI also runs on stable over the corpus).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| shipwatch_fuzz_targets::config_loader(data));
