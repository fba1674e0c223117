//! From text to a valid [`Config`]: parse with spans, apply DESIGN §4's defaults, and
//! collect every problem with the place it was written.

use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, SocketAddr};
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::error::{ConfigError, ConfigErrors};
use crate::model::*;
use crate::raw::*;

/// Environment variables a param may not set: the runner or the shell own them.
const RESERVED_PARAMS: &[&str] = &[
    "PATH",
    "HOME",
    "USER",
    "LOGNAME",
    "SHELL",
    "PWD",
    "OLDPWD",
    "IFS",
    "ENV",
    "BASH_ENV",
    "SHELLOPTS",
    "BASHOPTS",
    "PS4",
    "TERM",
    "LANG",
    "TZ",
];

/// Prefixes of reserved environment variables (shipwatch's own, the loader's, bash's).
const RESERVED_PARAM_PREFIXES: &[&str] = &["SHIPWATCH_", "LD_", "BASH_FUNC_", "SSH_", "LC_"];

/// Parses and validates `text`; `file` labels errors, `base_dir` anchors relative paths.
pub(crate) fn load_text(
    text: &str,
    file: &str,
    base_dir: &Path,
    source: ConfigSource,
) -> Result<Config, ConfigErrors> {
    let mut checker = Checker {
        text,
        file: file.to_string(),
        errors: Vec::new(),
    };
    let table = match toml::de::DeTable::parse(text) {
        Ok(table) => table,
        Err(error) => {
            checker.syntax(&error);
            return Err(checker.finish());
        }
    };
    checker.unknown_keys(table.get_ref(), "top level", keys::TOP);
    if !checker.errors.is_empty() {
        return Err(checker.finish());
    }
    checker.sections(&table);
    if !checker.errors.is_empty() {
        return Err(checker.finish());
    }
    let raw: RawConfig = match serde::Deserialize::deserialize(toml::de::Deserializer::from(table))
    {
        Ok(raw) => raw,
        Err(error) => {
            checker.syntax(&error);
            return Err(checker.finish());
        }
    };
    let base_dir = absolute(base_dir);
    let config = checker.config(raw, &base_dir, source);
    if checker.errors.is_empty() {
        Ok(config)
    } else {
        Err(checker.finish())
    }
}

/// Makes `path` absolute against the current directory, dropping `.` components.
pub(crate) fn absolute(path: &Path) -> PathBuf {
    std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf())
}

struct Checker<'a> {
    text: &'a str,
    file: String,
    errors: Vec<ConfigError>,
}

