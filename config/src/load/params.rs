//! `[[tasks.params]]`: the environment variables a job of a task takes, with their patterns.

use super::checker::Checker;
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

impl Checker<'_> {
    pub(super) fn param(&mut self, raw: RawParam, key: &str, earlier: &[Param]) -> Option<Param> {
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
}

fn valid_env_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}
