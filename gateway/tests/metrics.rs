//! `/metrics` of a real gateway: valid Prometheus text by `promtool check metrics`, each
//! figure under one name with its `# HELP`.

mod common;

use std::io::Write;
use std::process::{Command, Stdio};

use common::{Gateway, Reply, http, start_deploy};

/// `promtool check metrics` on `text`: `None` when promtool is not installed.
fn promtool_check(text: &str) -> Option<(bool, String)> {
    let mut child = match Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
    {
        Ok(child) => child,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return None,
        Err(e) => panic!("cannot run promtool: {e}"),
    };
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    Some((out.status.success(), said))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_pass_promtool_and_say_each_figure_once_with_its_help() {
    let gateway = Gateway::start_api("admin").await;
    let port = gateway.port;
    // A job, cancelled: every family (commits, events, jobs by state) has a sample.
    let id = start_deploy(port).await;
    assert_eq!(
        http(port, "POST", &format!("/api/jobs/{id}/cancel"), &[], "")
            .await
            .status,
        202
    );
    let Reply {
        status, body: text, ..
    } = http(port, "GET", "/metrics", &[], "").await;
    assert_eq!(status, 200);
    gateway.stop().await;

    for family in [
        "shipwatch_ws_watchers",
        "shipwatch_ws_watchers_lagging",
        "shipwatch_runners",
        "shipwatch_jobs",
        "shipwatch_events_total",
        "shipwatch_store_commit_seconds",
        "shipwatch_store_commit_ops",
    ] {
        let help = format!("# HELP {family} ");
        let typ = format!("# TYPE {family} ");
        assert_eq!(text.matches(&help).count(), 1, "{family} HELP once: {text}");
        assert_eq!(text.matches(&typ).count(), 1, "{family} TYPE once: {text}");
    }
    for gone in ["shipwatch_watchers ", "shipwatch_watchers_lagging "] {
        assert!(
            !text.contains(gone),
            "one name per figure, not {gone}: {text}"
        );
    }

    match promtool_check(&text) {
        Some((ok, said)) => assert!(ok, "promtool check metrics: {said}\n{text}"),
        None if std::env::var("CI").as_deref() == Ok("true") => {
            panic!("promtool is missing (Debian package prometheus; tests/run.sh installs it)")
        }
        None => eprintln!("promtool not installed: skipping its check"),
    }
}
