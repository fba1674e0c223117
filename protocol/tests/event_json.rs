//! Events serialise exactly as DESIGN §5 shows them, and read back.

use shipwatch_protocol::{
    Event, EventBody, EventKind, HostState, JobState, RunnerEvent, Stream, Timestamp,
};

const TS: Timestamp = Timestamp(1_795_580_731_123);

fn event(body: EventBody) -> Event {
    Event {
        job: 42,
        seq: 7,
        ts: TS,
        body,
    }
}

fn assert_json(e: &Event, want: &str) {
    let got = String::from_utf8(e.to_json()).unwrap();
    assert_eq!(got, want);
    assert_eq!(serde_json::to_string(e).unwrap(), want);
    assert_eq!(&serde_json::from_str::<Event>(want).unwrap(), e);
}

#[test]
fn line_event_is_exactly_as_designed() {
    assert_json(
        &event(EventBody::Line {
            host: "web-03".into(),
            stream: Stream::Stderr,
            text: "tar: \"x\"\t\u{1b}[31mred\u{1b}[0m".into(),
        }),
        r#"{"kind":"line","job":42,"seq":7,"ts":"2026-11-25T04:25:31.123Z","host":"web-03","stream":"stderr","text":"tar: \"x\"\t\u001b[31mred\u001b[0m"}"#,
    );
}

#[test]
fn host_event_is_exactly_as_designed() {
    assert_json(
        &event(EventBody::Host {
            host: "web-03".into(),
            state: HostState::Failed,
            exit_code: Some(1),
        }),
        r#"{"kind":"host","job":42,"seq":7,"ts":"2026-11-25T04:25:31.123Z","host":"web-03","state":"failed","exit_code":1}"#,
    );
    assert_json(
        &event(EventBody::Host {
            host: "web-03".into(),
            state: HostState::Unreachable,
            exit_code: None,
        }),
        r#"{"kind":"host","job":42,"seq":7,"ts":"2026-11-25T04:25:31.123Z","host":"web-03","state":"unreachable","exit_code":null}"#,
    );
}

#[test]
fn job_event_is_exactly_as_designed() {
    assert_json(
        &event(EventBody::Job {
            state: JobState::Failed,
            reason: Some("2 hosts failed".into()),
        }),
        r#"{"kind":"job","job":42,"seq":7,"ts":"2026-11-25T04:25:31.123Z","state":"failed","reason":"2 hosts failed"}"#,
    );
    assert_json(
        &event(EventBody::Job {
            state: JobState::Succeeded,
            reason: None,
        }),
        r#"{"kind":"job","job":42,"seq":7,"ts":"2026-11-25T04:25:31.123Z","state":"succeeded","reason":null}"#,
    );
}

#[test]
fn notice_event_is_exactly_as_designed() {
    assert_json(
        &event(EventBody::Notice {
            text: "log cap reached".into(),
        }),
        r#"{"kind":"notice","job":42,"seq":7,"ts":"2026-11-25T04:25:31.123Z","text":"log cap reached"}"#,
    );
}

#[test]
fn runner_event_carries_integer_milliseconds() {
    let e = RunnerEvent {
        rseq: 3,
        ts: TS,
        body: EventBody::Line {
            host: "db-01".into(),
            stream: Stream::Stdout,
            text: "ok".into(),
        },
    };
    let want = r#"{"kind":"line","rseq":3,"ts":1795580731123,"host":"db-01","stream":"stdout","text":"ok"}"#;
    assert_eq!(serde_json::to_string(&e).unwrap(), want);
    assert_eq!(serde_json::from_str::<RunnerEvent>(want).unwrap(), e);
}

#[test]
fn reading_tolerates_any_field_order_unknown_fields_and_missing_nullables() {
    let e: Event = serde_json::from_str(
        r#"{"state":"ok","future":[1,{"x":2}],"host":"h","ts":"2026-11-25T05:25:31.123+01:00","seq":7,"job":42,"kind":"host"}"#,
    )
    .unwrap();
    assert_eq!(
        e,
        event(EventBody::Host {
            host: "h".into(),
            state: HostState::Ok,
            exit_code: None
        })
    );
}

#[test]
fn reading_refuses_what_is_not_an_event() {
    for bad in [
        r#"{"kind":"line","job":1,"seq":1,"ts":0,"host":"h","stream":"stdin","text":""}"#,
        r#"{"kind":"host","job":1,"seq":1,"ts":0,"host":"h","state":"succeeded"}"#,
        r#"{"kind":"job","job":1,"seq":1,"ts":0,"state":"ok"}"#,
        r#"{"kind":"job","job":1,"seq":1,"ts":"yesterday","state":"failed"}"#,
        r#"{"kind":"line","job":1,"seq":1,"ts":0,"host":"h","stream":"stdout"}"#,
        r#"{"kind":"gossip","job":1,"seq":1,"ts":0}"#,
        r#"{"job":1,"seq":1,"ts":0,"text":"x"}"#,
        r#"{"kind":"notice","seq":1,"ts":0,"text":"x"}"#,
        r#"[1,2,3]"#,
    ] {
        assert!(
            serde_json::from_str::<Event>(bad).is_err(),
            "accepted {bad}"
        );
    }
}

#[test]
fn body_accessors_serve_filters() {
    let line = EventBody::Line {
        host: "web-01".into(),
        stream: Stream::Stderr,
        text: String::new(),
    };
    assert_eq!(line.kind(), EventKind::Line);
    assert_eq!(line.host(), Some("web-01"));
    assert_eq!(line.stream(), Some(Stream::Stderr));
    let job = EventBody::Job {
        state: JobState::Lost,
        reason: None,
    };
    assert_eq!(
        (job.kind(), job.host(), job.stream()),
        (EventKind::Job, None, None)
    );
    for k in [
        EventKind::Line,
        EventKind::Host,
        EventKind::Job,
        EventKind::Notice,
    ] {
        assert_eq!(k.as_str().parse::<EventKind>(), Ok(k));
    }
    assert_eq!("stderr".parse::<Stream>(), Ok(Stream::Stderr));
    let err = "stdin".parse::<Stream>().unwrap_err().to_string();
    assert_eq!(
        err,
        "unknown stream `stdin`, expected one of: stdout stderr"
    );
}

#[test]
fn states_know_when_they_are_final_and_what_counts_as_failure() {
    use HostState::*;
    let failures: Vec<_> = [
        Pending,
        Running,
        Ok,
        Failed,
        Timeout,
        Unreachable,
        Cancelled,
        Skipped,
    ]
    .into_iter()
    .filter(|s| s.is_failure())
    .collect();
    assert_eq!(failures, [Failed, Timeout, Unreachable]);
    assert!(!Pending.is_terminal() && !Running.is_terminal());
    assert!(Ok.is_terminal() && Skipped.is_terminal() && Cancelled.is_terminal());
    assert!(!JobState::Queued.is_terminal() && !JobState::Running.is_terminal());
    assert!(JobState::Lost.is_terminal() && JobState::Succeeded.is_terminal());
    assert_eq!("unreachable".parse::<HostState>(), Result::Ok(Unreachable));
    assert_eq!(JobState::Cancelled.as_str(), "cancelled");
}
