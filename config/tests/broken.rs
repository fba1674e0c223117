//! Broken configs and the exact error each one gets: `FILE:LINE:COL: message`.

use std::path::Path;

use shipwatch_config::load_str;

const HASH: &str = "$argon2id$v=19$m=19456,t=2,p=1$c29tZXNhbHRzb21lc2FsdA$0Wn3kP0EVtP3Pqf7Ghx5BCZ+OiN7dJV0/wBJ3NQ7GQM";

fn errors(text: &str) -> Vec<String> {
    match load_str(
        text,
        "shipwatch.toml",
        Path::new("/nonexistent-shipwatch-test"),
    ) {
        Ok(_) => vec![],
        Err(errors) => errors.0.iter().map(ToString::to_string).collect(),
    }
}

/// (what it shows, config text, the errors in full)
const CASES: &[(&str, &str, &[&str])] = &[
    (
        "syntax error",
        r#"listen = 
"#,
        &["shipwatch.toml:1:10: listen: string values must be quoted, expected literal string"],
    ),
    (
        "unknown top-level key",
        r#"colour = "blue"
"#,
        &[
            "shipwatch.toml:1:1: top level: unknown key `colour`, expected one of `server`, `supervisor`, `ssh`, `hosts`, `tasks`, `users`, `tokens`, `auth`, `store`, `notify`",
        ],
    ),
    (
        "unknown key in server",
        r#"[server]
listen = "127.0.0.1:8080"
listn = "x"
"#,
        &[
            "shipwatch.toml:3:1: server: unknown key `listn`, expected one of `listen`, `data_dir`, `run_dir`, `public_url`, `retention_days`, `max_log_bytes`",
        ],
    ),
    (
        "wrong type",
        r#"[supervisor]
runners = "four"
"#,
        &[
            "shipwatch.toml:2:11: supervisor.runners: invalid type: string \"four\", expected an integer",
        ],
    ),
    (
        "listen not an address",
        r#"[server]
listen = "localhost"
"#,
        &[
            "shipwatch.toml:2:10: server.listen = \"localhost\": expected a socket address like \"127.0.0.1:8080\" or \"[::1]:8080\"",
        ],
    ),
    (
        "public_url not http",
        r#"[server]
public_url = "ftp://x"
"#,
        &[
            "shipwatch.toml:2:14: server.public_url = \"ftp://x\": expected an http:// or https:// URL like \"https://deploy.example.com\"",
        ],
    ),
    (
        "retention 0",
        r#"[server]
retention_days = 0
"#,
        &["shipwatch.toml:2:18: server.retention_days = 0: expected a number of days, 1 or more"],
    ),
    (
        "runners too many",
        r#"[supervisor]
runners = 300
"#,
        &["shipwatch.toml:2:11: supervisor.runners = 300: expected runner processes: 0 to 256"],
    ),
    (
        "start_retries 0",
        r#"[supervisor]
start_retries = 0
"#,
        &["shipwatch.toml:2:17: supervisor.start_retries = 0: expected 1 or more failed starts"],
    ),
    (
        "stop timeout 0",
        r#"[supervisor]
stop_timeout_secs = 0
"#,
        &["shipwatch.toml:2:21: supervisor.stop_timeout_secs = 0: expected seconds, more than 0"],
    ),
    (
        "ssh port 0",
        r#"[ssh]
port = 0
"#,
        &["shipwatch.toml:2:8: ssh.port = 0: expected a port, 1 to 65535"],
    ),
    (
        "ssh option",
        r#"[ssh]
options = ["-oProxyCommand=evil"]
"#,
        &[
            "shipwatch.toml:2:12: ssh.options[0] = \"-oProxyCommand=evil\": expected an ssh option \"Key=value\", e.g. \"ProxyJump=bastion\"",
        ],
    ),
    (
        "host bad port",
        r#"[hosts]
web = ["web-01=10.0.0.1:99999"]
"#,
        &[
            "shipwatch.toml:2:8: hosts.web[0] = \"web-01=10.0.0.1:99999\": port \"99999\" is not 1 to 65535",
        ],
    ),
    (
        "host bad name",
        r#"[hosts]
web = ["web 01"]
"#,
        &[
            "shipwatch.toml:2:8: hosts.web[0] = \"web 01\": a host name is letters, digits, '.', '_' and '-' (expected \"name\" or \"name=address[:port]\")",
        ],
    ),
    (
        "host address starts with dash",
        r#"[hosts]
web = ["web-01=-oProxyCommand=x"]
"#,
        &[
            "shipwatch.toml:2:8: hosts.web[0] = \"web-01=-oProxyCommand=x\": \"-oProxyCommand=x\" is not a host address",
        ],
    ),
    (
        "host defined twice",
        r#"[hosts]
web = ["web-01=10.0.0.1"]
all = ["web-01=10.0.0.9"]
"#,
        &[
            "shipwatch.toml:3:8: hosts.all[0] = \"web-01=10.0.0.9\": host \"web-01\" is already defined as \"web-01=10.0.0.1\"",
        ],
    ),
    (
        "bad v6",
        r#"[hosts]
web = ["w=[fe80::zz]:22"]
"#,
        &[
            "shipwatch.toml:2:8: hosts.web[0] = \"w=[fe80::zz]:22\": \"fe80::zz\" is not an IPv6 address",
        ],
    ),
    (
        "task name invalid",
        r#"[hosts]
web = ["web-01", "web-02=10.0.0.2"]

[[tasks]]
name = "Deploy!"
hosts = ["web"]
script = "echo hi"
"#,
        &[
            "shipwatch.toml:5:8: tasks[0].name = \"Deploy!\": a task name is lowercase letters, digits, '_' and '-'",
        ],
    ),
    (
        "duplicate task",
        r#"[hosts]
web = ["web-01", "web-02=10.0.0.2"]

[[tasks]]
name = "deploy"
hosts = ["web"]
script = "echo hi"
[[tasks]]
name = "deploy"
hosts = ["web"]
script = "echo hi"
"#,
        &["shipwatch.toml:9:8: tasks[1] \"deploy\": name \"deploy\" is already used by tasks[0]"],
    ),
    (
        "unknown host",
        r#"[hosts]
web = ["web-01", "web-02=10.0.0.2"]

[[tasks]]
name = "deploy"
hosts = ["web", "db"]
script = "echo hi"
"#,
        &[
            "shipwatch.toml:6:17: tasks[0] \"deploy\": hosts: \"db\" is neither a group in [hosts] nor a host of one",
        ],
    ),
    (
        "batch zero",
        r#"[hosts]
web = ["web-01", "web-02=10.0.0.2"]

[[tasks]]
name = "deploy"
hosts = ["web"]
script = "echo hi"
batch = 0
"#,
        &[
            "shipwatch.toml:8:9: tasks[0] \"deploy\": batch = 0: a batch is 1 or more hosts, a percent like \"25%\", or a list of those",
        ],
    ),
    (
        "batch percent too big",
        r#"[hosts]
web = ["web-01", "web-02=10.0.0.2"]

[[tasks]]
name = "deploy"
hosts = ["web"]
script = "echo hi"
batch = "150%"
"#,
        &[
            "shipwatch.toml:8:9: tasks[0] \"deploy\": batch = \"150%\": a batch is 1 or more hosts, a percent like \"25%\", or a list of those",
        ],
    ),
    (
        "batch empty list",
        r#"[hosts]
web = ["web-01", "web-02=10.0.0.2"]

[[tasks]]
name = "deploy"
hosts = ["web"]
script = "echo hi"
batch = []
"#,
        &[
            "shipwatch.toml:8:9: tasks[0] \"deploy\": batch = []: a batch is 1 or more hosts, a percent like \"25%\", or a list of those",
        ],
    ),
    (
        "batch list bad item",
        r#"[hosts]
web = ["web-01", "web-02=10.0.0.2"]

[[tasks]]
name = "deploy"
hosts = ["web"]
script = "echo hi"
batch = [1, "x"]
"#,
        &[
            "shipwatch.toml:8:9: tasks[0] \"deploy\": batch = [1, \"x\"]: a batch is 1 or more hosts, a percent like \"25%\", or a list of those",
        ],
    ),
    (
        "max_failures list",
        r#"[hosts]
web = ["web-01", "web-02=10.0.0.2"]

[[tasks]]
name = "deploy"
hosts = ["web"]
script = "echo hi"
max_failures = [1]
"#,
        &[
            "shipwatch.toml:8:16: tasks[0] \"deploy\": max_failures = [1]: max_failures is 0 or more hosts, or a percent like \"10%\"",
        ],
    ),
    (
        "max_failures negative",
        r#"[hosts]
web = ["web-01", "web-02=10.0.0.2"]

[[tasks]]
name = "deploy"
hosts = ["web"]
script = "echo hi"
max_failures = -1
"#,
        &[
            "shipwatch.toml:8:16: tasks[0] \"deploy\": max_failures = -1: max_failures is 0 or more hosts, or a percent like \"10%\"",
        ],
    ),
    (
        "timeout 0",
        r#"[hosts]
web = ["web-01", "web-02=10.0.0.2"]

[[tasks]]
name = "deploy"
hosts = ["web"]
script = "echo hi"
timeout_secs = 0
"#,
        &[
            "shipwatch.toml:8:16: tasks[0] \"deploy\": timeout_secs = 0: expected seconds per host, 1 or more",
        ],
    ),
    (
        "concurrency 0",
        r#"[hosts]
web = ["web-01", "web-02=10.0.0.2"]

[[tasks]]
name = "deploy"
hosts = ["web"]
script = "echo hi"
concurrency = 0
"#,
        &[
            "shipwatch.toml:8:15: tasks[0] \"deploy\": concurrency = 0: expected running jobs of this task at once, 1 or more",
        ],
    ),
    (
        "transport",
        r#"[hosts]
web = ["web-01", "web-02=10.0.0.2"]

[[tasks]]
name = "deploy"
hosts = ["web"]
script = "echo hi"
transport = "telnet"
"#,
        &[
            "shipwatch.toml:8:13: tasks[0] \"deploy\": transport = \"telnet\": expected \"ssh\" or \"local\"",
        ],
    ),
    (
        "both scripts",
        r#"[hosts]
web = ["web-01", "web-02=10.0.0.2"]

[[tasks]]
name = "deploy"
hosts = ["web"]
script = "echo hi"
script_file = "deploy.sh"
"#,
        &[
            "shipwatch.toml:8:15: tasks[0] \"deploy\": script_file: give script or script_file, not both",
        ],
    ),
    (
        "no script",
        r#"[hosts]
web = ["web-01", "web-02=10.0.0.2"]

[[tasks]]
name = "deploy"
hosts = ["web"]
"#,
        &["shipwatch.toml:4:1: tasks[0] \"deploy\": a task needs script or script_file"],
    ),
    (
        "unreadable script_file",
        r#"[hosts]
web = ["web-01", "web-02=10.0.0.2"]

[[tasks]]
name = "deploy"
hosts = ["web"]
script_file = "missing.sh"
"#,
        &[
            "shipwatch.toml:7:15: tasks[0] \"deploy\": script_file = \"missing.sh\": cannot read /nonexistent-shipwatch-test/missing.sh: No such file or directory (os error 2)",
        ],
    ),
    (
        "unknown role in allow",
        r#"[hosts]
web = ["web-01", "web-02=10.0.0.2"]

[[tasks]]
name = "deploy"
hosts = ["web"]
script = "echo hi"
allow = ["operator", "root"]
"#,
        &[
            "shipwatch.toml:8:22: tasks[0] \"deploy\": allow[1] = \"root\": expected \"viewer\", \"operator\" or \"admin\"",
        ],
    ),
    (
        "unknown task key",
        r#"[hosts]
web = ["web-01", "web-02=10.0.0.2"]

[[tasks]]
name = "deploy"
hosts = ["web"]
script = "echo hi"
retries = 3
"#,
        &[
            "shipwatch.toml:8:1: tasks: unknown key `retries`, expected one of `name`, `description`, `hosts`, `transport`, `script`, `script_file`, `batch`, `max_failures`, `timeout_secs`, `concurrency`, `allow`, `params`",
        ],
    ),
    (
        "param bad name",
        r#"[hosts]
web = ["web-01", "web-02=10.0.0.2"]

[[tasks]]
name = "deploy"
hosts = ["web"]
script = "echo hi"
[[tasks.params]]
name = "1REV"
"#,
        &[
            "shipwatch.toml:9:8: tasks[0] \"deploy\": params[0].name = \"1REV\": a param name is an environment variable name: [A-Za-z_][A-Za-z0-9_]*",
        ],
    ),
    (
        "param reserved",
        r#"[hosts]
web = ["web-01", "web-02=10.0.0.2"]

[[tasks]]
name = "deploy"
hosts = ["web"]
script = "echo hi"
[[tasks.params]]
name = "PATH"
"#,
        &[
            "shipwatch.toml:9:8: tasks[0] \"deploy\": params[0].name = \"PATH\": this environment variable is reserved (PATH, HOME, SHIPWATCH_*, LD_*, ...)",
        ],
    ),
    (
        "param reserved prefix",
        r#"[hosts]
web = ["web-01", "web-02=10.0.0.2"]

[[tasks]]
name = "deploy"
hosts = ["web"]
script = "echo hi"
[[tasks.params]]
name = "SHIPWATCH_HOST"
"#,
        &[
            "shipwatch.toml:9:8: tasks[0] \"deploy\": params[0].name = \"SHIPWATCH_HOST\": this environment variable is reserved (PATH, HOME, SHIPWATCH_*, LD_*, ...)",
        ],
    ),
    (
        "param duplicate",
        r#"[hosts]
web = ["web-01", "web-02=10.0.0.2"]

[[tasks]]
name = "deploy"
hosts = ["web"]
script = "echo hi"
[[tasks.params]]
name = "REV"
[[tasks.params]]
name = "REV"
"#,
        &[
            "shipwatch.toml:11:8: tasks[0] \"deploy\": params[1].name = \"REV\": a param of that name comes earlier in this task",
        ],
    ),
    (
        "param bad pattern",
        r#"[hosts]
web = ["web-01", "web-02=10.0.0.2"]

[[tasks]]
name = "deploy"
hosts = ["web"]
script = "echo hi"
[[tasks.params]]
name = "REV"
pattern = "[a-"
"#,
        &[
            "shipwatch.toml:10:11: tasks[0] \"deploy\": params[0].pattern = \"[a-\": not a regular expression: invalid character class range, the start must be <= the end",
        ],
    ),
    (
        "param default not matching",
        r#"[hosts]
web = ["web-01", "web-02=10.0.0.2"]

[[tasks]]
name = "deploy"
hosts = ["web"]
script = "echo hi"
[[tasks.params]]
name = "REV"
pattern = "[0-9]+"
default = "abc"
"#,
        &[
            "shipwatch.toml:11:11: tasks[0] \"deploy\": params[0].default = \"abc\": the default does not match pattern \"[0-9]+\"",
        ],
    ),
    (
        "user bad hash",
        r#"[[users]]
name = "alice"
password_hash = "hunter2"
role = "operator"
"#,
        &[
            "shipwatch.toml:3:17: users[0] \"alice\": password_hash: not a PHC hash string (password hash string missing field); create one with `shipwatch hash-password`",
        ],
    ),
    (
        "auth session lifetimes",
        r#"[auth]
session_idle_hours = 0
session_max_days = -1
"#,
        &[
            "shipwatch.toml:2:22: auth.session_idle_hours = 0: expected a number of hours, more than 0 and at most ten years",
            "shipwatch.toml:3:20: auth.session_max_days = -1: expected a number of days, more than 0 and at most ten years",
        ],
    ),
    (
        "auth idle longer than the maximum",
        r#"[auth]
session_idle_hours = 48
session_max_days = 1
"#,
        &[
            "shipwatch.toml:2:22: auth.session_idle_hours = 48: longer than auth.session_max_days: a session never gets that idle",
        ],
    ),
    (
        "user argon2i",
        r#"[[users]]
name = "alice"
password_hash = "$argon2i$v=19$m=16,t=2,p=1$c29tZXNhbHQ$aGFzaGhhc2hoYXNo"
role = "operator"
"#,
        &[
            "shipwatch.toml:3:17: users[0] \"alice\": password_hash: expected an argon2id hash, found argon2i; create one with `shipwatch hash-password`",
        ],
    ),
    (
        "duplicate users",
        r#"[[users]]
name = "alice"
password_hash = "$HASH"
role = "admin"
[[users]]
name = "alice"
password_hash = "$HASH"
role = "viewer"
"#,
        &["shipwatch.toml:6:8: users[1] \"alice\": name: another entry of [[users]] has this name"],
    ),
    (
        "token bad role",
        r#"[[tokens]]
name = "ci"
token_hash = "$HASH"
role = "root"
"#,
        &[
            "shipwatch.toml:4:8: tokens[0] \"ci\": role = \"root\": expected \"viewer\", \"operator\" or \"admin\"",
        ],
    ),
    (
        "anonymous bad",
        r#"[auth]
anonymous = "everyone"
"#,
        &[
            "shipwatch.toml:2:13: auth.anonymous = \"everyone\": expected \"none\", \"viewer\", \"operator\" or \"admin\"",
        ],
    ),
    (
        "three problems collected",
        r#"[server]
listen = "nope"
[supervisor]
runners = -1
[hosts]
web = ["web-01", "web-02=10.0.0.2"]

[[tasks]]
name = "deploy"
hosts = ["web"]
script = "echo hi"
batch = 0
"#,
        &[
            "shipwatch.toml:2:10: server.listen = \"nope\": expected a socket address like \"127.0.0.1:8080\" or \"[::1]:8080\"",
            "shipwatch.toml:4:11: supervisor.runners = -1: expected runner processes: 0 to 256",
            "shipwatch.toml:12:9: tasks[0] \"deploy\": batch = 0: a batch is 1 or more hosts, a percent like \"25%\", or a list of those",
        ],
    ),
    (
        "duplicate table",
        r#"[server]
listen = "127.0.0.1:1"
[server]
"#,
        &["shipwatch.toml:3:2: duplicate key: server"],
    ),
    (
        "host group and host share a name",
        r#"[hosts]
web = ["web-01"]
web-01 = ["x"]
[[tasks]]
name = "deploy"
hosts = ["web-01"]
script = "echo hi"
"#,
        &[
            "shipwatch.toml:6:10: tasks[0] \"deploy\": hosts: \"web-01\" is both a group and a host; rename one",
        ],
    ),
    (
        "task with no hosts",
        r#"[hosts]
web = ["web-01", "web-02=10.0.0.2"]

[[tasks]]
name = "deploy"
hosts = []
script = "echo hi"
"#,
        &["shipwatch.toml:6:9: tasks[0] \"deploy\": hosts = []: a task needs at least one host"],
    ),
    (
        "empty data_dir",
        r#"[server]
data_dir = ""
"#,
        &["shipwatch.toml:2:12: server.data_dir = \"\": expected a path, not an empty string"],
    ),
    (
        "percent zero max_failures",
        r#"[hosts]
web = ["web-01", "web-02=10.0.0.2"]

[[tasks]]
name = "deploy"
hosts = ["web"]
script = "echo hi"
max_failures = "0%"
"#,
        &[
            "shipwatch.toml:8:16: tasks[0] \"deploy\": max_failures = \"0%\": max_failures is 0 or more hosts, or a percent like \"10%\"",
        ],
    ),
    (
        "task without hosts",
        r#"[hosts]
web = ["web-01", "web-02=10.0.0.2"]

[[tasks]]
name = "deploy"
script = "echo hi"
"#,
        &["shipwatch.toml:4:1: tasks: missing key `hosts`"],
    ),
    (
        "user without role",
        r#"[[users]]
name = "alice"
password_hash = "$HASH"
"#,
        &["shipwatch.toml:1:1: users: missing key `role`"],
    ),
    (
        "every unknown key is reported",
        r#"[server]
listn = "x"
[ssh]
user = "a"
prot = 2
[hosts]
web = ["web-01", "web-02=10.0.0.2"]

[[tasks]]
name = "deploy"
hosts = ["web"]
script = "echo hi"
retries = 1
[[tasks.params]]
name = "A"
regex = "x"
"#,
        &[
            "shipwatch.toml:2:1: server: unknown key `listn`, expected one of `listen`, `data_dir`, `run_dir`, `public_url`, `retention_days`, `max_log_bytes`",
            "shipwatch.toml:5:1: ssh: unknown key `prot`, expected one of `user`, `port`, `identity_file`, `known_hosts`, `connect_timeout_secs`, `options`",
            "shipwatch.toml:13:1: tasks: unknown key `retries`, expected one of `name`, `description`, `hosts`, `transport`, `script`, `script_file`, `batch`, `max_failures`, `timeout_secs`, `concurrency`, `allow`, `params`",
            "shipwatch.toml:16:1: tasks.params: unknown key `regex`, expected one of `name`, `pattern`, `required`, `default`",
        ],
    ),
];

