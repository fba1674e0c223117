//! Property tests: everything that crosses a wire comes back unchanged, and no input makes
//! the decoder panic.

use std::collections::BTreeMap;

use bytes::{BufMut, BytesMut};
use proptest::collection::vec;
use proptest::prelude::*;
use shipwatch_protocol::{
    Event, EventBody, FrameError, GatewayCodec, GatewayFrame, HostState, HostTarget, JobSpec,
    JobState, MAX_FRAME_BYTES, RunnerCodec, RunnerEvent, RunnerFrame, SshSpec, Stream, Timestamp,
    Transport,
};
use tokio_util::codec::{Decoder, Encoder};

/// 0000-01-01 .. 9999-12-31, the range RFC 3339 text can hold.
fn timestamp() -> impl Strategy<Value = Timestamp> {
    (-62_167_219_200_000i64..=253_402_300_799_999).prop_map(Timestamp)
}

/// Any Unicode (control characters, quotes, escapes, astral planes), empty, or a line up
/// to the 64 KiB limit.
fn text() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => any::<String>(),
        1 => Just(String::new()),
        1 => (any::<char>(), 0usize..=65_536)
            .prop_map(|(c, bytes)| c.to_string().repeat(bytes / c.len_utf8())),
    ]
}

fn host_state() -> impl Strategy<Value = HostState> {
    prop_oneof![
        Just(HostState::Pending),
        Just(HostState::Running),
        Just(HostState::Ok),
        Just(HostState::Failed),
        Just(HostState::Timeout),
        Just(HostState::Unreachable),
        Just(HostState::Cancelled),
        Just(HostState::Skipped),
    ]
}

fn job_state() -> impl Strategy<Value = JobState> {
    prop_oneof![
        Just(JobState::Queued),
        Just(JobState::Running),
        Just(JobState::Succeeded),
        Just(JobState::Failed),
        Just(JobState::Cancelled),
        Just(JobState::Lost),
    ]
}

fn body() -> impl Strategy<Value = EventBody> {
    prop_oneof![
        4 => (any::<String>(), any::<bool>(), text()).prop_map(|(host, err, text)| {
            EventBody::Line {
                host,
                stream: if err { Stream::Stderr } else { Stream::Stdout },
                text,
            }
        }),
        1 => (any::<String>(), host_state(), any::<Option<i32>>())
            .prop_map(|(host, state, exit_code)| EventBody::Host { host, state, exit_code }),
        1 => (job_state(), proptest::option::of(any::<String>()))
            .prop_map(|(state, reason)| EventBody::Job { state, reason }),
        1 => text().prop_map(|text| EventBody::Notice { text }),
    ]
}

fn event() -> impl Strategy<Value = Event> {
    (any::<u64>(), any::<u64>(), timestamp(), body()).prop_map(|(job, seq, ts, body)| Event {
        job,
        seq,
        ts,
        body,
    })
}

fn runner_event() -> impl Strategy<Value = RunnerEvent> {
    (any::<u64>(), any::<i64>(), body()).prop_map(|(rseq, ms, body)| RunnerEvent {
        rseq,
        ts: Timestamp(ms),
        body,
    })
}

fn runner_frame() -> impl Strategy<Value = RunnerFrame> {
    prop_oneof![
        (
            any::<u32>(),
            any::<u32>(),
            any::<u32>(),
            any::<Option<u64>>(),
            any::<bool>()
        )
            .prop_map(|(version, runner, pid, job, draining)| RunnerFrame::Hello {
                version,
                runner,
                pid,
                job,
                draining
            }),
        (any::<u64>(), vec(runner_event(), 0..8))
            .prop_map(|(job, events)| RunnerFrame::Events { job, events }),
        Just(RunnerFrame::Draining),
        Just(RunnerFrame::Heartbeat),
    ]
}

fn job_spec() -> impl Strategy<Value = JobSpec> {
    let host = (
        any::<String>(),
        proptest::option::of(any::<String>()),
        any::<Option<u16>>(),
    )
        .prop_map(|(name, address, port)| HostTarget {
            name,
            address,
            port,
        });
    let ssh = (
        any::<String>(),
        any::<u16>(),
        proptest::option::of(any::<String>()),
        proptest::option::of(any::<String>()),
        any::<u64>(),
        vec(any::<String>(), 0..3),
    )
        .prop_map(
            |(user, port, identity_file, known_hosts, connect_timeout_secs, options)| SshSpec {
                user,
                port,
                identity_file,
                known_hosts,
                connect_timeout_secs,
                options,
            },
        );
    (
        any::<String>(),
        any::<bool>(),
        text(),
        vec(host, 0..4),
        vec(vec(any::<String>(), 0..3), 0..3),
        any::<u32>(),
        any::<u64>(),
        proptest::collection::btree_map(any::<String>(), any::<String>(), 0..3),
        ssh,
    )
        .prop_map(
            |(
                task,
                ssh_transport,
                script,
                hosts,
                waves,
                max_failures,
                timeout_secs,
                params,
                ssh,
            )| {
                let params: BTreeMap<String, String> = params;
                JobSpec {
                    task,
                    transport: if ssh_transport {
                        Transport::Ssh
                    } else {
                        Transport::Local
                    },
                    script,
                    hosts,
                    waves,
                    max_failures,
                    timeout_secs,
                    params,
                    ssh,
                }
            },
        )
}

