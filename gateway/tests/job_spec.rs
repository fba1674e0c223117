//! A job's spec from a task and params: a complete snapshot, and bad requests refused
//! naming the field (the gateway answers them with 400).

use std::collections::BTreeMap;
use std::path::Path;

use shipwatch_config::{Config, load_str};
use shipwatch_gateway::spec::{SpecError, job_spec};

fn config(text: &str) -> Config {
    load_str(text, "test.toml", Path::new("/srv/cfg")).unwrap_or_else(|e| panic!("{e}"))
}

fn params(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

const TASKS: &str = r#"
[ssh]
user = "ops"
identity_file = "keys/id"
options = ["ProxyJump=bastion"]

[hosts]
web = ["web-01", "web-02=10.0.0.2", "web-03=10.0.0.3:2222", "web-04=[::1]:22", "web-05"]

[[tasks]]
name = "deploy"
hosts = ["web"]
script = "echo hi"
batch = [1, "50%"]
max_failures = "40%"
timeout_secs = 30

[[tasks.params]]
name = "REVISION"
pattern = "[0-9a-f]{7}"
required = true

[[tasks.params]]
name = "MODE"
pattern = "fast|slow"
default = "slow"
"#;

#[test]
fn job_spec_is_a_complete_snapshot() {
    let config = config(TASKS);
    let spec = job_spec(&config, "deploy", &params(&[("REVISION", "abc1234")])).unwrap();
    assert_eq!(spec.task, "deploy");
    assert_eq!(spec.script, "echo hi");
    assert_eq!(
        spec.waves,
        vec![
            vec!["web-01"],
            vec!["web-02", "web-03"],
            vec!["web-04", "web-05"]
        ]
    );
    assert_eq!(spec.hosts.len(), 5);
    assert_eq!(spec.hosts[2].address.as_deref(), Some("10.0.0.3"));
    assert_eq!(spec.hosts[2].port, Some(2222));
    assert_eq!(spec.hosts[3].address.as_deref(), Some("::1"));
    assert_eq!(spec.max_failures, 2);
    assert_eq!(spec.timeout_secs, 30);
    assert_eq!(
        spec.params,
        params(&[("REVISION", "abc1234"), ("MODE", "slow")])
    );
    assert_eq!(spec.ssh.user, "ops");
    assert_eq!(spec.ssh.identity_file.as_deref(), Some("/srv/cfg/keys/id"));
    assert_eq!(spec.ssh.options, vec!["ProxyJump=bastion"]);
    assert_eq!(spec.ssh.connect_timeout_secs, 10);
}

fn spec_error(task: &str, pairs: &[(&str, &str)]) -> SpecError {
    job_spec(&config(TASKS), task, &params(pairs)).expect_err("should be refused")
}

#[test]
fn job_spec_refuses_bad_requests_naming_the_field() {
    let e = spec_error("nope", &[]);
    assert_eq!(
        (e.field.as_deref(), e.message.as_str()),
        (Some("task"), "unknown task \"nope\"")
    );
    let e = spec_error("deploy", &[("REVISION", "abc1234"), ("EXTRA", "1")]);
    assert_eq!(e.field.as_deref(), Some("EXTRA"));
    assert_eq!(e.message, "task \"deploy\" has no param \"EXTRA\"");
    let e = spec_error("deploy", &[]);
    assert_eq!(e.field.as_deref(), Some("REVISION"));
    assert_eq!(e.message, "REVISION is required");
    let e = spec_error("deploy", &[("REVISION", "abc1234; rm -rf /")]);
    assert_eq!(e.field.as_deref(), Some("REVISION"));
    assert_eq!(
        e.message,
        "REVISION = \"abc1234; rm -rf /\" does not match the pattern [0-9a-f]{7}"
    );
    // Anchored: a matching prefix or suffix is not enough.
    let e = spec_error("deploy", &[("REVISION", "abc1234"), ("MODE", "fastest")]);
    assert_eq!(e.field.as_deref(), Some("MODE"));
    let e = spec_error("deploy", &[("REVISION", "abc\u{0}234")]);
    assert_eq!(e.message, "REVISION cannot contain a NUL character");
}
