//! The frame codec at its edges: sizes, garbage, versions.

use bytes::{BufMut, BytesMut};
use shipwatch_protocol::{
    FrameCodec, FrameError, GatewayCodec, GatewayFrame, MAX_FRAME_BYTES, PROTOCOL_VERSION,
    RunnerCodec, RunnerFrame, check_version,
};
use tokio_util::codec::{Decoder, Encoder};

fn hello() -> RunnerFrame {
    RunnerFrame::Hello {
        version: PROTOCOL_VERSION,
        runner: 3,
        pid: 4242,
        job: Some(42),
        draining: false,
    }
}

#[test]
fn runner_frame_round_trips_through_both_sides() {
    let mut buf = BytesMut::new();
    RunnerCodec::new().encode(hello(), &mut buf).unwrap();
    RunnerCodec::new()
        .encode(&RunnerFrame::Heartbeat, &mut buf)
        .unwrap();
    let mut gw = GatewayCodec::new();
    assert_eq!(gw.decode(&mut buf).unwrap(), Some(hello()));
    assert_eq!(gw.decode(&mut buf).unwrap(), Some(RunnerFrame::Heartbeat));
    assert_eq!(gw.decode(&mut buf).unwrap(), None);
    assert!(buf.is_empty());
}

#[test]
fn hello_encoding_starts_with_type_then_version() {
    let mut buf = BytesMut::new();
    RunnerCodec::new().encode(hello(), &mut buf).unwrap();
    let json = std::str::from_utf8(&buf[4..]).unwrap();
    assert!(
        json.starts_with(&format!(
            r#"{{"type":"hello","version":{PROTOCOL_VERSION},"#
        )),
        "{json}"
    );
    assert_eq!(
        u32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]]) as usize,
        json.len()
    );
}

#[test]
fn partial_frames_wait_for_the_rest() {
    let mut whole = BytesMut::new();
    RunnerCodec::new().encode(hello(), &mut whole).unwrap();
    let mut gw = GatewayCodec::new();
    let mut buf = BytesMut::new();
    for (i, b) in whole.iter().enumerate() {
        buf.put_u8(*b);
        let got = gw.decode(&mut buf).unwrap();
        if i + 1 < whole.len() {
            assert_eq!(got, None, "decoded early at byte {i}");
        } else {
            assert_eq!(got, Some(hello()));
        }
    }
}

#[test]
fn huge_length_header_is_refused_without_allocating() {
    let mut buf = BytesMut::with_capacity(64);
    buf.put_u32(u32::MAX);
    buf.put_slice(b"{\"type\":");
    let cap = buf.capacity();
    match GatewayCodec::new().decode(&mut buf) {
        Err(FrameError::TooLarge { len, max }) => {
            assert_eq!(len, u32::MAX as usize);
            assert_eq!(max, MAX_FRAME_BYTES);
        }
        other => panic!("expected TooLarge, got {other:?}"),
    }
    assert_eq!(
        buf.capacity(),
        cap,
        "the decoder grew the buffer for a refused frame"
    );
}

#[test]
fn one_byte_over_the_limit_is_refused() {
    let mut buf = BytesMut::new();
    buf.put_u32(MAX_FRAME_BYTES as u32 + 1);
    assert!(matches!(
        GatewayCodec::new().decode(&mut buf),
        Err(FrameError::TooLarge { .. })
    ));
}

#[test]
fn frame_exactly_at_the_limit_is_accepted() {
    // A JSON string of exactly MAX_FRAME_BYTES bytes: quotes plus filler.
    let text = "x".repeat(MAX_FRAME_BYTES - 2);
    let mut buf = BytesMut::new();
    let mut codec = FrameCodec::<String, String>::new();
    codec.encode(text.clone(), &mut buf).unwrap();
    assert_eq!(buf.len(), 4 + MAX_FRAME_BYTES);
    assert_eq!(codec.decode(&mut buf).unwrap(), Some(text));
}

#[test]
fn encoding_over_the_limit_fails_and_leaves_the_buffer_as_it_was() {
    let mut buf = BytesMut::new();
    let mut codec = FrameCodec::<String, String>::new();
    codec.encode("before".to_string(), &mut buf).unwrap();
    let before = buf.clone();
    let err = codec
        .encode("x".repeat(MAX_FRAME_BYTES - 1), &mut buf)
        .unwrap_err();
    assert!(matches!(err, FrameError::TooLarge { len, .. } if len == MAX_FRAME_BYTES + 1));
    assert_eq!(buf, before);
}

