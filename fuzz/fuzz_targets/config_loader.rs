//! Any text as a shipwatch.toml: loading returns a config or errors with places, never
//! panics (spans past the end, odd UTF-8 boundaries, huge numbers).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|text: &str| {
    let base = std::path::Path::new("/nonexistent-shipwatch-fuzz");
    if let Err(errors) = shipwatch_config::load_str(text, "fuzz.toml", base) {
        // Rendering walks every span back to a line and column.
        let _ = errors.to_string();
    }
});
