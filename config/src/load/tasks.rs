//! `[[tasks]]`: names, hosts, transport, script, waves, limits and who may start each.

use std::collections::{BTreeMap, HashMap};
use std::ops::Range;
use std::path::Path;
use std::time::Duration;

use super::accounts::parse_role;
use super::checker::Checker;
use super::resolve;
use crate::MAX_SCRIPT_BYTES;
use crate::model::*;
use crate::raw::*;

impl Checker<'_> {
    pub(super) fn tasks(
        &mut self,
        raw: Vec<S<RawTask>>,
        groups: &BTreeMap<String, Vec<Host>>,
        hosts: &BTreeMap<String, Host>,
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
        groups: &BTreeMap<String, Vec<Host>>,
        hosts: &BTreeMap<String, Host>,
        base_dir: &Path,
    ) -> Task {
        let mut targets: Vec<Host> = Vec::new();
        let hosts_span = task.hosts.span();
        let mut unknown_hosts = false;
        for item in task.hosts.into_inner() {
            let name = item.get_ref();
            let resolved: Vec<Host> = match (groups.get(name), hosts.get(name)) {
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

        let given = match (&task.script, &task.script_file) {
            (_, Some(file)) => Some(("script_file", file.span())),
            (Some(text), None) => Some(("script", text.span())),
            (None, None) => None,
        };
        if script.len() > MAX_SCRIPT_BYTES
            && let Some((what, at)) = given
        {
            let message = format!(
                "{key}: {what}: the script is {} bytes, over the limit of {MAX_SCRIPT_BYTES} bytes (1 MiB)",
                script.len()
            );
            self.error(at, message);
        }

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
