//! Any query string on `/ws/jobs/{id}`: parsed into `after` and a filter, or a 400 that
//! names the field, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|query: &str| {
    let Ok(uri) = format!("/ws/jobs/1?{query}").parse::<http::Uri>() else {
        return;
    };
    let _ = shipwatch_gateway::http::parse_watch_query(&uri);
});
