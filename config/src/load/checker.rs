//! The error-collecting machinery every section's check shares: a [`Checker`] walks the
//! file once, records each problem at the place it was written, and keeps going, so one
//! run reports every mistake (`FILE:LINE:COL: message naming the key`).

use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::resolve;
use crate::error::{ConfigError, ConfigErrors};
use crate::raw::*;

/// The text being checked and the problems found in it so far.
pub(super) struct Checker<'a> {
    pub(super) text: &'a str,
    pub(super) file: String,
    pub(super) errors: Vec<ConfigError>,
}

impl Checker<'_> {
    pub(super) fn finish(mut self) -> ConfigErrors {
        // Stable: problems at one place keep the order they were found in.
        self.errors.sort_by_key(|e| e.location);
        ConfigErrors(self.errors)
    }

    pub(super) fn location(&self, offset: usize) -> (usize, usize) {
        let offset = offset.min(self.text.len());
        let before = self.text.get(..offset).unwrap_or(self.text);
        let line = before.matches('\n').count() + 1;
        let line_start = before.rfind('\n').map_or(0, |i| i + 1);
        let col = before[line_start..].chars().count() + 1;
        (line, col)
    }

    pub(super) fn error(&mut self, span: Range<usize>, message: impl Into<String>) {
        self.errors.push(ConfigError {
            file: self.file.clone(),
            location: Some(self.location(span.start)),
            message: message.into(),
        });
    }

    /// What the user wrote at `span`, for messages like `batch = 0: ...`.
    pub(super) fn written(&self, span: &Range<usize>) -> &str {
        self.text.get(span.clone()).unwrap_or("?")
    }

    /// `KEY = WRITTEN: why`.
    pub(super) fn bad_value(&mut self, key: &str, span: Range<usize>, why: &str) {
        let message = format!("{key} = {}: {why}", self.written(&span));
        self.error(span, message);
    }

    pub(super) fn syntax(&mut self, error: &toml::de::Error) {
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
    pub(super) fn sections(&mut self, root: &toml::Spanned<toml::de::DeTable<'_>>) {
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
    pub(super) fn unknown_keys(
        &mut self,
        table: &toml::de::DeTable<'_>,
        name: &str,
        known: &[&str],
    ) {
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
                ("top level", "notify") => Some(keys::NOTIFY),
                ("top level", "store") => Some(keys::STORE),
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

    pub(super) fn int_in(
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

    pub(super) fn secs(
        &mut self,
        key: &str,
        value: Option<&S<f64>>,
        default: f64,
        zero_ok: bool,
    ) -> Duration {
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

    pub(super) fn path(
        &mut self,
        key: &str,
        value: Option<&S<String>>,
        base_dir: &Path,
    ) -> Option<PathBuf> {
        let value = value?;
        if value.get_ref().is_empty() {
            self.bad_value(key, value.span(), "expected a path, not an empty string");
            return None;
        }
        Some(resolve(base_dir, value.get_ref()))
    }

    pub(super) fn optional_path(
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

#[cfg(test)]
mod tests {
    use super::*;

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