#[test]
fn every_broken_config_gets_its_exact_errors() {
    let mut failures = Vec::new();
    for (what, text, expected) in CASES {
        let text = text.replace("$HASH", HASH);
        let got = errors(&text);
        if got != *expected {
            failures.push(format!(
                "{what}:\n  expected {expected:#?}\n  got      {got:#?}"
            ));
        }
    }
    assert!(CASES.len() >= 25);
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn every_problem_is_reported_not_just_the_first() {
    let text = r#"[server]
listen = "nope"
[supervisor]
runners = -1
[hosts]
web = ["web-01=10.0.0.1:0"]
[[tasks]]
name = "deploy"
hosts = ["web", "db"]
script = "true"
batch = 0
"#;
    let got = errors(text);
    assert_eq!(got.len(), 5, "{got:#?}");
    let lines: Vec<&str> = got.iter().map(|e| e.split(':').nth(1).unwrap()).collect();
    assert_eq!(lines, ["2", "4", "6", "9", "11"], "in file order");
}

#[test]
fn unreadable_config_file_names_the_file() {
    let path = Path::new("/nonexistent-shipwatch-test/shipwatch.toml");
    let errors = shipwatch_config::load(&shipwatch_config::ConfigSource::File(path.into()))
        .expect_err("missing file");
    assert_eq!(
        errors.to_string(),
        "/nonexistent-shipwatch-test/shipwatch.toml: cannot read the config file: No such file or directory (os error 2)"
    );
}

#[test]
fn script_file_is_read_relative_to_the_config() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("deploy.sh"), "echo from file\n").unwrap();
    let text = "[hosts]\nweb = [\"w1\"]\n[[tasks]]\nname = \"d\"\nhosts = [\"web\"]\nscript_file = \"deploy.sh\"\n";
    let config = load_str(text, "x.toml", dir.path()).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(config.tasks[0].script, "echo from file\n");
}