#[test]
fn malformed_json_is_an_error_and_the_stream_stays_in_sync() {
    let mut buf = BytesMut::new();
    buf.put_u32(5);
    buf.put_slice(b"{nope");
    RunnerCodec::new()
        .encode(RunnerFrame::Heartbeat, &mut buf)
        .unwrap();
    let mut gw = GatewayCodec::new();
    assert!(matches!(gw.decode(&mut buf), Err(FrameError::Malformed(_))));
    assert_eq!(gw.decode(&mut buf).unwrap(), Some(RunnerFrame::Heartbeat));
}

#[test]
fn unknown_frame_type_is_malformed() {
    let mut buf = BytesMut::new();
    let body = br#"{"type":"launch_missiles"}"#;
    buf.put_u32(body.len() as u32);
    buf.put_slice(body);
    assert!(matches!(
        RunnerCodec::new().decode(&mut buf),
        Err(FrameError::Malformed(_))
    ));
}

#[test]
fn hello_of_another_shape_and_version_reads_as_version_mismatch() {
    let mut buf = BytesMut::new();
    let theirs = PROTOCOL_VERSION + 1;
    let body =
        format!(r#"{{"type":"hello","version":{theirs},"runner":"zero","capabilities":[]}}"#);
    buf.put_u32(body.len() as u32);
    buf.put_slice(body.as_bytes());
    let err = GatewayCodec::new().decode(&mut buf).unwrap_err();
    assert!(
        matches!(
            err,
            FrameError::VersionMismatch {
                ours: PROTOCOL_VERSION,
                theirs: t
            } if t == theirs
        ),
        "{err:?}"
    );
}

#[test]
fn version_check_names_both_versions_and_the_fix() {
    assert!(check_version(PROTOCOL_VERSION).is_ok());
    let err = check_version(PROTOCOL_VERSION + 1).unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.contains(&format!("protocol {}", PROTOCOL_VERSION + 1)),
        "{msg}"
    );
    assert!(msg.contains(&format!("speaks {PROTOCOL_VERSION}")), "{msg}");
    assert!(msg.contains("restart the supervisor"), "{msg}");
}

#[test]
fn gateway_frames_round_trip() {
    let frames = vec![
        GatewayFrame::Welcome { version: 1 },
        GatewayFrame::Refused {
            version: 1,
            reason: "draining".into(),
        },
        GatewayFrame::Ack { job: 7, rseq: 99 },
        GatewayFrame::Cancel { job: 7 },
        GatewayFrame::Heartbeat,
    ];
    let mut buf = BytesMut::new();
    let mut gw = GatewayCodec::new();
    for f in &frames {
        gw.encode(f, &mut buf).unwrap();
    }
    let mut rn = RunnerCodec::new();
    for f in frames {
        assert_eq!(rn.decode(&mut buf).unwrap(), Some(f));
    }
}

fn decode_runner_frame(json: &str) -> Result<Option<RunnerFrame>, FrameError> {
    let mut buf = BytesMut::new();
    buf.put_u32(json.len() as u32);
    buf.put_slice(json.as_bytes());
    GatewayCodec::new().decode(&mut buf)
}

#[test]
fn runner_frames_read_in_any_field_order_with_unknown_fields() {
    let got = decode_runner_frame(
        r#"{"events":[{"ts":5,"text":"hi","kind":"line","stream":"stdout","host":"h","rseq":1}],"later":true,"job":9,"type":"events"}"#,
    )
    .unwrap();
    assert_eq!(
        got,
        Some(RunnerFrame::Events {
            job: 9,
            events: vec![shipwatch_protocol::RunnerEvent {
                rseq: 1,
                ts: shipwatch_protocol::Timestamp(5),
                body: shipwatch_protocol::EventBody::Line {
                    host: "h".into(),
                    stream: shipwatch_protocol::Stream::Stdout,
                    text: "hi".into(),
                },
            }],
        })
    );
    let hello =
        decode_runner_frame(r#"{"type":"hello","version":1,"runner":0,"pid":7,"draining":false}"#)
            .unwrap();
    assert!(matches!(hello, Some(RunnerFrame::Hello { job: None, .. })));
}

#[test]
fn incomplete_frames_of_our_version_are_malformed_not_a_version_mismatch() {
    let hello = format!(r#"{{"type":"hello","version":{PROTOCOL_VERSION},"runner":0}}"#);
    for json in [
        hello.as_str(),
        r#"{"type":"events","events":[]}"#,
        r#"{"type":"events","job":null,"events":[]}"#,
        r#"{"job":1,"events":[]}"#,
        r#"[]"#,
        r#""#,
    ] {
        assert!(
            matches!(decode_runner_frame(json), Err(FrameError::Malformed(_))),
            "{json}"
        );
    }
}