impl Checker<'_> {
    fn finish(mut self) -> ConfigErrors {
        // Stable: problems at one place keep the order they were found in.
        self.errors.sort_by_key(|e| e.location);
        ConfigErrors(self.errors)
    }

    fn location(&self, offset: usize) -> (usize, usize) {
        let offset = offset.min(self.text.len());
        let before = self.text.get(..offset).unwrap_or(self.text);
        let line = before.matches('\n').count() + 1;
        let line_start = before.rfind('\n').map_or(0, |i| i + 1);
        let col = before[line_start..].chars().count() + 1;
        (line, col)
    }

    fn error(&mut self, span: Range<usize>, message: impl Into<String>) {
        self.errors.push(ConfigError {
            file: self.file.clone(),
            location: Some(self.location(span.start)),
            message: message.into(),
        });
    }

    /// What the user wrote at `span`, for messages like `batch = 0: ...`.
    fn written(&self, span: &Range<usize>) -> &str {
        self.text.get(span.clone()).unwrap_or("?")
    }

    /// `KEY = WRITTEN: why`.
    fn bad_value(&mut self, key: &str, span: Range<usize>, why: &str) {
        let message = format!("{key} = {}: {why}", self.written(&span));
        self.error(span, message);
    }

    fn syntax(&mut self, error: &toml::de::Error) {
        let message = error
            .message()
            .trim_end()
            .replace("unknown field", "unknown key")
            .replace("missing field", "missing key")
            .replace("expected i64", "expected an integer")
            .replace("expected f64", "expected a number");
        let Some(span) = error.span() else {
            self.errors.push(ConfigError {
                file: self.file.clone(),
                location: None,
                message,
            });
            return;
        };
        let start = span.start.min(self.text.len());
        let before = &self.text[..start];
        let line_start = before.rfind('\n').map_or(0, |i| i + 1);
        // toml names the key only in its multi-line rendering: recover it from the text
        // (the table header above, the key left of `=`) so the message names the key.
        let table = before
            .lines()
            .rev()
            .map(str::trim)
            .find(|line| line.starts_with('['))
            .map(|line| {
                line.trim_matches(|c| c == '[' || c == ']')
                    .trim()
                    .to_string()
            });
        let qualify = |key: &str| match &table {
            Some(table) => format!("{table}.{key}"),
            None => key.to_string(),
        };
        let named = message.contains("unknown key") || message.contains("missing key");
        let message = match before[line_start..].split_once('=') {
            Some((key, _)) if !named && !key.trim().is_empty() => {
                format!("{}: {message}", qualify(key.trim()))
            }
            _ if message.contains("missing key") => {
                let written = self.written(&span);
                let header = written.lines().next().unwrap_or("").trim();
                let table = header.trim_matches(|c| c == '[' || c == ']').trim();
                format!("{table}: {message}")
            }
            _ if message.contains("unknown key") => {
                format!("{}: {message}", table.as_deref().unwrap_or("top level"))
            }
            _ => {
                let written = self.written(&span);
                if !written.is_empty() && written.len() <= 60 && !written.contains('\n') {
                    format!("{message}: {written}")
                } else {
                    message
                }
            }
        };
        self.error(span, message);
    }

    /// Reports the first type error of every top-level section and of every element of
    /// `[[tasks]]`, `[[users]]` and `[[tokens]]`: serde stops at the first error of a
    /// document, so each part is deserialized alone (spans stay those of the file).
    fn sections(&mut self, root: &toml::Spanned<toml::de::DeTable<'_>>) {
        use toml::de::{DeArray, DeValue};
        for (key, value) in root.get_ref().iter() {
            let parts: Vec<toml::Spanned<DeValue<'_>>> = match value.get_ref() {
                DeValue::Array(items) => items
                    .iter()
                    .map(|item| {
                        let mut one = DeArray::new();
                        one.push(item.clone());
                        toml::Spanned::new(value.span(), DeValue::Array(one))
                    })
                    .collect(),
                _ => vec![value.clone()],
            };
            for part in parts {
                let mut table = toml::de::DeTable::new();
                table.insert(key.clone(), part);
                let table = toml::Spanned::new(root.span(), table);
                let parsed: Result<RawConfig, _> =
                    serde::Deserialize::deserialize(toml::de::Deserializer::from(table));
                if let Err(error) = parsed {
                    self.syntax(&error);
                }
            }
        }
    }

    /// Reports every key of `table` not in `known`, then looks inside the known tables.
    fn unknown_keys(&mut self, table: &toml::de::DeTable<'_>, name: &str, known: &[&str]) {
        for (key, value) in table {
            let key_text: &str = key.get_ref();
            if !known.contains(&key_text) {
                let expected: Vec<String> = known.iter().map(|k| format!("`{k}`")).collect();
                let message = format!(
                    "{name}: unknown key `{key_text}`, expected one of {}",
                    expected.join(", ")
                );
                self.error(key.span(), message);
                continue;
            }
            let nested: Option<&[&str]> = match (name, key_text) {
                ("top level", "server") => Some(keys::SERVER),
                ("top level", "supervisor") => Some(keys::SUPERVISOR),
                ("top level", "ssh") => Some(keys::SSH),
                ("top level", "tasks") => Some(keys::TASK),
                ("top level", "users") => Some(keys::USER),
                ("top level", "tokens") => Some(keys::TOKEN),
                ("top level", "auth") => Some(keys::AUTH),
                ("tasks", "params") => Some(keys::PARAM),
                _ => None,
            };
            let Some(nested) = nested else { continue };
            let path = match name {
                "top level" => key_text.to_string(),
                table => format!("{table}.{key_text}"),
            };
            // Wrong shapes (a string where a table goes) are left to the typed pass.
            match value.get_ref() {
                toml::de::DeValue::Table(inner) => self.unknown_keys(inner, &path, nested),
                toml::de::DeValue::Array(items) => {
                    for item in items.iter() {
                        if let toml::de::DeValue::Table(inner) = item.get_ref() {
                            self.unknown_keys(inner, &path, nested);
                        }
                    }
                }
                _ => {}
            }
        }
    }

    fn config(&mut self, raw: RawConfig, base_dir: &Path, source: ConfigSource) -> Config {
        let server = self.server(raw.server, base_dir);
        let supervisor = self.supervisor(raw.supervisor);
        let ssh = self.ssh(raw.ssh, base_dir);
        let (hosts, known_hosts) = self.host_groups(raw.hosts);
        let tasks = self.tasks(raw.tasks, &hosts, &known_hosts, base_dir);
        let users = self.users(raw.users);
        let tokens = self.tokens(raw.tokens);
        let auth = Auth {
            anonymous: match raw.auth.anonymous {
                None => None,
                Some(value) => match value.get_ref().as_str() {
                    "none" => None,
                    role => match parse_role(role) {
                        Some(role) => Some(role),
                        None => {
                            self.bad_value(
                                "auth.anonymous",
                                value.span(),
                                r#"expected "none", "viewer", "operator" or "admin""#,
                            );
                            None
                        }
                    },
                },
            },
        };
        Config {
            source,
            server,
            supervisor,
            ssh,
            hosts,
            tasks,
            users,
            tokens,
            auth,
        }
    }

    fn server(&mut self, raw: RawServer, base_dir: &Path) -> Server {
        let default_listen = SocketAddr::from(([127, 0, 0, 1], 8080));
        let listen = match &raw.listen {
            None => default_listen,
            Some(value) => match value.get_ref().parse::<SocketAddr>() {
                Ok(addr) => addr,
                Err(_) => {
                    self.bad_value(
                        "server.listen",
                        value.span(),
                        r#"expected a socket address like "127.0.0.1:8080" or "[::1]:8080""#,
                    );
                    default_listen
                }
            },
        };
        let data_dir = self
            .path("server.data_dir", raw.data_dir.as_ref(), base_dir)
            .unwrap_or_else(|| PathBuf::from("/var/lib/shipwatch"));
        let file_run_dir = self
            .path("server.run_dir", raw.run_dir.as_ref(), base_dir)
            .unwrap_or_else(|| PathBuf::from("/run/shipwatch"));
        let run_dir = runtime_directory().unwrap_or(file_run_dir);
        let public_url = match &raw.public_url {
            None => format!("http://{listen}"),
            Some(value) => {
                let url = value.get_ref().trim_end_matches('/');
                let rest = url
                    .strip_prefix("http://")
                    .or_else(|| url.strip_prefix("https://"));
                match rest {
                    Some(host) if !host.is_empty() && !host.contains(char::is_whitespace) => {
                        url.to_string()
                    }
                    _ => {
                        self.bad_value(
                            "server.public_url",
                            value.span(),
                            r#"expected an http:// or https:// URL like "https://deploy.example.com""#,
                        );
                        String::new()
                    }
                }
            }
        };
        let retention_days = self.int_in(
            "server.retention_days",
            raw.retention_days.as_ref(),
            90,
            1,
            u32::MAX as i64,
            "a number of days, 1 or more",
        ) as u32;
        let max_log_bytes = self.int_in(
            "server.max_log_bytes",
            raw.max_log_bytes.as_ref(),
            268_435_456,
            1,
            i64::MAX,
            "a number of bytes, 1 or more",
        ) as u64;
        Server {
            listen,
            data_dir,
            run_dir,
            public_url,
            retention_days,
            max_log_bytes,
        }
    }

    fn supervisor(&mut self, raw: RawSupervisor) -> Supervisor {
        let runners = self.int_in(
            "supervisor.runners",
            raw.runners.as_ref(),
            4,
            0,
            256,
            "runner processes: 0 to 256",
        ) as u32;
        let start_retries = self.int_in(
            "supervisor.start_retries",
            raw.start_retries.as_ref(),
            5,
            1,
            u32::MAX as i64,
            "1 or more failed starts",
        ) as u32;
        Supervisor {
            runners,
            start_secs: self.secs("supervisor.start_secs", raw.start_secs.as_ref(), 1.0, true),
            start_retries,
            backoff_max: self.secs(
                "supervisor.backoff_max_secs",
                raw.backoff_max_secs.as_ref(),
                30.0,
                false,
            ),
            stop_timeout: self.secs(
                "supervisor.stop_timeout_secs",
                raw.stop_timeout_secs.as_ref(),
                10.0,
                false,
            ),
            drain_timeout: self.secs(
                "supervisor.drain_timeout_secs",
                raw.drain_timeout_secs.as_ref(),
                3600.0,
                false,
            ),
            watch_config: raw.watch_config.is_none_or(|v| *v.get_ref()),
        }
    }

    fn ssh(&mut self, raw: RawSsh, base_dir: &Path) -> Ssh {
        let user = match raw.user {
            None => "deploy".to_string(),
            Some(value) => {
                let user = value.get_ref();
                if user.is_empty() || user.starts_with('-') || user.contains(char::is_whitespace) {
                    self.bad_value(
                        "ssh.user",
                        value.span(),
                        "expected a login name (not empty, no spaces, not starting with '-')",
                    );
                }
                value.into_inner()
            }
        };
        let port = self.int_in(
            "ssh.port",
            raw.port.as_ref(),
            22,
            1,
            65535,
            "a port, 1 to 65535",
        ) as u16;
        let identity_file =
            self.optional_path("ssh.identity_file", raw.identity_file.as_ref(), base_dir);
        let known_hosts = self.optional_path("ssh.known_hosts", raw.known_hosts.as_ref(), base_dir);
        let connect_timeout = Duration::from_secs(self.int_in(
            "ssh.connect_timeout_secs",
            raw.connect_timeout_secs.as_ref(),
            10,
            1,
            3600,
            "seconds, 1 to 3600",
        ) as u64);
        let mut options = Vec::new();
        for (i, option) in raw.options.unwrap_or_default().into_iter().enumerate() {
            let text = option.get_ref();
            match text.split_once('=') {
                Some((key, _)) if !key.is_empty() && !text.starts_with('-') => {
                    options.push(option.into_inner());
                }
                _ => self.bad_value(
                    &format!("ssh.options[{i}]"),
                    option.span(),
                    r#"expected an ssh option "Key=value", e.g. "ProxyJump=bastion""#,
                ),
            }
        }
        Ssh {
            user,
            port,
            identity_file,
            known_hosts,
            connect_timeout,
            options,
        }
    }

    /// Groups with their hosts, and every host by name with where it was first defined.
    #[allow(clippy::type_complexity)]
    fn host_groups(
        &mut self,
        raw: BTreeMap<S<String>, S<Vec<S<String>>>>,
    ) -> (
        BTreeMap<String, Vec<HostTarget>>,
        BTreeMap<String, HostTarget>,
    ) {
        let mut groups = BTreeMap::new();
        let mut hosts: BTreeMap<String, HostTarget> = BTreeMap::new();
        // Walk in file order so "defined twice" points at the second definition.
        let mut entries: Vec<_> = raw.into_iter().collect();
        entries.sort_by_key(|(group, _)| group.span().start);
        for (group, specs) in entries {
            let group_name = group.get_ref().clone();
            if !valid_name(&group_name) {
                let message = format!(
                    "hosts.{group_name}: a group name is letters, digits, '.', '_' and '-'"
                );
                self.error(group.span(), message);
            }
            let mut members: Vec<HostTarget> = Vec::new();
            for (i, spec) in specs.into_inner().into_iter().enumerate() {
                let key = format!("hosts.{group_name}[{i}]");
                let target = match parse_host(spec.get_ref()) {
                    Ok(target) => target,
                    Err(why) => {
                        self.bad_value(&key, spec.span(), &why);
                        continue;
                    }
                };
                match hosts.get(&target.name) {
                    Some(known) if known != &target => {
                        let message = format!(
                            "{key} = {}: host {:?} is already defined as {:?}",
                            self.written(&spec.span()),
                            target.name,
                            display_host(known),
                        );
                        self.error(spec.span(), message);
                        continue;
                    }
                    Some(_) => {}
                    None => {
                        hosts.insert(target.name.clone(), target.clone());
                    }
                }
                if !members.iter().any(|m| m.name == target.name) {
                    members.push(target);
                }
            }
            groups.insert(group_name, members);
        }
        (groups, hosts)
    }

    fn tasks(
        &mut self,
        raw: Vec<S<RawTask>>,
        groups: &BTreeMap<String, Vec<HostTarget>>,
        hosts: &BTreeMap<String, HostTarget>,
        base_dir: &Path,
    ) -> Vec<Task> {
        let mut tasks = Vec::new();
        let mut names: HashMap<String, usize> = HashMap::new();
        for (index, task) in raw.into_iter().enumerate() {
            let span = task.span();
            let task = task.into_inner();
            let name = task.name.get_ref().clone();
            let key = format!("tasks[{index}] {name:?}");
            if !name
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-')
                || name.is_empty()
            {
                self.bad_value(
                    &format!("tasks[{index}].name"),
                    task.name.span(),
                    "a task name is lowercase letters, digits, '_' and '-'",
                );
            } else if let Some(first) = names.get(&name) {
                let message = format!("{key}: name {name:?} is already used by tasks[{first}]");
                self.error(task.name.span(), message);
            } else {
                names.insert(name.clone(), index);
            }
            tasks.push(self.task(task, &key, span, groups, hosts, base_dir));
        }
        tasks
    }

    fn task(
        &mut self,
        task: RawTask,
        key: &str,
        span: Range<usize>,
        groups: &BTreeMap<String, Vec<HostTarget>>,
        hosts: &BTreeMap<String, HostTarget>,
        base_dir: &Path,
    ) -> Task {
        let mut targets: Vec<HostTarget> = Vec::new();
        let hosts_span = task.hosts.span();
        let mut unknown_hosts = false;
        for item in task.hosts.into_inner() {
            let name = item.get_ref();
            let resolved: Vec<HostTarget> = match (groups.get(name), hosts.get(name)) {
                (Some(group), Some(host)) if group.as_slice() == std::slice::from_ref(host) => {
                    group.clone()
                }
                (Some(_), Some(_)) => {
                    let message =
                        format!("{key}: hosts: {name:?} is both a group and a host; rename one");
                    self.error(item.span(), message);
                    unknown_hosts = true;
                    continue;
                }
                (Some(group), None) => group.clone(),
                (None, Some(host)) => vec![host.clone()],
                (None, None) => {
                    let message = format!(
                        "{key}: hosts: {name:?} is neither a group in [hosts] nor a host of one"
                    );
                    self.error(item.span(), message);
                    unknown_hosts = true;
                    continue;
                }
            };
            for target in resolved {
                if !targets.iter().any(|t| t.name == target.name) {
                    targets.push(target);
                }
            }
        }
        if targets.is_empty() && !unknown_hosts {
            self.error(
                hosts_span.clone(),
                format!("{key}: hosts = []: a task needs at least one host"),
            );
        }

        let transport = match &task.transport {
            None => Transport::Ssh,
            Some(value) => match value.get_ref().as_str() {
                "ssh" => Transport::Ssh,
                "local" => Transport::Local,
                _ => {
                    self.bad_value(
                        &format!("{key}: transport"),
                        value.span(),
                        r#"expected "ssh" or "local""#,
                    );
                    Transport::Ssh
                }
            },
        };

        let script = match (&task.script, &task.script_file) {
            (Some(script), None) => script.get_ref().clone(),
            (None, Some(file)) => {
                let path = resolve(base_dir, file.get_ref());
                match std::fs::read_to_string(&path) {
                    Ok(script) => script,
                    Err(error) => {
                        let why = format!("cannot read {}: {error}", path.display());
                        self.bad_value(&format!("{key}: script_file"), file.span(), &why);
                        String::new()
                    }
                }
            }
            (Some(_), Some(file)) => {
                let message = format!("{key}: script_file: give script or script_file, not both");
                self.error(file.span(), message);
                String::new()
            }
            (None, None) => {
                let message = format!("{key}: a task needs script or script_file");
                self.error(span, message);
                String::new()
            }
        };

        let batch = match &task.batch {
            None => Batch(vec![Amount::Count(5)]),
            Some(value) => match parse_batch(value.get_ref()) {
                Some(batch) => batch,
                None => {
                    self.bad_value(
                        &format!("{key}: batch"),
                        value.span(),
                        r#"a batch is 1 or more hosts, a percent like "25%", or a list of those"#,
                    );
                    Batch(vec![Amount::Count(1)])
                }
            },
        };
        let max_failures = match &task.max_failures {
            None => Threshold(Amount::Count(0)),
            Some(value) => match parse_amount(value.get_ref(), 0) {
                Some(amount) => Threshold(amount),
                None => {
                    self.bad_value(
                        &format!("{key}: max_failures"),
                        value.span(),
                        r#"max_failures is 0 or more hosts, or a percent like "10%""#,
                    );
                    Threshold(Amount::Count(0))
                }
            },
        };
        let timeout = Duration::from_secs(self.int_in(
            &format!("{key}: timeout_secs"),
            task.timeout_secs.as_ref(),
            600,
            1,
            i64::from(u32::MAX),
            "seconds per host, 1 or more",
        ) as u64);
        let concurrency = self.int_in(
            &format!("{key}: concurrency"),
            task.concurrency.as_ref(),
            1,
            1,
            i64::from(u32::MAX),
            "running jobs of this task at once, 1 or more",
        ) as u32;
        let allow = match task.allow {
            None => vec![Role::Operator],
            Some(roles) => {
                let mut allow = Vec::new();
                for (i, role) in roles.into_iter().enumerate() {
                    match parse_role(role.get_ref()) {
                        Some(r) => allow.push(r),
                        None => self.bad_value(
                            &format!("{key}: allow[{i}]"),
                            role.span(),
                            r#"expected "viewer", "operator" or "admin""#,
                        ),
                    }
                }
                allow
            }
        };
        let mut params: Vec<Param> = Vec::new();
        for (i, param) in task.params.into_iter().enumerate() {
            if let Some(param) =
                self.param(param.into_inner(), &format!("{key}: params[{i}]"), &params)
            {
                params.push(param);
            }
        }
        Task {
            name: task.name.into_inner(),
            description: task.description.map(|d| d.into_inner()).unwrap_or_default(),
            hosts: targets,
            transport,
            script,
            batch,
            max_failures,
            timeout,
            concurrency,
            allow,
            params,
        }
    }

    fn param(&mut self, raw: RawParam, key: &str, earlier: &[Param]) -> Option<Param> {
        let name = raw.name.get_ref().clone();
        let mut ok = true;
        if !valid_env_name(&name) {
            self.bad_value(
                &format!("{key}.name"),
                raw.name.span(),
                "a param name is an environment variable name: [A-Za-z_][A-Za-z0-9_]*",
            );
            ok = false;
        } else if RESERVED_PARAMS.contains(&name.as_str())
            || RESERVED_PARAM_PREFIXES.iter().any(|p| name.starts_with(p))
        {
            self.bad_value(
                &format!("{key}.name"),
                raw.name.span(),
                "this environment variable is reserved (PATH, HOME, SHIPWATCH_*, LD_*, ...)",
            );
            ok = false;
        } else if earlier.iter().any(|p| p.name == name) {
            self.bad_value(
                &format!("{key}.name"),
                raw.name.span(),
                "a param of that name comes earlier in this task",
            );
            ok = false;
        }
        let pattern = match &raw.pattern {
            None => None,
            Some(pattern) => match regex::Regex::new(&format!("^(?:{})$", pattern.get_ref())) {
                Ok(regex) => Some(regex),
                Err(error) => {
                    let why = match error {
                        regex::Error::Syntax(text) => {
                            let last = text.lines().last().unwrap_or("").trim();
                            let last = last.strip_prefix("error: ").unwrap_or(last);
                            format!("not a regular expression: {last}")
                        }
                        other => format!("not a usable regular expression: {other}"),
                    };
                    self.bad_value(&format!("{key}.pattern"), pattern.span(), &why);
                    ok = false;
                    None
                }
            },
        };
        let default = raw
            .default
            .as_ref()
            .map(|d| d.get_ref().clone())
            .unwrap_or_default();
        if let (Some(regex), Some(value)) = (&pattern, &raw.default) {
            if !default.is_empty() && !regex.is_match(&default) {
                let why = format!(
                    "the default does not match pattern {}",
                    self.written(&raw.pattern.as_ref().map(|p| p.span()).unwrap_or(0..0))
                );
                self.bad_value(&format!("{key}.default"), value.span(), &why);
                ok = false;
            }
        }
        if default.contains('\0') {
            if let Some(value) = &raw.default {
                self.bad_value(
                    &format!("{key}.default"),
                    value.span(),
                    "a value cannot contain NUL",
                );
            }
            ok = false;
        }
        ok.then(|| Param {
            name,
            pattern,
            required: raw.required.is_some_and(|r| r.into_inner()),
            default,
        })
    }

    fn users(&mut self, raw: Vec<S<RawUser>>) -> Vec<User> {
        let mut users: Vec<User> = Vec::new();
        for (i, user) in raw.into_iter().enumerate() {
            let user = user.into_inner();
            let key = format!("users[{i}] {:?}", user.name.get_ref());
            if let Some((name, password_hash, role)) = self.account(
                &key,
                "users",
                &user.name,
                &user.password_hash,
                "password_hash",
                &user.role,
                users.iter().map(|u| u.name.as_str()),
            ) {
                users.push(User {
                    name,
                    password_hash,
                    role,
                });
            }
        }
        users
    }

    fn tokens(&mut self, raw: Vec<S<RawToken>>) -> Vec<ApiToken> {
        let mut tokens: Vec<ApiToken> = Vec::new();
        for (i, token) in raw.into_iter().enumerate() {
            let token = token.into_inner();
            let key = format!("tokens[{i}] {:?}", token.name.get_ref());
            if let Some((name, token_hash, role)) = self.account(
                &key,
                "tokens",
                &token.name,
                &token.token_hash,
                "token_hash",
                &token.role,
                tokens.iter().map(|t| t.name.as_str()),
            ) {
                tokens.push(ApiToken {
                    name,
                    token_hash,
                    role,
                });
            }
        }
        tokens
    }

    /// Checks one user or token: a unique name, an argon2id hash, a role; returns them.
    #[allow(clippy::too_many_arguments)]
    fn account<'n>(
        &mut self,
        key: &str,
        table: &str,
        name: &S<String>,
        hash: &S<String>,
        hash_key: &str,
        role: &S<String>,
        mut earlier: impl Iterator<Item = &'n str>,
    ) -> Option<(String, String, Role)> {
        let mut ok = true;
        if name.get_ref().is_empty() || name.get_ref().chars().any(|c| c.is_control() || c == ':') {
            self.bad_value(
                &format!("{key}: name"),
                name.span(),
                "a name is not empty and has no ':' or control characters",
            );
            ok = false;
        } else if earlier.any(|n| n == name.get_ref()) {
            let message = format!("{key}: name: another entry of [[{table}]] has this name");
            self.error(name.span(), message);
            ok = false;
        }
        if let Err(why) = check_argon2id(hash.get_ref()) {
            self.bad_value(&format!("{key}: {hash_key}"), hash.span(), &why);
            ok = false;
        }
        let parsed_role = parse_role(role.get_ref());
        if parsed_role.is_none() {
            self.bad_value(
                &format!("{key}: role"),
                role.span(),
                r#"expected "viewer", "operator" or "admin""#,
            );
            ok = false;
        }
        match (ok, parsed_role) {
            (true, Some(role)) => Some((name.get_ref().clone(), hash.get_ref().clone(), role)),
            _ => None,
        }
    }

    fn int_in(
        &mut self,
        key: &str,
        value: Option<&S<i64>>,
        default: i64,
        min: i64,
        max: i64,
        what: &str,
    ) -> i64 {
        match value {
            None => default,
            Some(value) if (min..=max).contains(value.get_ref()) => *value.get_ref(),
            Some(value) => {
                self.bad_value(key, value.span(), &format!("expected {what}"));
                default
            }
        }
    }

    fn secs(&mut self, key: &str, value: Option<&S<f64>>, default: f64, zero_ok: bool) -> Duration {
        let Some(value) = value else {
            return Duration::from_secs_f64(default);
        };
        let secs = *value.get_ref();
        let in_range = if zero_ok { secs >= 0.0 } else { secs > 0.0 };
        match Duration::try_from_secs_f64(secs) {
            Ok(duration) if in_range && secs <= 1e9 => duration,
            _ => {
                let what = if zero_ok {
                    "seconds, 0 or more"
                } else {
                    "seconds, more than 0"
                };
                self.bad_value(key, value.span(), &format!("expected {what}"));
                Duration::from_secs_f64(default)
            }
        }
    }

    fn path(&mut self, key: &str, value: Option<&S<String>>, base_dir: &Path) -> Option<PathBuf> {
        let value = value?;
        if value.get_ref().is_empty() {
            self.bad_value(key, value.span(), "expected a path, not an empty string");
            return None;
        }
        Some(resolve(base_dir, value.get_ref()))
    }

    fn optional_path(
        &mut self,
        key: &str,
        value: Option<&S<String>>,
        base_dir: &Path,
    ) -> Option<PathBuf> {
        let value = value?;
        if value.get_ref().is_empty() {
            return None;
        }
        self.path(key, Some(value), base_dir)
    }
}

