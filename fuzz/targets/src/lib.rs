//! The bodies of the cargo fuzz targets (fuzz/fuzz_targets/), one plain function each, so
//! the same code runs under libFuzzer on nightly and on stable in CI (tests/corpus.rs:
//! the committed corpus, then a few seconds of mutations of it). Each takes the raw bytes
//! libFuzzer hands a target and must return, never panic, whatever they are.
//!
//! It owns no behaviour of its own: what is fuzzed lives in `protocol`, `config` and
//! `gateway`.

use bytes::BytesMut;
use shipwatch_protocol::{FrameError, GatewayCodec, RunnerCodec};
use tokio_util::codec::Decoder;

/// A target's body: any bytes in, nothing out, never a panic.
pub type Body = fn(&[u8]);

/// The targets by name (the corpus directory under fuzz/corpus), with their bodies.
pub const TARGETS: &[(&str, Body)] = &[
    ("frame_decoder", frame_decoder),
    ("config_loader", config_loader),
    ("ws_query", ws_query),
];

/// Bytes a runner (or anything on runners.sock) might send, decoded as the gateway does:
/// the decoder must return frames or errors, never panic or allocate past the limit.
/// The same bytes go through both ends' decoders, fed in two reads split at the first
/// byte's value, as a socket might deliver them.
pub fn frame_decoder(data: &[u8]) {
    let split = data.first().map_or(0, |b| usize::from(*b)).min(data.len());
    let mut gateway = GatewayCodec::new();
    let mut runner = RunnerCodec::new();
    let mut for_gateway = BytesMut::new();
    let mut for_runner = BytesMut::new();
    for part in [&data[..split], &data[split..]] {
        for_gateway.extend_from_slice(part);
        for_runner.extend_from_slice(part);
        // A malformed frame is skipped and decoding goes on, as the gateway does; any
        // other error ends the stream.
        while let Ok(Some(_)) | Err(FrameError::Malformed(_)) = gateway.decode(&mut for_gateway) {}
        while let Ok(Some(_)) | Err(FrameError::Malformed(_)) = runner.decode(&mut for_runner) {}
    }
}

/// Any text as a shipwatch.toml: loading returns a config or errors with places, never
/// panics (spans past the end, odd UTF-8 boundaries, huge numbers). Bytes that are not
/// UTF-8 are skipped, as libFuzzer's `&str` targets do.
pub fn config_loader(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let base = std::path::Path::new("/nonexistent-shipwatch-fuzz");
    if let Err(errors) = shipwatch_config::load_str(text, "fuzz.toml", base) {
        // Rendering walks every span back to a line and column.
        let _ = errors.to_string();
    }
}

/// Any query string on `/ws/jobs/{id}`: parsed into `after` and a filter, or a 400 that
/// names the field, never a panic. Bytes that are not UTF-8 are skipped.
pub fn ws_query(data: &[u8]) {
    let Ok(query) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(uri) = format!("/ws/jobs/1?{query}").parse::<http::Uri>() else {
        return;
    };
    let _ = shipwatch_gateway::http::parse_watch_query(&uri);
}
