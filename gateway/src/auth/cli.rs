//! `shipwatch hash-password` and `shipwatch token new`: what an administrator pastes
//! into the config.

use std::io::{BufRead, IsTerminal, Write};

use shipwatch_config::Role;

use super::secret::{self, SecretError};

/// Why a secret could not be made for the config.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    #[error("cannot read the password from stdin")]
    Read(#[source] std::io::Error),
    #[error("the password is empty")]
    Empty,
    #[error("a token name is not empty and has no quote, backslash, ':' or control character")]
    BadName,
    #[error(transparent)]
    Secret(#[from] SecretError),
}

/// Reads one line from stdin (without echo when it is a terminal; the newline is not
/// part of the password) and returns its argon2id PHC string.
pub fn hash_password_from_stdin() -> Result<String, CliError> {
    let stdin = std::io::stdin();
    let password = if stdin.is_terminal() {
        eprint!("Password: ");
        let _ = std::io::stderr().flush();
        let line = read_without_echo(&stdin);
        eprintln!();
        line
    } else {
        read_line(&mut stdin.lock())
    }
    .map_err(CliError::Read)?;
    if password.is_empty() {
        return Err(CliError::Empty);
    }
    Ok(secret::hash(password.as_bytes())?)
}

fn read_line(input: &mut impl BufRead) -> std::io::Result<String> {
    let mut line = String::new();
    input.read_line(&mut line)?;
    let line = line.strip_suffix('\n').unwrap_or(&line);
    Ok(line.strip_suffix('\r').unwrap_or(line).to_string())
}

/// Reads a line with the terminal's echo off, restoring it even when reading fails.
fn read_without_echo(stdin: &std::io::Stdin) -> std::io::Result<String> {
    use nix::sys::termios::{LocalFlags, SetArg, tcgetattr, tcsetattr};
    let saved = tcgetattr(stdin).map_err(std::io::Error::from)?;
    let mut quiet = saved.clone();
    quiet.local_flags.remove(LocalFlags::ECHO);
    quiet.local_flags.insert(LocalFlags::ECHONL);
    tcsetattr(stdin, SetArg::TCSANOW, &quiet).map_err(std::io::Error::from)?;
    let line = read_line(&mut stdin.lock());
    tcsetattr(stdin, SetArg::TCSANOW, &saved).map_err(std::io::Error::from)?;
    line
}

/// A new token named `name`: the token itself (shown once) and the `[[tokens]]` block
/// holding its hash.
pub struct NewToken {
    pub token: String,
    pub config_block: String,
}

/// Makes a token for `name` with `role`.
pub fn new_token(name: &str, role: Role) -> Result<NewToken, CliError> {
    if name.is_empty()
        || name
            .chars()
            .any(|c| c.is_control() || matches!(c, ':' | '"' | '\\'))
    {
        return Err(CliError::BadName);
    }
    let token = secret::new_token()?;
    let hash = secret::hash(token.as_bytes())?;
    let config_block =
        format!("[[tokens]]\nname = \"{name}\"\ntoken_hash = \"{hash}\"\nrole = \"{role}\"\n");
    Ok(NewToken {
        token,
        config_block,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_line_loses_its_newline_only() {
        let mut input = std::io::Cursor::new(b"  pass word \r\nsecond line\n".to_vec());
        assert_eq!(read_line(&mut input).unwrap(), "  pass word ");
    }

    #[test]
    fn a_new_token_block_verifies_the_token() {
        let made = new_token("ci", Role::Operator).unwrap();
        let hash = made
            .config_block
            .lines()
            .find_map(|l| l.strip_prefix("token_hash = \""))
            .and_then(|l| l.strip_suffix('"'))
            .unwrap();
        assert!(secret::verify(hash, made.token.as_bytes()));
        assert!(made.config_block.contains("role = \"operator\""));
        assert!(new_token("a\"b", Role::Viewer).is_err());
    }
}
