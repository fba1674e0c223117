//! `[ssh]`: how the system OpenSSH client is called for every ssh host.

use std::path::Path;
use std::time::Duration;

use super::checker::Checker;
use crate::model::*;
use crate::raw::*;

impl Checker<'_> {
    pub(super) fn ssh(&mut self, raw: RawSsh, base_dir: &Path) -> Ssh {
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
}
