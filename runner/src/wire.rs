//! The runner's side of the frame format (protocol::frame docs: 4-byte big-endian length,
//! then JSON), used until `shipwatch_protocol::FrameCodec` implements it; same bytes.

use bytes::{Buf, BufMut, BytesMut};
use serde::Serialize;
use serde::de::DeserializeOwned;
use shipwatch_protocol::{FrameError, MAX_FRAME_BYTES};
use tokio_util::codec::{Decoder, Encoder};

/// Decodes `In`, encodes `Out`.
pub struct JsonCodec<In, Out>(std::marker::PhantomData<fn(Out) -> In>);

impl<In, Out> Default for JsonCodec<In, Out> {
    fn default() -> Self {
        JsonCodec(std::marker::PhantomData)
    }
}

impl<In: DeserializeOwned, Out> Decoder for JsonCodec<In, Out> {
    type Item = In;
    type Error = FrameError;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<In>, FrameError> {
        if src.len() < 4 {
            return Ok(None);
        }
        let len = u32::from_be_bytes([src[0], src[1], src[2], src[3]]) as usize;
        if len > MAX_FRAME_BYTES {
            return Err(FrameError::TooLarge {
                len,
                max: MAX_FRAME_BYTES,
            });
        }
        if src.len() < 4 + len {
            src.reserve(4 + len - src.len());
            return Ok(None);
        }
        src.advance(4);
        let body = src.split_to(len);
        Ok(Some(serde_json::from_slice(&body)?))
    }
}

impl<In, Out: Serialize> Encoder<Out> for JsonCodec<In, Out> {
    type Error = FrameError;

    fn encode(&mut self, item: Out, dst: &mut BytesMut) -> Result<(), FrameError> {
        let start = dst.len();
        dst.put_u32(0);
        serde_json::to_writer((&mut *dst).writer(), &item)?;
        let len = dst.len() - start - 4;
        if len > MAX_FRAME_BYTES {
            dst.truncate(start);
            return Err(FrameError::TooLarge {
                len,
                max: MAX_FRAME_BYTES,
            });
        }
        dst[start..start + 4].copy_from_slice(&(len as u32).to_be_bytes());
        Ok(())
    }
}