#[test]
fn a_group_named_like_its_only_host_is_not_ambiguous() {
    let text = "[hosts]\nbastion = [\"bastion=10.0.0.1\"]\n[[tasks]]\nname = \"d\"\nhosts = [\"bastion\"]\nscript = \"true\"\n";
    assert_eq!(errors(text), Vec::<String>::new());
}

#[test]
fn type_errors_in_different_sections_and_tasks_are_all_reported() {
    let text = r#"[server]
listen = 5
[supervisor]
runners = "x"
[[tasks]]
name = 5
hosts = ["a"]
script = "true"
[[tasks]]
name = "b"
hosts = "a"
script = "true"
"#;
    assert_eq!(
        errors(text),
        [
            "shipwatch.toml:2:10: server.listen: invalid type: integer `5`, expected a string",
            "shipwatch.toml:4:11: supervisor.runners: invalid type: string \"x\", expected an integer",
            "shipwatch.toml:6:8: tasks.name: invalid type: integer `5`, expected a string",
            "shipwatch.toml:11:9: tasks.hosts: invalid type: string \"a\", expected a sequence",
        ]
    );
}

#[test]
fn a_script_over_the_size_limit_is_refused_at_its_key() {
    let limit = shipwatch_config::MAX_SCRIPT_BYTES;
    let task = |script: &str| {
        format!(
            "[hosts]\nweb = [\"w1\"]\n[[tasks]]\nname = \"d\"\nhosts = [\"web\"]\nscript = '''\n{script}'''\n"
        )
    };
    // A ''' string drops the newline right after its opening quotes.
    assert_eq!(errors(&task(&"#".repeat(limit))), Vec::<String>::new());
    assert_eq!(
        errors(&task(&"#".repeat(limit + 1))),
        [format!(
            "shipwatch.toml:6:10: tasks[0] \"d\": script: the script is {} bytes, over the limit of {limit} bytes (1 MiB)",
            limit + 1
        )]
    );

    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("big.sh"), "#".repeat(limit + 7)).unwrap();
    let text = "[hosts]\nweb = [\"w1\"]\n[[tasks]]\nname = \"d\"\nhosts = [\"web\"]\nscript_file = \"big.sh\"\n";
    let errors: Vec<String> = match load_str(text, "x.toml", dir.path()) {
        Ok(_) => vec![],
        Err(e) => e.0.iter().map(ToString::to_string).collect(),
    };
    assert_eq!(
        errors,
        [format!(
            "x.toml:6:15: tasks[0] \"d\": script_file: the script is {} bytes, over the limit of {limit} bytes (1 MiB)",
            limit + 7
        )]
    );
}
