//! Bytes a runner (or anything on runners.sock) might send, decoded as the gateway does:
//! the decoder must return frames or errors, never panic or allocate past the limit.
#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use shipwatch_protocol::{FrameError, GatewayCodec, RunnerCodec};
use tokio_util::codec::Decoder;

fuzz_target!(|data: &[u8]| {
    // The same bytes through both ends' decoders, fed in two reads split at the first
    // byte's value, as a socket might deliver them.
    let split = data.first().map_or(0, |b| usize::from(*b)).min(data.len());
    let mut gateway = GatewayCodec::new();
    let mut runner = RunnerCodec::new();
    let mut for_gateway = BytesMut::new();
    let mut for_runner = BytesMut::new();
    for part in [&data[..split], &data[split..]] {
        for_gateway.extend_from_slice(part);
        for_runner.extend_from_slice(part);
        loop {
            match gateway.decode(&mut for_gateway) {
                Ok(Some(_)) | Err(FrameError::Malformed(_)) => continue,
                Ok(None) | Err(_) => break,
            }
        }
        loop {
            match runner.decode(&mut for_runner) {
                Ok(Some(_)) | Err(FrameError::Malformed(_)) => continue,
                Ok(None) | Err(_) => break,
            }
        }
    }
});