fn gateway_frame() -> impl Strategy<Value = GatewayFrame> {
    prop_oneof![
        any::<u32>().prop_map(|version| GatewayFrame::Welcome { version }),
        (any::<u32>(), any::<String>())
            .prop_map(|(version, reason)| GatewayFrame::Refused { version, reason }),
        (any::<u64>(), job_spec()).prop_map(|(job, spec)| GatewayFrame::Assign {
            job,
            spec: Box::new(spec)
        }),
        (any::<u64>(), any::<u64>()).prop_map(|(job, rseq)| GatewayFrame::Ack { job, rseq }),
        any::<u64>().prop_map(|job| GatewayFrame::Cancel { job }),
        Just(GatewayFrame::Heartbeat),
    ]
}

/// JSON objects made of event-ish keys and values of every JSON type.
fn json_value() -> impl Strategy<Value = serde_json::Value> {
    let key = prop_oneof![
        Just("kind"),
        Just("job"),
        Just("seq"),
        Just("rseq"),
        Just("ts"),
        Just("host"),
        Just("stream"),
        Just("text"),
        Just("state"),
        Just("exit_code"),
        Just("reason"),
        Just("type"),
        Just("events"),
        Just("version"),
        Just("other"),
    ];
    let leaf = prop_oneof![
        Just(serde_json::Value::Null),
        any::<bool>().prop_map(serde_json::Value::from),
        any::<i64>().prop_map(serde_json::Value::from),
        any::<f64>().prop_map(serde_json::Value::from),
        prop_oneof![
            Just("line".to_string()),
            Just("host".to_string()),
            Just("job".to_string()),
            Just("failed".to_string()),
            Just("stdout".to_string()),
            Just("events".to_string()),
            Just("2026-11-25T04:25:31.123Z".to_string()),
            any::<String>(),
        ]
        .prop_map(serde_json::Value::from),
    ];
    leaf.prop_recursive(3, 32, 8, move |inner| {
        prop_oneof![
            vec(inner.clone(), 0..4).prop_map(serde_json::Value::from),
            proptest::collection::btree_map(key.clone(), inner, 0..8).prop_map(|m| {
                serde_json::Value::Object(m.into_iter().map(|(k, v)| (k.to_string(), v)).collect())
            }),
        ]
    })
}