/// A path from the file, relative to the file's directory, made absolute.
fn resolve(base_dir: &Path, path: &str) -> PathBuf {
    absolute(&base_dir.join(path))
}

/// systemd's `RuntimeDirectory=`: the first entry when it lists several.
fn runtime_directory() -> Option<PathBuf> {
    first_runtime_directory(&std::env::var_os("RUNTIME_DIRECTORY")?)
}

fn first_runtime_directory(value: &std::ffi::OsStr) -> Option<PathBuf> {
    let first = value.to_str()?.split(':').next()?.trim();
    (!first.is_empty()).then(|| PathBuf::from(first))
}

fn parse_role(text: &str) -> Option<Role> {
    text.parse().ok()
}

fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && !name.starts_with('-')
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
}

fn valid_env_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

fn display_host(host: &HostTarget) -> String {
    match (&host.address, host.port) {
        (None, None) => host.name.clone(),
        (Some(a), None) => format!("{}={a}", host.name),
        (address, Some(port)) => {
            let address = address.as_deref().unwrap_or(&host.name);
            if address.contains(':') {
                format!("{}=[{address}]:{port}", host.name)
            } else {
                format!("{}={address}:{port}", host.name)
            }
        }
    }
}

/// `name`, `name=address`, `name=address:port`, `name=[v6addr]:port`, `name=v6addr`.
pub(crate) fn parse_host(spec: &str) -> Result<HostTarget, String> {
    let (name, address) = match spec.split_once('=') {
        None => (spec, None),
        Some((name, address)) => (name, Some(address)),
    };
    if !valid_name(name) {
        return Err("a host name is letters, digits, '.', '_' and '-' (expected \"name\" or \"name=address[:port]\")".into());
    }
    let Some(address) = address else {
        return Ok(HostTarget {
            name: name.to_string(),
            address: None,
            port: None,
        });
    };
    let parse_port = |port: &str| -> Result<u16, String> {
        match port.parse::<u16>() {
            Ok(p) if p > 0 => Ok(p),
            _ => Err(format!("port {port:?} is not 1 to 65535")),
        }
    };
    let (address, port) = if let Some(rest) = address.strip_prefix('[') {
        let Some((v6, after)) = rest.split_once(']') else {
            return Err("an IPv6 address in brackets needs its ']'".into());
        };
        if v6.parse::<std::net::Ipv6Addr>().is_err() {
            return Err(format!("{v6:?} is not an IPv6 address"));
        }
        let port = match after {
            "" => None,
            _ => match after.strip_prefix(':') {
                Some(port) => Some(parse_port(port)?),
                None => return Err("expected ':port' after ']'".into()),
            },
        };
        (v6.to_string(), port)
    } else if address.matches(':').count() > 1 {
        if address.parse::<IpAddr>().is_err() {
            return Err(format!(
                "{address:?} is not an address; write IPv6 with a port as [addr]:port"
            ));
        }
        (address.to_string(), None)
    } else {
        match address.split_once(':') {
            Some((host, port)) => (host.to_string(), Some(parse_port(port)?)),
            None => (address.to_string(), None),
        }
    };
    if address.is_empty()
        || address.starts_with('-')
        || address.contains(|c: char| c.is_whitespace() || c.is_control() || c == '@')
    {
        return Err(format!("{address:?} is not a host address"));
    }
    Ok(HostTarget {
        name: name.to_string(),
        address: Some(address),
        port,
    })
}

