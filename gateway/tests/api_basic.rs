//! The HTTP API and job WebSocket against a real gateway (`run()`), real SQLite, loopback.

use std::time::Duration;

mod common;

use common::{Gateway, Reply, http, start_deploy};
use shipwatch_wstest::{After, End, Limit, Options, read_events};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jobs_are_created_validated_listed_cancelled_and_watched() {
    let gateway = Gateway::start_api("admin").await;
    let port = gateway.port;
    assert_eq!(http(port, "GET", "/healthz", &[], "").await.status, 200);

    let Reply { status, body, .. } =
        http(port, "POST", "/api/jobs", &[], r#"{"task":"nope"}"#).await;
    assert_eq!(status, 404, "{body}");
    let Reply { status, body, .. } = http(
        port,
        "POST",
        "/api/jobs",
        &[],
        r#"{"task":"deploy","params":{"REVISION":"x y"}}"#,
    )
    .await;
    assert_eq!(status, 400, "{body}");
    let e: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(e["field"], "REVISION");
    assert!(e["error"].is_string());

    let Reply { status, body, .. } = http(
        port,
        "POST",
        "/api/jobs",
        &[],
        r#"{"task":"deploy","params":{"REVISION":"abc1234"}}"#,
    )
    .await;
    assert_eq!(status, 201, "{body}");
    let job: serde_json::Value = serde_json::from_str(&body).unwrap();
    let id = job["id"].as_u64().unwrap();
    assert_eq!(job["started_by"], "anonymous");
    assert_eq!(job["params"]["REVISION"], "abc1234");

    let Reply { status, body, .. } = http(port, "GET", &format!("/api/jobs/{id}"), &[], "").await;
    assert_eq!(status, 200);
    let got: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(got["hosts"].as_array().unwrap().len(), 2);
    let Reply { body, .. } = http(port, "GET", "/api/jobs?limit=10", &[], "").await;
    let list: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(list["jobs"][0]["id"], id);
    assert!(list["jobs"][0].get("hosts").is_none());
    let Reply { body, .. } = http(port, "GET", "/api/tasks", &[], "").await;
    assert!(body.contains("REVISION"), "{body}");
    let tasks = serde_json::from_str::<serde_json::Value>(&body).unwrap();
    assert_eq!(tasks["tasks"][0]["may_run"], true, "admin may run: {body}");
    assert_eq!(
        tasks["tasks"][0]["allow"],
        serde_json::json!(["operator", "admin"])
    );
    assert_eq!(
        http(port, "GET", "/api/jobs/999", &[], "").await.status,
        404
    );

    // Watch it, then cancel the queued job: the final job event arrives and the socket
    // closes with 1000.
    let url = format!("ws://127.0.0.1:{port}/ws/jobs/{id}?after=0");
    let mut ws = shipwatch_wstest::connect(&url, &Options::default())
        .await
        .unwrap();
    let Reply { status, .. } = http(port, "POST", &format!("/api/jobs/{id}/cancel"), &[], "").await;
    assert_eq!(status, 202);
    let mut last_state = None;
    let end = read_events(&mut ws, Limit::Idle(Duration::from_secs(20)), |evs| {
        for e in evs {
            if e["kind"] == "job" {
                last_state = Some(e["state"].as_str().unwrap().to_string());
            }
        }
        After::Read
    })
    .await;
    let code = match end {
        End::Closed(code) => code,
        End::Deadline => panic!("no close within 20 s"),
        other => panic!("{other}"),
    };
    assert_eq!(code, Some(1000));
    assert_eq!(last_state.as_deref(), Some("cancelled"));

    let Reply { status, body, .. } = http(port, "GET", "/metrics", &[], "").await;
    assert_eq!(status, 200);
    for name in [
        "shipwatch_ws_watchers ",
        "shipwatch_ws_watchers_lagging ",
        "shipwatch_runners ",
        "shipwatch_jobs{state=\"running\"} ",
        "shipwatch_events_total ",
        "shipwatch_store_commit_seconds",
        "shipwatch_store_commit_ops",
    ] {
        assert!(body.contains(name), "/metrics has no {name}: {body}");
    }
    for described in [
        "shipwatch_jobs",
        "shipwatch_events_total",
        "shipwatch_store_commit_seconds",
    ] {
        assert!(
            body.contains(&format!("# HELP {described} ")),
            "/metrics does not say what {described} is: {body}"
        );
    }
    let cancelled = body
        .lines()
        .find_map(|l| l.strip_prefix("shipwatch_jobs{state=\"cancelled\"} "))
        .and_then(|n| n.parse::<u64>().ok());
    assert!(cancelled >= Some(1), "the cancelled job is counted: {body}");

    // Who started and cancelled what, newest first.
    let Reply { status, body, .. } = http(port, "GET", "/api/audit", &[], "").await;
    assert_eq!(status, 200, "{body}");
    let audit: serde_json::Value = serde_json::from_str(&body).unwrap();
    let actions: Vec<(&str, &str)> = audit["audit"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| (e["actor"].as_str().unwrap(), e["action"].as_str().unwrap()))
        .collect();
    assert_eq!(
        actions.first(),
        Some(&("anonymous", "cancel")),
        "newest first: {body}"
    );
    assert!(actions.contains(&("anonymous", "start")), "{body}");

    gateway.stop().await;
}

#[tokio::test]
async fn reload_swaps_a_valid_config_and_keeps_the_old_on_errors() {
    let dir = tempfile::Builder::new()
        .prefix("rl")
        .tempdir_in("/tmp")
        .unwrap();
    let file = dir.path().join("shipwatch.toml");
    let base = "[server]\nlisten = \"127.0.0.1:1\"\n\n[hosts]\nweb = [\"web-01\"]\n";
    let task = |name: &str| {
        format!(
            "\n[[tasks]]\nname = \"{name}\"\nhosts = [\"web\"]\ntransport = \"local\"\nscript = \"true\"\n"
        )
    };
    std::fs::write(&file, format!("{base}{}", task("one"))).unwrap();
    let config =
        shipwatch_config::load(&shipwatch_config::ConfigSource::File(file.clone())).unwrap();
    let (tx, rx) = tokio::sync::watch::channel(std::sync::Arc::new(config));

    std::fs::write(&file, format!("{base}{}{}", task("one"), task("two"))).unwrap();
    assert_eq!(shipwatch_gateway::reload::reload(&tx).await, Ok(()));
    assert!(rx.borrow().task("two").is_some(), "valid config swapped in");

    std::fs::write(&file, format!("{base}{}\nbogus_key = 1\n", task("three"))).unwrap();
    assert_eq!(shipwatch_gateway::reload::reload(&tx).await, Err(1));
    assert!(
        rx.borrow().task("two").is_some(),
        "invalid config kept the old one"
    );
    assert!(rx.borrow().task("three").is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_viewer_reads_but_may_not_start_cancel_or_read_the_audit() {
    let gateway = Gateway::start_api("viewer").await;
    let port = gateway.port;
    let body = r#"{"task":"deploy","params":{"REVISION":"abc1234"}}"#;
    let Reply {
        status, body: text, ..
    } = http(port, "POST", "/api/jobs", &[], body).await;
    assert_eq!(status, 403, "{text}");
    assert!(text.contains("\"error\""), "JSON error: {text}");
    assert_eq!(
        http(port, "POST", "/api/jobs/1/cancel", &[], "")
            .await
            .status,
        403
    );
    assert_eq!(http(port, "GET", "/api/audit", &[], "").await.status, 403);
    assert_eq!(http(port, "GET", "/api/jobs", &[], "").await.status, 200);
    let tasks = http(port, "GET", "/api/tasks", &[], "").await;
    assert_eq!(tasks.status, 200);
    // The page offers Run from this, so it must say no to a viewer.
    let body = tasks.json();
    assert_eq!(body["tasks"][0]["may_run"], false, "{body}");
    assert_eq!(
        body["tasks"][0]["allow"],
        serde_json::json!(["operator", "admin"])
    );

    gateway.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rerun_copies_the_stored_spec_and_refuses_when_nothing_can_be_rerun() {
    let gateway = Gateway::start_api("admin").await;
    let port = gateway.port;
    let id = start_deploy(port).await;
    let rerun = format!("/api/jobs/{id}/rerun");

    // Nothing runs these jobs (no runner): the original stays queued.
    let Reply { status, body, .. } = http(port, "POST", &rerun, &[], r#"{"hosts":"failed"}"#).await;
    assert_eq!(status, 409, "{body}");
    let e: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(e["field"], "hosts");
    assert!(e["error"].as_str().unwrap().contains("still queued"), "{e}");
    let Reply { status, body, .. } = http(port, "POST", &rerun, &[], r#"{"hosts":"some"}"#).await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&body).unwrap()["field"],
        "hosts"
    );
    let Reply { status, .. } = http(
        port,
        "POST",
        "/api/jobs/999/rerun",
        &[],
        r#"{"hosts":"all"}"#,
    )
    .await;
    assert_eq!(status, 404);

    let Reply { status, body, .. } = http(port, "POST", &rerun, &[], r#"{"hosts":"all"}"#).await;
    assert_eq!(status, 201, "{body}");
    let new: serde_json::Value = serde_json::from_str(&body).unwrap();
    let new_id = new["id"].as_u64().unwrap();
    assert_ne!(new_id, id);
    assert_eq!(new["params"]["REVISION"], "abc1234");
    let Reply { body: original, .. } = http(port, "GET", &format!("/api/jobs/{id}"), &[], "").await;
    let Reply { body: copy, .. } = http(port, "GET", &format!("/api/jobs/{new_id}"), &[], "").await;
    let (original, copy): (serde_json::Value, serde_json::Value) = (
        serde_json::from_str(&original).unwrap(),
        serde_json::from_str(&copy).unwrap(),
    );
    assert_eq!(copy["spec"], original["spec"]);
    let Reply { body: audit, .. } = http(port, "GET", "/api/audit", &[], "").await;
    assert!(
        audit.contains(&format!("re-run of job {id} on all 2 hosts")),
        "{audit}"
    );
    gateway.stop().await;
}

/// The API served on an unlimited store that holds one job, on web-01 and web-02.
struct Served {
    _dir: tempfile::TempDir,
    shutdown: tokio_util::sync::CancellationToken,
    store: shipwatch_gateway::store::Store,
    port: u16,
    job: shipwatch_protocol::JobId,
}

async fn serve_a_job(prefix: &str) -> Served {
    use common::{config, serve_api, short_tempdir, spec, unlimited_store};
    let dir = short_tempdir(prefix);
    let cfg = config(dir.path());
    let shutdown = tokio_util::sync::CancellationToken::new();
    let hub = shipwatch_gateway::fanout::Hub::new(shutdown.clone());
    let store = unlimited_store(&cfg.server.data_dir, &hub);
    let port = serve_api(
        cfg,
        &store,
        &hub,
        tokio_util::task::TaskTracker::new(),
        &shutdown,
    )
    .await;
    let job = store
        .create_job(spec(&["web-01", "web-02"]), Default::default(), "test")
        .await
        .unwrap()
        .id;
    Served {
        _dir: dir,
        shutdown,
        store,
        port,
        job,
    }
}

/// `GET /api/jobs/{id}/log?after=N`: exactly the events after N, across the store's
/// pages, in both formats and with the filters, so a reader that holds seqs up to N
/// (the page's gap fill) reads on from there instead of from seq 1.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_log_reads_on_after_a_seq() {
    use common::{line, line_on};
    use shipwatch_gateway::fanout::PAGE_EVENTS;
    use shipwatch_protocol::Stream;

    let Served {
        _dir,
        shutdown,
        store,
        port,
        job,
    } = serve_a_job("log-after").await;
    // More than a page, every tenth line from web-02 on stderr.
    let total = PAGE_EVENTS as u64 + 500;
    let events = (1..=total)
        .map(|k| match k % 10 {
            0 => line_on(k, "web-02", Stream::Stderr, &format!("e{k}")),
            _ => line(k, "web-01", &format!("o{k}")),
        })
        .collect();
    store.append(job, events).await.unwrap();

    let seqs = |body: &str| -> Vec<u64> {
        body.lines()
            .map(|l| {
                serde_json::from_str::<serde_json::Value>(l).unwrap()["seq"]
                    .as_u64()
                    .unwrap()
            })
            .collect()
    };
    let log = format!("/api/jobs/{job}/log");
    let (status, body) = get(port, &format!("{log}?format=ndjson&after=10")).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(seqs(&body), (11..=total).collect::<Vec<_>>());
    let (_, body) = get(port, &format!("{log}?format=ndjson")).await;
    assert_eq!(seqs(&body).len() as u64, total, "no after= is from seq 1");
    let (_, body) = get(port, &format!("{log}?format=ndjson&after={total}")).await;
    assert_eq!(body, "", "nothing after the last seq");

    // Filters and the text format go on from the same place.
    let near_end = total - 25;
    let (_, body) = get(
        port,
        &format!("{log}?format=ndjson&stream=stderr&after={near_end}"),
    )
    .await;
    let want: Vec<u64> = (near_end + 1..=total).filter(|k| k % 10 == 0).collect();
    assert_eq!(seqs(&body), want);
    let (_, body) = get(port, &format!("{log}?host=web-02&after={near_end}")).await;
    let texts: Vec<&str> = body
        .lines()
        .map(|l| l.split_once("| ").unwrap().1)
        .collect();
    let want: Vec<String> = want.iter().map(|k| format!("e{k}")).collect();
    assert_eq!(texts, want, "{body}");

    let bad = http(port, "GET", &format!("{log}?after=-1"), &[], "").await;
    assert_eq!(bad.status, 400, "{}", bad.body);
    assert_eq!(bad.json()["field"], "after");
    shutdown.cancel();
}

/// `format=compact` is the NDJSON log with its line events in columns: across several of
/// the log's store reads (which overlap), after a seq and with filters, the same events
/// in the same order; a text holding a newline stays JSON, tabs, escapes and non-ASCII
/// text stay as they are.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_compact_log_is_the_ndjson_log_in_columns() {
    use common::{host_is, line, line_on};
    use shipwatch_protocol::{HostState, Stream, Timestamp};

    let Served {
        _dir,
        shutdown,
        store,
        port,
        job,
    } = serve_a_job("log-compact").await;
    // Over two of the log's 16,384-event reads, with odd texts and a host event among them.
    let total = 2 * 16_384 + 777;
    let events = (1..=total)
        .map(|k| match k {
            5 => line(k, "web-01", "two\nlines"),
            6 => line_on(
                k,
                "web-02",
                Stream::Stderr,
                "tab\there \u{1b}[31mred\u{1b}[0m \r über ✓",
            ),
            7 => line(k, "web-01", ""),
            16_385 => host_is(k, "web-02", HostState::Running, None),
            _ if k % 10 == 0 => line_on(k, "web-02", Stream::Stderr, &format!("e{k}")),
            _ => line(k, "web-01", &format!("o{k}")),
        })
        .collect();
    store.append(job, events).await.unwrap();

    // Each compact line as the JSON event it stands for.
    let from_compact = |body: &str| -> Vec<serde_json::Value> {
        let mut last_ts = 0i64;
        body.lines()
            .map(|l| {
                if l.starts_with('{') {
                    return serde_json::from_str(l).unwrap();
                }
                let f: Vec<&str> = l.splitn(5, '\t').collect();
                assert_eq!(f.len(), 5, "{l:?}");
                let ts = match f[1].as_bytes()[0] {
                    b'+' | b'-' => last_ts + f[1].parse::<i64>().unwrap(),
                    _ => f[1].parse().unwrap(),
                };
                last_ts = ts;
                let stream = match f[3] {
                    "o" => "stdout",
                    "e" => "stderr",
                    other => panic!("stream {other:?} in {l:?}"),
                };
                serde_json::json!({"kind": "line", "job": job, "seq": f[0].parse::<u64>().unwrap(),
                    "ts": Timestamp(ts).to_string(), "host": f[2], "stream": stream, "text": f[4]})
            })
            .collect()
    };
    let from_ndjson = |body: &str| -> Vec<serde_json::Value> {
        body.lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    };
    let log = format!("/api/jobs/{job}/log");
    for query in [
        "",
        "&after=3",
        "&after=16380",
        "&stream=stderr",
        "&host=web-01&after=9",
    ] {
        let (status, ndjson) = get(port, &format!("{log}?format=ndjson{query}")).await;
        assert_eq!(status, 200, "{ndjson}");
        let (status, compact) = get(port, &format!("{log}?format=compact{query}")).await;
        assert_eq!(status, 200, "{compact}");
        assert!(
            compact.len() < ndjson.len() * 2 / 3,
            "compact is smaller ({query})"
        );
        let want = from_ndjson(&ndjson);
        assert!(!want.is_empty());
        assert_eq!(from_compact(&compact), want, "{query}");
    }
    let (_, ndjson) = get(port, &format!("{log}?format=ndjson")).await;
    assert_eq!(
        from_ndjson(&ndjson).len() as u64,
        total,
        "every event, once"
    );
    let (_, compact) = get(port, &format!("{log}?format=compact")).await;
    assert!(
        compact.contains("{\"kind\":\"line\",\"job\":"),
        "the two-line text stays JSON"
    );
    assert!(
        compact.contains("\te\ttab\there \u{1b}[31m"),
        "a tab and an escape as they are"
    );
    shutdown.cancel();
}

/// GET `path`: the status and the body, de-chunked (the log is streamed).
async fn get(port: u16, path: &str) -> (u16, String) {
    let reply = http(port, "GET", path, &[], "").await;
    let chunked = reply
        .header("transfer-encoding")
        .is_some_and(|v| v.eq_ignore_ascii_case("chunked"));
    let body = if chunked {
        dechunked(&reply.body)
    } else {
        reply.body.clone()
    };
    (reply.status, body)
}

/// A chunked HTTP/1.1 body (the log is streamed) as its plain content.
fn dechunked(mut body: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = body.split_once("\r\n") {
        let n = usize::from_str_radix(size.trim(), 16).unwrap();
        if n == 0 {
            break;
        }
        out.push_str(&rest[..n]);
        body = &rest[n + 2..];
    }
    out
}
