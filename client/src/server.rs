//! Which gateway to talk to, which job, and with what credentials.

use std::str::FromStr;

use shipwatch_protocol::JobId;

use crate::ClientError;

/// A gateway's base URL, `http://host:port` (or `https://`) plus any path prefix, without
/// a trailing slash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Server {
    base: String,
}

impl Server {
    /// Accepts `http://host[:port][/prefix]` and the same with `https`.
    pub fn parse(url: &str) -> Result<Server, ClientError> {
        let url = url.trim().trim_end_matches('/');
        let Some(rest) = url
            .strip_prefix("http://")
            .or_else(|| url.strip_prefix("https://"))
        else {
            return Err(ClientError::Usage(format!(
                "{url:?} is not a server URL like http://127.0.0.1:8080"
            )));
        };
        if rest.is_empty() || rest.starts_with('/') {
            return Err(ClientError::Usage(format!("{url:?} names no host")));
        }
        Ok(Server {
            base: url.to_string(),
        })
    }

    /// Whether it is reached over TLS.
    pub fn is_https(&self) -> bool {
        self.base.starts_with("https://")
    }

    /// `http://host:port/prefix` + `path` (which starts with `/`).
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// The same as [`Server::url`] with the `ws://` (or `wss://`) scheme.
    pub fn ws_url(&self, path: &str) -> String {
        format!("ws{}{path}", &self.base["http".len()..])
    }

    /// The link of a job's page.
    pub fn job_page(&self, id: JobId) -> String {
        self.url(&format!("/jobs/{id}"))
    }
}

impl std::fmt::Display for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.base)
    }
}

/// A job as a user names it: `42`, `#42`, or a pasted `http://…/jobs/42` (the page's
/// address, or the API's `…/api/jobs/42`), which also names the server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobRef {
    pub id: JobId,
    /// The server of a pasted URL.
    pub server: Option<Server>,
}

impl FromStr for JobRef {
    type Err = ClientError;

    fn from_str(s: &str) -> Result<JobRef, ClientError> {
        let bad = || {
            ClientError::Usage(format!(
                "{s:?} is not a job: give its number (42) or its page's URL (http://…/jobs/42)"
            ))
        };
        let s = s.trim();
        if let Ok(id) = s.trim_start_matches('#').parse::<JobId>() {
            return Ok(JobRef { id, server: None });
        }
        if !s.contains("://") {
            return Err(bad());
        }
        let without_query = s.split(['?', '#']).next().unwrap_or(s);
        let at = without_query.rfind("/jobs/").ok_or_else(bad)?;
        let id_text = without_query[at + "/jobs/".len()..]
            .split('/')
            .next()
            .unwrap_or("");
        let id = id_text.parse::<JobId>().map_err(|_| bad())?;
        let base = without_query[..at].trim_end_matches("/api");
        Ok(JobRef {
            id,
            server: Some(Server::parse(base)?),
        })
    }
}

/// Reads an API token from `path`, refusing a file that its group or others may read
/// (like ssh with a private key): a token is a password.
pub fn token_from_file(path: &std::path::Path) -> Result<String, ClientError> {
    use std::os::unix::fs::MetadataExt;
    let shown = path.display().to_string();
    let io = |source| ClientError::TokenFile {
        path: shown.clone(),
        source,
    };
    let meta = std::fs::metadata(path).map_err(io)?;
    if meta.mode() & 0o077 != 0 {
        return Err(ClientError::Usage(format!(
            "token file {shown} is readable by others (mode {:o}); run `chmod 600 {shown}`",
            meta.mode() & 0o777
        )));
    }
    let text = std::fs::read_to_string(path).map_err(io)?;
    let token = text.trim();
    if token.is_empty() {
        return Err(ClientError::Usage(format!("token file {shown} is empty")));
    }
    Ok(token.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_job_is_a_number_or_a_pasted_page_or_api_url() {
        let plain: JobRef = "42".parse().unwrap();
        assert_eq!((plain.id, plain.server), (42, None));
        assert_eq!("#7".parse::<JobRef>().unwrap().id, 7);
        let page: JobRef = "http://10.0.0.5:8080/jobs/42?x=1#log".parse().unwrap();
        assert_eq!(page.id, 42);
        assert_eq!(
            page.server.unwrap().url("/api/tasks"),
            "http://10.0.0.5:8080/api/tasks"
        );
        let api: JobRef = "http://h/ship/api/jobs/9/log".parse().unwrap();
        assert_eq!(api.id, 9);
        assert_eq!(api.server.unwrap().to_string(), "http://h/ship");
        assert!("deploy".parse::<JobRef>().is_err());
        assert!("http://h/jobs/x".parse::<JobRef>().is_err());
    }

    #[test]
    fn servers_are_http_or_https_and_give_ws_or_wss_urls() {
        let s = Server::parse("http://127.0.0.1:8080/").unwrap();
        assert_eq!(s.ws_url("/ws/jobs/1"), "ws://127.0.0.1:8080/ws/jobs/1");
        assert!(!s.is_https());
        let s = Server::parse("https://ship.example/sw").unwrap();
        assert_eq!(s.ws_url("/ws/jobs/1"), "wss://ship.example/sw/ws/jobs/1");
        assert!(s.is_https());
        assert!(Server::parse("127.0.0.1:8080").is_err());
        assert!(Server::parse("ftp://x").is_err());
    }

    #[test]
    fn a_token_file_others_can_read_is_refused() {
        use std::os::unix::fs::PermissionsExt;
        let dir = std::env::temp_dir().join(format!("shipwatch-token-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("token");
        std::fs::write(&file, "sw_secret\n").unwrap();
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).unwrap();
        let refused = token_from_file(&file).unwrap_err().to_string();
        assert!(refused.contains("readable by others"), "{refused}");
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert_eq!(token_from_file(&file).unwrap(), "sw_secret");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