/// Feeds `bytes` to `codec` in pieces of the given sizes (cycled), collecting what it
/// decodes until the first error.
fn decode_chunked<D: Decoder>(
    codec: &mut D,
    bytes: &[u8],
    chunks: &[usize],
) -> (Vec<D::Item>, Option<D::Error>) {
    let mut buf = BytesMut::new();
    let mut out = Vec::new();
    let mut rest = bytes;
    let mut sizes = chunks.iter().copied().cycle();
    while !rest.is_empty() {
        let n = sizes.next().unwrap_or(1).clamp(1, rest.len());
        buf.put_slice(&rest[..n]);
        rest = &rest[n..];
        loop {
            match codec.decode(&mut buf) {
                Ok(Some(item)) => out.push(item),
                Ok(None) => break,
                Err(e) => return (out, Some(e)),
            }
        }
    }
    (out, None)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]

    #[test]
    fn event_round_trips_through_json(e in event()) {
        let json = e.to_json();
        prop_assert_eq!(serde_json::from_slice::<Event>(&json).unwrap(), e);
    }

    #[test]
    fn event_json_starts_with_kind_job_seq_ts(e in event()) {
        let json = String::from_utf8(e.to_json()).unwrap();
        let prefix = format!(
            r#"{{"kind":"{}","job":{},"seq":{},"ts":"{}","#,
            e.body.kind(), e.job, e.seq, e.ts
        );
        prop_assert!(json.starts_with(&prefix), "{} does not start with {}", json, prefix);
    }

    #[test]
    fn runner_event_round_trips_through_json(e in runner_event()) {
        let json = serde_json::to_vec(&e).unwrap();
        prop_assert_eq!(serde_json::from_slice::<RunnerEvent>(&json).unwrap(), e);
    }

    #[test]
    fn body_round_trips_through_json(b in body()) {
        let json = serde_json::to_vec(&b).unwrap();
        prop_assert_eq!(serde_json::from_slice::<EventBody>(&json).unwrap(), b);
    }

    #[test]
    fn timestamp_text_round_trips(ts in timestamp()) {
        let text = ts.to_string();
        prop_assert_eq!(text.len(), 24);
        prop_assert!(text.ends_with('Z'));
        prop_assert_eq!(text.parse::<Timestamp>().unwrap(), ts);
    }

    #[test]
    fn timestamp_offsets_name_the_same_instant(
        ts in (0i64..4_102_444_800_000).prop_map(Timestamp),
        off_min in -(23 * 60 + 59)..=(23 * 60 + 59i64),
    ) {
        // Write the instant as local time at the offset, by shifting and re-labelling.
        let shifted = Timestamp(ts.0 + off_min * 60_000).to_string();
        let sign = if off_min < 0 { '-' } else { '+' };
        let abs = off_min.abs();
        let text = format!("{}{sign}{:02}:{:02}", &shifted[..23], abs / 60, abs % 60);
        prop_assert_eq!(text.parse::<Timestamp>().unwrap(), ts, "{}", text);
    }

    #[test]
    fn runner_frames_round_trip_through_the_codec(
        frames in vec(runner_frame(), 1..6),
        chunks in vec(1usize..4096, 1..8),
    ) {
        let mut bytes = BytesMut::new();
        let mut runner = RunnerCodec::new();
        for f in &frames {
            runner.encode(f, &mut bytes).unwrap();
        }
        let (got, err) = decode_chunked(&mut GatewayCodec::new(), &bytes, &chunks);
        prop_assert!(err.is_none(), "{:?}", err);
        prop_assert_eq!(got, frames);
    }

    #[test]
    fn gateway_frames_round_trip_through_the_codec(
        frames in vec(gateway_frame(), 1..6),
        chunks in vec(1usize..4096, 1..8),
    ) {
        let mut bytes = BytesMut::new();
        let mut gateway = GatewayCodec::new();
        for f in &frames {
            gateway.encode(f, &mut bytes).unwrap();
        }
        let (got, err) = decode_chunked(&mut RunnerCodec::new(), &bytes, &chunks);
        prop_assert!(err.is_none(), "{:?}", err);
        prop_assert_eq!(got, frames);
    }

    #[test]
    fn random_bytes_never_panic_either_decoder(
        bytes in vec(any::<u8>(), 0..2048),
        chunks in vec(1usize..64, 1..8),
    ) {
        let _ = decode_chunked(&mut GatewayCodec::new(), &bytes, &chunks);
        let _ = decode_chunked(&mut RunnerCodec::new(), &bytes, &chunks);
    }

    #[test]
    fn arbitrary_json_never_panics_the_event_readers(v in json_value()) {
        let text = v.to_string();
        let _ = serde_json::from_str::<Event>(&text);
        let _ = serde_json::from_str::<RunnerEvent>(&text);
        let _ = serde_json::from_str::<RunnerFrame>(&text);
    }

    #[test]
    fn random_payloads_in_valid_headers_are_refused_not_panicked(
        payloads in vec(vec(any::<u8>(), 0..512), 1..6),
    ) {
        let mut bytes = BytesMut::new();
        for p in &payloads {
            bytes.put_u32(p.len() as u32);
            bytes.put_slice(p);
        }
        let mut codec = GatewayCodec::new();
        // Every frame is consumed, garbage or not: the stream stays in sync.
        let mut seen = 0;
        loop {
            match codec.decode(&mut bytes) {
                Ok(Some(_)) | Err(FrameError::Malformed(_)) | Err(FrameError::VersionMismatch { .. }) => seen += 1,
                Ok(None) => break,
                Err(e) => prop_assert!(false, "unexpected {:?}", e),
            }
        }
        prop_assert_eq!(seen, payloads.len());
    }

    #[test]
    fn oversized_headers_are_refused_without_allocating(
        len in (MAX_FRAME_BYTES as u32 + 1)..=u32::MAX,
        tail in vec(any::<u8>(), 0..32),
    ) {
        let mut buf = BytesMut::with_capacity(64);
        buf.put_u32(len);
        buf.put_slice(&tail);
        let cap = buf.capacity();
        let refused = matches!(
            GatewayCodec::new().decode(&mut buf),
            Err(FrameError::TooLarge { len: l, .. }) if l == len as usize
        );
        prop_assert!(refused);
        prop_assert_eq!(buf.capacity(), cap);
    }
}
