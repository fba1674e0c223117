//! `[[users]]`, `[[tokens]]` and `[auth]`: who may use the server, and as what role.

use std::time::Duration;

use super::checker::Checker;
use crate::model::*;
use crate::raw::*;

impl Checker<'_> {
    pub(super) fn users(&mut self, raw: Vec<S<RawUser>>) -> Vec<User> {
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

    pub(super) fn tokens(&mut self, raw: Vec<S<RawToken>>) -> Vec<ApiToken> {
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
            // Not `bad_value`: what was written may be a password pasted in by mistake,
            // and this message reaches the journal.
            self.error(hash.span(), format!("{key}: {hash_key}: {why}"));
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

    /// `[auth]`: the role of requests nobody authenticated, and how long sessions last.
    pub(super) fn auth(&mut self, raw: RawAuth) -> Auth {
        let session_idle = self.hours(
            "auth.session_idle_hours",
            raw.session_idle_hours.as_ref(),
            12.0,
            1.0,
        );
        let session_max = self.hours(
            "auth.session_max_days",
            raw.session_max_days.as_ref(),
            7.0,
            24.0,
        );
        if session_idle > session_max
            && let Some(value) = &raw.session_idle_hours
        {
            self.bad_value(
                "auth.session_idle_hours",
                value.span(),
                "longer than auth.session_max_days: a session never gets that idle",
            );
        }
        Auth {
            session_idle,
            session_max,
            anonymous: match raw.anonymous {
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
        }
    }
}

impl Checker<'_> {
    /// A positive duration of `value` units of `unit_hours` hours (days: 24), at most
    /// ten years.
    fn hours(
        &mut self,
        key: &str,
        value: Option<&S<f64>>,
        default: f64,
        unit_hours: f64,
    ) -> Duration {
        let hours = |units: f64| Duration::from_secs_f64(units * unit_hours * 3600.0);
        let Some(value) = value else {
            return hours(default);
        };
        let units = *value.get_ref();
        if units > 0.0 && units * unit_hours <= 87_600.0 {
            hours(units)
        } else {
            let what = if unit_hours == 1.0 { "hours" } else { "days" };
            self.bad_value(
                key,
                value.span(),
                &format!("expected a number of {what}, more than 0 and at most ten years"),
            );
            hours(default)
        }
    }
}

pub(super) fn parse_role(text: &str) -> Option<Role> {
    text.parse().ok()
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
