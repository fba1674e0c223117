//! Frames between a runner and the gateway on `<run_dir>/runners.sock`.
//!
//! Wire format: a 4-byte big-endian length, then that many bytes of JSON. The first frame
//! each way is a hello carrying [`PROTOCOL_VERSION`]; a peer with another version is
//! refused with an error that says so (an upgraded binary on disk while an old supervisor
//! runs). Frames over [`MAX_FRAME_BYTES`] are refused before anything is allocated.
//!
//! Use [`RunnerCodec`] on the runner's end and [`GatewayCodec`] on the gateway's, e.g.
//! `Framed::new(stream, RunnerCodec::new())`. Events travel in batches
//! ([`RunnerFrame::Events`]) with integer-millisecond timestamps; the gateway turns each
//! into an [`crate::Event`] with RFC 3339 text once, when it commits it.

use std::marker::PhantomData;

use bytes::{Buf, BufMut, BytesMut};
use serde::de::{self, DeserializeOwned, IgnoredAny, MapAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize};
use tokio_util::codec::{Decoder, Encoder};

use crate::event::{JobId, RunnerEvent};
use crate::spec::JobSpec;

/// Bumped whenever a frame's shape changes (2: [`RunnerFrame::Started`]).
pub const PROTOCOL_VERSION: u32 = 2;

/// Upper bound of one frame's payload: a batch of events of at most 64 KiB lines each.
pub const MAX_FRAME_BYTES: usize = 8 * 1024 * 1024;

/// What a runner says to the gateway.
///
/// The hello's encoding is fixed forever: `{"type":"hello","version":N,…}`, so that any
/// two binaries can at least tell each other apart; fields added later must be optional.
/// Deserialised by hand (below) so a batch of events is parsed once, not buffered first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum RunnerFrame {
    /// First frame of every connection.
    Hello {
        version: u32,
        /// The runner's `--index`.
        runner: u32,
        pid: u32,
        /// The job this runner is still running (or holds unacked events of) after a
        /// reconnect; its unacked events follow the hello.
        job: Option<JobId>,
        /// Finishing its job, will take no new one.
        draining: bool,
    },
    /// The runner took the assigned job and will now start its hosts; nothing of it ran
    /// before this frame was written. A job whose runner vanished without saying so can
    /// go back to the queue.
    Started {
        job: JobId,
    },
    /// Events of one job, in `rseq` order.
    Events {
        job: JobId,
        events: Vec<RunnerEvent>,
    },
    /// Finish the current job, assign no new one, the runner exits afterwards.
    Draining,
    Heartbeat,
}

/// The frame types a runner sends, as named by `"type"`.
#[derive(Clone, Copy, Deserialize)]
#[serde(rename_all = "snake_case")]
enum RunnerFrameType {
    Hello,
    Started,
    Events,
    Draining,
    Heartbeat,
}

/// Every field of every runner frame; the names do not clash, so one pass over the object
/// collects them whatever the order, and `"type"` picks the variant at the end.
#[derive(Deserialize)]
#[serde(field_identifier, rename_all = "snake_case")]
enum RunnerFrameField {
    Type,
    Version,
    Runner,
    Pid,
    Job,
    Draining,
    Events,
    #[serde(other)]
    Other,
}

