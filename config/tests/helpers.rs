//! The pure helpers other crates call: wave sizes, thresholds, job specs, warnings.

use std::collections::BTreeMap;
use std::path::Path;

use shipwatch_config::{Amount, Batch, Config, SpecError, Threshold, load_str};

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
fn wave_sizes_repeat_the_last_item_and_sum_to_total() {
    use Amount::*;
    let batch = Batch(vec![Count(1), Percent(25), Percent(100)]);
    assert_eq!(batch.wave_sizes(20), vec![1, 5, 14]);
    assert_eq!(
        Batch(vec![Count(1), Count(5)]).wave_sizes(20),
        vec![1, 5, 5, 5, 4]
    );
    assert_eq!(Batch(vec![Count(5)]).wave_sizes(3), vec![3]);
    assert_eq!(
        Batch(vec![Percent(25)]).wave_sizes(3),
        vec![1, 1, 1],
        "min 1"
    );
    assert_eq!(Batch(vec![Percent(30)]).wave_sizes(10), vec![3, 3, 3, 1]);
    assert_eq!(Batch(vec![Percent(100)]).wave_sizes(7), vec![7]);
    assert_eq!(Batch(vec![Count(2)]).wave_sizes(0), Vec::<usize>::new());
    for total in 0..60 {
        let sizes = Batch(vec![Count(1), Percent(33), Count(4)]).wave_sizes(total);
        assert_eq!(sizes.iter().sum::<usize>(), total);
        assert!(sizes.iter().all(|&s| s >= 1));
    }
}

#[test]
fn threshold_resolves_percent_rounding_down() {
    assert_eq!(Threshold(Amount::Count(3)).resolve(20), 3);
    assert_eq!(Threshold(Amount::Percent(10)).resolve(20), 2);
    assert_eq!(Threshold(Amount::Percent(10)).resolve(5), 0);
    assert_eq!(Threshold(Amount::Percent(100)).resolve(7), 7);
    assert_eq!(Threshold(Amount::Count(0)).resolve(7), 0);
}

#[test]
fn job_spec_is_a_complete_snapshot() {
    let config = config(TASKS);
    let spec = config
        .job_spec("deploy", &params(&[("REVISION", "abc1234")]))
        .unwrap();
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
    config(TASKS)
        .job_spec(task, &params(pairs))
        .expect_err("should be refused")
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

#[test]
fn warnings_flag_anonymous_admin_on_a_public_address() {
    let open = config(
        "[server]\nlisten = \"0.0.0.0:8080\"\npublic_url = \"https://d.example\"\n[auth]\nanonymous = \"operator\"\n",
    );
    assert_eq!(
        open.warnings(),
        vec![
            "auth.anonymous = \"operator\" lets anyone who reaches 0.0.0.0:8080 act as operator without logging in"
        ]
    );
    let loopback = config("[auth]\nanonymous = \"admin\"\n");
    assert!(loopback.warnings().is_empty());
}

#[test]
fn a_hash_made_by_the_argon2_crate_is_accepted() {
    use argon2::PasswordHasher;
    let salt = argon2::password_hash::SaltString::encode_b64(b"sixteen byte salt").unwrap();
    let hash = argon2::Argon2::default()
        .hash_password(b"hunter2", &salt)
        .unwrap()
        .to_string();
    assert!(hash.starts_with("$argon2id$"));
    let text =
        format!("[[users]]\nname = \"alice\"\npassword_hash = \"{hash}\"\nrole = \"admin\"\n");
    let config = config(&text);
    assert_eq!(config.users[0].password_hash, hash);
}