fn parse_batch(value: &toml::Value) -> Option<Batch> {
    match value {
        toml::Value::Array(items) if !items.is_empty() => items
            .iter()
            .map(|item| parse_amount(item, 1))
            .collect::<Option<Vec<_>>>()
            .map(Batch),
        toml::Value::Array(_) => None,
        single => parse_amount(single, 1).map(|a| Batch(vec![a])),
    }
}

/// A count of at least `min`, or "N%" with N in 1..=100.
fn parse_amount(value: &toml::Value, min: i64) -> Option<Amount> {
    match value {
        toml::Value::Integer(n) if *n >= min && *n <= i64::from(u32::MAX) => {
            Some(Amount::Count(*n as u32))
        }
        toml::Value::String(text) => {
            let digits = text.trim().strip_suffix('%')?.trim();
            match digits.parse::<u32>() {
                Ok(p) if (1..=100).contains(&p) => Some(Amount::Percent(p)),
                _ => None,
            }
        }
        _ => None,
    }
}

fn check_argon2id(hash: &str) -> Result<(), String> {
    const HOW: &str = "create one with `shipwatch hash-password`";
    let parsed = argon2::PasswordHash::new(hash)
        .map_err(|e| format!("not a PHC hash string ({e}); {HOW}"))?;
    if parsed.algorithm.as_str() != "argon2id" {
        return Err(format!(
            "expected an argon2id hash, found {}; {HOW}",
            parsed.algorithm
        ));
    }
    if parsed.hash.is_none() || parsed.salt.is_none() {
        return Err(format!("the hash has no salt or no hash; {HOW}"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn host(name: &str, address: Option<&str>, port: Option<u16>) -> HostTarget {
        HostTarget {
            name: name.into(),
            address: address.map(Into::into),
            port,
        }
    }

    #[test]
    fn host_specs_in_every_accepted_form() {
        assert_eq!(parse_host("web-01"), Ok(host("web-01", None, None)));
        assert_eq!(
            parse_host("w=10.0.0.1"),
            Ok(host("w", Some("10.0.0.1"), None))
        );
        assert_eq!(
            parse_host("w=h.example:2222"),
            Ok(host("w", Some("h.example"), Some(2222)))
        );
        assert_eq!(
            parse_host("w=[2001:db8::1]:22"),
            Ok(host("w", Some("2001:db8::1"), Some(22)))
        );
        assert_eq!(parse_host("w=[::1]"), Ok(host("w", Some("::1"), None)));
        assert_eq!(
            parse_host("w=fe80::1"),
            Ok(host("w", Some("fe80::1"), None))
        );
    }

    #[test]
    fn host_specs_refused() {
        for spec in [
            "",
            "=10.0.0.1",
            "w=",
            "w=10.0.0.1:0",
            "w=10.0.0.1:65536",
            "w=10.0.0.1:x",
            "w=[::1",
            "w=[::1]22",
            "w=[nope]:22",
            "w=a::b::c",
            "w=-oProxyCommand=x",
            "w=user@host",
            "w=a b",
            "-w",
            "w/1",
        ] {
            assert!(parse_host(spec).is_err(), "{spec:?} should be refused");
        }
    }

    #[test]
    fn runtime_directory_takes_the_first_entry() {
        let first = |s: &str| first_runtime_directory(std::ffi::OsStr::new(s));
        assert_eq!(
            first("/run/shipwatch"),
            Some(PathBuf::from("/run/shipwatch"))
        );
        assert_eq!(first("/run/a:/run/b"), Some(PathBuf::from("/run/a")));
        assert_eq!(first(""), None);
    }

    #[test]
    fn locations_are_one_based_and_count_characters() {
        let checker = Checker {
            text: "a = 1\nbé = \"x\"\n",
            file: String::new(),
            errors: Vec::new(),
        };
        assert_eq!(checker.location(0), (1, 1));
        assert_eq!(checker.location(6), (2, 1));
        assert_eq!(checker.location("a = 1\nbé = ".len()), (2, 6));
    }
}