impl<'de> Deserialize<'de> for RunnerFrame {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct FrameVisitor;
        impl<'de> Visitor<'de> for FrameVisitor {
            type Value = RunnerFrame;

            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a runner frame object")
            }

            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<RunnerFrame, A::Error> {
                let mut kind = None;
                let (mut version, mut runner, mut pid) = (None, None, None);
                let (mut job, mut draining, mut events) = (None, None, None);
                while let Some(field) = map.next_key::<RunnerFrameField>()? {
                    match field {
                        RunnerFrameField::Type => kind = Some(map.next_value()?),
                        RunnerFrameField::Version => version = Some(map.next_value()?),
                        RunnerFrameField::Runner => runner = Some(map.next_value()?),
                        RunnerFrameField::Pid => pid = Some(map.next_value()?),
                        RunnerFrameField::Job => job = Some(map.next_value::<Option<JobId>>()?),
                        RunnerFrameField::Draining => draining = Some(map.next_value()?),
                        RunnerFrameField::Events => events = Some(map.next_value()?),
                        RunnerFrameField::Other => {
                            map.next_value::<IgnoredAny>()?;
                        }
                    }
                }
                fn required<T, E: de::Error>(v: Option<T>, name: &'static str) -> Result<T, E> {
                    v.ok_or_else(|| E::missing_field(name))
                }
                Ok(match required(kind, "type")? {
                    RunnerFrameType::Hello => RunnerFrame::Hello {
                        version: required(version, "version")?,
                        runner: required(runner, "runner")?,
                        pid: required(pid, "pid")?,
                        job: job.flatten(),
                        draining: required(draining, "draining")?,
                    },
                    RunnerFrameType::Started => RunnerFrame::Started {
                        job: required(job.flatten(), "job")?,
                    },
                    RunnerFrameType::Events => RunnerFrame::Events {
                        job: required(job.flatten(), "job")?,
                        events: required(events, "events")?,
                    },
                    RunnerFrameType::Draining => RunnerFrame::Draining,
                    RunnerFrameType::Heartbeat => RunnerFrame::Heartbeat,
                })
            }
        }
        deserializer.deserialize_map(FrameVisitor)
    }
}

/// What the gateway says to a runner.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum GatewayFrame {
    /// Answer to a hello with the same version.
    Welcome {
        version: u32,
    },
    /// Answer to a hello the gateway will not serve; the connection closes after it.
    Refused {
        version: u32,
        reason: String,
    },
    /// Run this job; sent only to an idle runner.
    Assign {
        job: JobId,
        spec: Box<JobSpec>,
    },
    /// Every event of `job` up to and including `rseq` is committed: forget them.
    Ack {
        job: JobId,
        rseq: u64,
    },
    /// Stop the job: kill every host's processes, mark running hosts `cancelled`.
    Cancel {
        job: JobId,
    },
    Heartbeat,
}

/// Why a frame could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    /// The length header (or an encoded frame) exceeds [`MAX_FRAME_BYTES`]; the stream
    /// cannot be resynchronised, so the connection should close.
    #[error("frame of {len} bytes is over the limit of {max} bytes")]
    TooLarge { len: usize, max: usize },
    /// The payload is not the JSON of a frame this binary knows. The frame was consumed,
    /// so the stream is still in sync.
    #[error("malformed frame")]
    Malformed(#[from] serde_json::Error),
    /// The peer runs another protocol version (an upgraded binary on disk while an old
    /// supervisor runs).
    #[error(
        "peer speaks shipwatch protocol {theirs}, this binary speaks {ours}: restart the \
         supervisor so every process runs the same binary"
    )]
    VersionMismatch { ours: u32, theirs: u32 },
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

/// Accepts a peer's hello version or says why not.
pub fn check_version(peer: u32) -> Result<(), FrameError> {
    if peer == PROTOCOL_VERSION {
        Ok(())
    } else {
        Err(FrameError::VersionMismatch {
            ours: PROTOCOL_VERSION,
            theirs: peer,
        })
    }
}

/// Length of the big-endian length header in front of every frame.
const HEADER_BYTES: usize = 4;

/// Length-delimited JSON codec for one direction: decodes `In`, encodes `Out`.
///
/// Hand-rolled rather than wrapping `LengthDelimitedCodec` so that an oversized header
/// yields [`FrameError::TooLarge`] with the claimed length (refused before any buffer is
/// reserved for it), and so that encoding serialises straight into the output buffer and
/// patches the header afterwards, with no intermediate `Vec`.
pub struct FrameCodec<In, Out> {
    _marker: PhantomData<fn(Out) -> In>,
}

