//! The words every shipwatch process shares: the job/host/event model that the gateway
//! stores and serves (DESIGN §5), the job spec a runner executes, the frames that
//! runners and the gateway exchange over `<run_dir>/runners.sock`, with their codec, and
//! the views the HTTP API returns ([`api`]), so a client reads them without the gateway.
//!
//! This crate owns data shapes and their encoding only. It never does IO beyond what a
//! codec needs and knows nothing of config files, SQLite or HTTP.

pub mod api;
pub mod event;
pub mod frame;
pub mod report;
pub mod spec;
pub mod supervision;
pub mod timestamp;

pub use event::{
    BodyRef, Event, EventBody, EventKind, HostState, JobId, JobState, RunnerEvent, Stream,
    Timestamp, TimestampError, UnknownName, write_event_json,
};
pub use frame::{
    FrameCodec, FrameError, GatewayCodec, GatewayFrame, MAX_FRAME_BYTES, PROTOCOL_VERSION,
    RunnerCodec, RunnerFrame, check_version,
};
pub use report::Report;
pub use spec::{HostTarget, JobSpec, SshSpec, Transport};
