//! Frames between a runner and the gateway on `<run_dir>/runners.sock`.
//!
//! Wire format: a 4-byte big-endian length, then that many bytes of JSON. The first frame
//! each way is a hello carrying [`PROTOCOL_VERSION`]; a peer with another version is
//! refused with an error that says so (an upgraded binary on disk while an old supervisor
//! runs). Frames over [`MAX_FRAME_BYTES`] are refused before anything is allocated.

use serde::{Deserialize, Serialize};

use crate::event::{JobId, RunnerEvent};
use crate::spec::JobSpec;

/// Bumped whenever a frame's shape changes.
pub const PROTOCOL_VERSION: u32 = 1;

/// Upper bound of one frame's payload: a batch of events of at most 64 KiB lines each.
pub const MAX_FRAME_BYTES: usize = 8 * 1024 * 1024;

/// What a runner says to the gateway.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
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
    /// Events of one job, in `rseq` order.
    Events {
        job: JobId,
        events: Vec<RunnerEvent>,
    },
    /// Finish the current job, assign no new one, the runner exits afterwards.
    Draining,
    Heartbeat,
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
    #[error("frame of {len} bytes is over the limit of {max} bytes")]
    TooLarge { len: usize, max: usize },
    #[error("malformed frame: {0}")]
    Malformed(#[from] serde_json::Error),
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

/// Length-delimited JSON codec for one direction: decodes `In`, encodes `Out`.
pub struct FrameCodec<In, Out> {
    _marker: std::marker::PhantomData<fn(Out) -> In>,
}