/// The runner's side of `runners.sock`: reads gateway frames, writes runner frames.
pub type RunnerCodec = FrameCodec<GatewayFrame, RunnerFrame>;
/// The gateway's side of `runners.sock`: reads runner frames, writes gateway frames.
pub type GatewayCodec = FrameCodec<RunnerFrame, GatewayFrame>;

impl<In, Out> FrameCodec<In, Out> {
    /// A codec; it holds no state, so one per connection costs nothing.
    pub fn new() -> Self {
        FrameCodec {
            _marker: PhantomData,
        }
    }
}

impl<In, Out> Default for FrameCodec<In, Out> {
    fn default() -> Self {
        Self::new()
    }
}

impl<In, Out> Clone for FrameCodec<In, Out> {
    fn clone(&self) -> Self {
        Self::new()
    }
}

impl<In, Out> std::fmt::Debug for FrameCodec<In, Out> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("FrameCodec")
    }
}

impl<In: DeserializeOwned, Out> Decoder for FrameCodec<In, Out> {
    type Item = In;
    type Error = FrameError;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<In>, FrameError> {
        let Some(header) = src.get(..HEADER_BYTES) else {
            return Ok(None);
        };
        let len = u32::from_be_bytes([header[0], header[1], header[2], header[3]]) as usize;
        if len > MAX_FRAME_BYTES {
            return Err(FrameError::TooLarge {
                len,
                max: MAX_FRAME_BYTES,
            });
        }
        let total = HEADER_BYTES + len;
        if src.len() < total {
            // Bounded by MAX_FRAME_BYTES above; saves regrowing the buffer piecemeal.
            src.reserve(total - src.len());
            return Ok(None);
        }
        src.advance(HEADER_BYTES);
        let payload = src.split_to(len);
        serde_json::from_slice(&payload).map_err(|e| malformed_or_version(&payload, e))
    }
}

/// A frame that does not parse may be a hello from a binary of another version whose
/// shape changed; say so rather than "malformed", since that is what the operator must fix.
fn malformed_or_version(payload: &[u8], e: serde_json::Error) -> FrameError {
    #[derive(Deserialize)]
    struct AnyHello {
        #[serde(rename = "type")]
        kind: String,
        version: u32,
    }
    match serde_json::from_slice::<AnyHello>(payload) {
        Ok(h)
            if h.version != PROTOCOL_VERSION
                && matches!(h.kind.as_str(), "hello" | "welcome" | "refused") =>
        {
            FrameError::VersionMismatch {
                ours: PROTOCOL_VERSION,
                theirs: h.version,
            }
        }
        _ => FrameError::Malformed(e),
    }
}

impl<In, Out: Serialize> Encoder<Out> for FrameCodec<In, Out> {
    type Error = FrameError;

    fn encode(&mut self, item: Out, dst: &mut BytesMut) -> Result<(), FrameError> {
        encode_into(&item, dst)
    }
}

impl<In, Out: Serialize> Encoder<&Out> for FrameCodec<In, Out> {
    type Error = FrameError;

    /// Lets a sender keep its frame (e.g. unacked events kept for a resend).
    fn encode(&mut self, item: &Out, dst: &mut BytesMut) -> Result<(), FrameError> {
        encode_into(item, dst)
    }
}

/// Appends one frame: a placeholder header, the JSON written in place, then the real length.
fn encode_into<T: Serialize + ?Sized>(item: &T, dst: &mut BytesMut) -> Result<(), FrameError> {
    let start = dst.len();
    dst.put_u32(0);
    if let Err(e) = serde_json::to_writer((&mut *dst).writer(), item) {
        dst.truncate(start);
        return Err(FrameError::Malformed(e));
    }
    let len = dst.len() - start - HEADER_BYTES;
    if len > MAX_FRAME_BYTES {
        dst.truncate(start);
        return Err(FrameError::TooLarge {
            len,
            max: MAX_FRAME_BYTES,
        });
    }
    // len <= MAX_FRAME_BYTES < u32::MAX, so the cast is lossless.
    dst[start..start + HEADER_BYTES].copy_from_slice(&(len as u32).to_be_bytes());
    Ok(())
}
