//! The validated configuration, as the rest of shipwatch receives it.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// A loaded, valid configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// Where it came from: reload re-reads this, errors name it.
    pub source: ConfigSource,
    pub server: Server,
    pub supervisor: Supervisor,
    pub ssh: Ssh,
    /// Host groups by name, each host once, in file order.
    pub hosts: BTreeMap<String, Vec<Host>>,
    /// Tasks in file order; names are unique.
    pub tasks: Vec<Task>,
    pub users: Vec<User>,
    pub tokens: Vec<ApiToken>,
    pub auth: Auth,
    /// `[store]`: where jobs, events, sessions and the audit log live.
    pub store: StoreLocation,
    /// Webhooks POSTed when a job ends, in file order.
    pub notify: Vec<Notify>,
}

/// A config file on disk, or the demo compiled into the binary.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConfigSource {
    File(PathBuf),
    Demo,
    /// The last valid text of `of`, saved by the supervisor in `file`: read as if it were
    /// `of` (relative paths resolve against its directory, errors name it). A child
    /// restarted while `of` is broken keeps the config the supervisor runs.
    Snapshot {
        file: PathBuf,
        of: PathBuf,
    },
}

impl ConfigSource {
    /// The config read when none is named (DESIGN §3): `./shipwatch.toml` when it
    /// exists, else `/etc/shipwatch/shipwatch.toml`.
    pub fn default_file() -> ConfigSource {
        let local = PathBuf::from("shipwatch.toml");
        if local.exists() {
            ConfigSource::File(local)
        } else {
            ConfigSource::File(PathBuf::from("/etc/shipwatch/shipwatch.toml"))
        }
    }

    /// The file a user edits for this source (`<demo>` for the embedded one).
    pub fn label(&self) -> String {
        match self {
            ConfigSource::File(path) | ConfigSource::Snapshot { of: path, .. } => {
                path.display().to_string()
            }
            ConfigSource::Demo => "<demo>".to_string(),
        }
    }
}

/// `[server]`.
#[derive(Debug, Clone)]
pub struct Server {
    pub listen: SocketAddr,
    pub data_dir: PathBuf,
    /// Already resolved: `$RUNTIME_DIRECTORY` when set, else the file's `run_dir`.
    pub run_dir: PathBuf,
    pub public_url: String,
    pub retention_days: u32,
    /// Per job: bytes of line text (UTF-8, no newline) stored; later lines are counted,
    /// not stored. Host, job and notice events do not count.
    pub max_log_bytes: u64,
}

/// `[supervisor]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Supervisor {
    pub runners: u32,
    pub start_secs: Duration,
    pub start_retries: u32,
    pub backoff_max: Duration,
    pub stop_timeout: Duration,
    pub drain_timeout: Duration,
    pub watch_config: bool,
}

/// `[ssh]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ssh {
    pub user: String,
    pub port: u16,
    /// `None`: ssh's own defaults.
    pub identity_file: Option<PathBuf>,
    /// `None`: ssh's own; host keys are always checked either way.
    pub known_hosts: Option<PathBuf>,
    pub connect_timeout: Duration,
    pub options: Vec<String>,
}

/// One `[[tasks]]`.
#[derive(Debug, Clone)]
pub struct Task {
    pub name: String,
    pub description: String,
    /// Groups and single hosts resolved to hosts, each once, in the order named.
    pub hosts: Vec<Host>,
    pub transport: Transport,
    /// The script text (`script_file` already read, relative to the config file).
    pub script: String,
    pub batch: Batch,
    pub max_failures: Threshold,
    pub timeout: Duration,
    pub concurrency: u32,
    pub allow: Vec<Role>,
    pub params: Vec<Param>,
}

/// One host as the config names it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Host {
    /// The name users see and events carry.
    pub name: String,
    /// What ssh connects to; the name when absent.
    pub address: Option<String>,
    /// Overrides `[ssh] port` for this host.
    pub port: Option<u16>,
}

/// How a task's script is run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Transport {
    /// The system OpenSSH client.
    Ssh,
    /// `bash -s` on this box with `$SHIPWATCH_HOST` set: the demo and tests.
    Local,
}

/// Hosts per wave: one size, or a list whose last item repeats.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Batch(pub Vec<Amount>);

/// `max_failures`: a count or a percent of the job's hosts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Threshold(pub Amount);

/// A number of hosts, absolute or as a percent of all the job's hosts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Amount {
    Count(u32),
    /// 1..=100.
    Percent(u32),
}

/// One `[[tasks.params]]`.
#[derive(Debug, Clone)]
pub struct Param {
    /// A valid environment variable name.
    pub name: String,
    /// Anchored by the loader (`^(?:…)$`): it must match the whole value; `None` accepts any.
    pub pattern: Option<regex::Regex>,
    pub required: bool,
    pub default: String,
}

/// What a person or token may do: viewer < operator < admin.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Role {
    Viewer,
    Operator,
    Admin,
}

/// One `[[users]]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    pub name: String,
    /// An argon2id PHC string.
    pub password_hash: String,
    pub role: Role,
}

/// One `[[tokens]]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiToken {
    pub name: String,
    /// An argon2id PHC string.
    pub token_hash: String,
    pub role: Role,
}

/// `[auth]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Auth {
    /// Role of unauthenticated requests; `None` refuses them.
    pub anonymous: Option<Role>,
    /// A session unused this long ends (`session_idle_hours`, default 12 h).
    pub session_idle: Duration,
    /// Every session ends this long after its login (`session_max_days`, default 7 days).
    pub session_max: Duration,
}

/// `[store]`: the embedded SQLite file of one box, or a PostgreSQL database that several
/// gateways share (DESIGN §11).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreLocation {
    /// `<data_dir>/shipwatch.db`: `url` empty, the default.
    Sqlite,
    /// `url = "postgres://…"`.
    Postgres(PostgresUrl),
}

/// A valid `postgres://USER@HOST[:PORT]/DATABASE`, with the password from wherever it came.
#[derive(Clone, PartialEq, Eq)]
pub struct PostgresUrl {
    pub user: String,
    /// A host name or address, or an absolute directory holding the server's Unix socket
    /// (written percent-encoded in the URL: `postgres://u@%2Frun%2Fpostgresql/db`).
    pub host: String,
    /// 5432 unless the URL says otherwise.
    pub port: u16,
    pub dbname: String,
    /// `?connect_timeout=SECS`; 10 s by default.
    pub connect_timeout: Duration,
    /// From `password_file`, else the URL, else `$PGPASSWORD`; `None`: the server asks none.
    pub password: Option<Secret>,
    /// Where `password` came from.
    pub password_from: PasswordFrom,
}

/// Where a PostgreSQL password came from, in the order they are looked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PasswordFrom {
    /// `[store] password_file` (its content, without a trailing newline).
    File(PathBuf),
    /// `postgres://user:PASSWORD@…`: works, with a warning at start.
    Url,
    /// `$PGPASSWORD`, as libpq's tools read it.
    Environment,
    /// No password: trust, peer or certificate authentication.
    Nowhere,
}

impl std::fmt::Display for PostgresUrl {
    /// The URL without its password: what logs and `check` may show.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let host = if self.host.starts_with('/') {
            self.host.replace('/', "%2F")
        } else if self.host.contains(':') {
            format!("[{}]", self.host)
        } else {
            self.host.clone()
        };
        write!(
            f,
            "postgres://{}@{host}:{}/{}",
            self.user, self.port, self.dbname
        )
    }
}

impl std::fmt::Debug for PostgresUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PostgresUrl({self})")
    }
}

/// A value that never shows in `{:?}`, `{}` or a log line; [`Secret::expose`] hands it to
/// whoever must send it.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps `value`.
    pub fn new(value: impl Into<String>) -> Secret {
        Secret(value.into())
    }

    /// The secret itself, for the one place that sends it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(…)")
    }
}

/// `[[notify]]`: a webhook POSTed when a job of `tasks` ends in one of `on`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notify {
    /// `http://host[:port]/path`.
    pub url: String,
    /// The job ends that trigger it; default failed and lost.
    pub on: Vec<JobEnd>,
    pub format: NotifyFormat,
    /// Task names; empty: every task.
    pub tasks: Vec<String>,
}

impl Notify {
    /// Whether a job of `task` that ended as `end` (a job state's name) is sent here.
    pub fn wants(&self, task: &str, end: &str) -> bool {
        self.on.iter().any(|e| e.as_str() == end)
            && (self.tasks.is_empty() || self.tasks.iter().any(|t| t == task))
    }
}

/// How a job can end (the final job states of DESIGN §5).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobEnd {
    Succeeded,
    Failed,
    Cancelled,
    Lost,
}

impl JobEnd {
    pub const ALL: [JobEnd; 4] = [
        JobEnd::Succeeded,
        JobEnd::Failed,
        JobEnd::Cancelled,
        JobEnd::Lost,
    ];

    /// The job state's name, as the API writes it.
    pub const fn as_str(self) -> &'static str {
        match self {
            JobEnd::Succeeded => "succeeded",
            JobEnd::Failed => "failed",
            JobEnd::Cancelled => "cancelled",
            JobEnd::Lost => "lost",
        }
    }
}

/// The body a webhook receives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NotifyFormat {
    /// shipwatch's own small JSON object.
    Json,
    /// `{"text":"…"}` for Slack-compatible incoming webhooks.
    Slack,
}

impl Config {
    /// One line for `shipwatch check`: `FILE: 3 tasks, 20 hosts, 4 runners`.
    pub fn summary(&self) -> String {
        let file = self.source.label();
        let hosts: std::collections::BTreeSet<&str> = self
            .hosts
            .values()
            .flatten()
            .map(|host| host.name.as_str())
            .collect();
        let plural = |n: usize, what: &str| format!("{n} {what}{}", if n == 1 { "" } else { "s" });
        format!(
            "{file}: {}, {}, {}",
            plural(self.tasks.len(), "task"),
            plural(hosts.len(), "host"),
            plural(self.supervisor.runners as usize, "runner"),
        )
    }

    /// The task called `name`.
    pub fn task(&self, name: &str) -> Option<&Task> {
        self.tasks.iter().find(|task| task.name == name)
    }

    /// Things that are valid but probably not meant, for the gateway to log at start.
    pub fn warnings(&self) -> Vec<String> {
        let mut warnings = Vec::new();
        if let Some(role) = self.auth.anonymous
            && role > Role::Viewer
            && !self.server.listen.ip().is_loopback()
        {
            warnings.push(format!(
                "auth.anonymous = {:?} lets anyone who reaches {} act as {} without logging in",
                role.as_str(),
                self.server.listen,
                role.as_str(),
            ));
        }
        if self.auth.anonymous.is_none() && self.users.is_empty() && self.tokens.is_empty() {
            warnings.push(
                "no [[users]], no [[tokens]] and auth.anonymous = \"none\": nobody can use the API"
                    .to_string(),
            );
        }
        if let StoreLocation::Postgres(url) = &self.store
            && url.password_from == PasswordFrom::Url
        {
            warnings.push(
                "store.url holds a password: whoever reads the config reads it; \
                 prefer store.password_file or $PGPASSWORD"
                    .to_string(),
            );
        }
        if self.server.listen.ip().is_unspecified()
            && self
                .server
                .public_url
                .contains(&self.server.listen.ip().to_string())
        {
            warnings.push(format!(
                "server.public_url {:?} names an unspecified address; browsers' Origin will not match it",
                self.server.public_url
            ));
        }
        warnings
    }
}

impl Amount {
    /// This amount of `total` hosts; percents round down.
    fn of(self, total: usize) -> usize {
        match self {
            Amount::Count(n) => n as usize,
            Amount::Percent(p) => total * p as usize / 100,
        }
    }
}

impl Batch {
    /// Hosts per wave for a job of `total` hosts: the list's last item repeats, a percent
    /// is of all hosts (rounded down, at least 1), and the last wave takes what is left.
    pub fn wave_sizes(&self, total: usize) -> Vec<usize> {
        let mut sizes = Vec::new();
        let mut left = total;
        let mut items = self.0.iter().copied();
        let mut last = Amount::Count(1);
        while left > 0 {
            if let Some(item) = items.next() {
                last = item;
            }
            let size = last.of(total).max(1).min(left);
            sizes.push(size);
            left -= size;
        }
        sizes
    }
}

impl Threshold {
    /// Failures tolerated in a job of `total` hosts; a percent rounds down (10% of 5 is 0).
    pub fn resolve(&self, total: usize) -> u32 {
        u32::try_from(self.0.of(total)).unwrap_or(u32::MAX)
    }
}

impl Param {
    /// The pattern as the user wrote it (without the anchors the loader added).
    pub fn pattern_text(&self) -> &str {
        self.pattern.as_ref().map_or("", |p| {
            let s = p.as_str();
            s.strip_prefix("^(?:")
                .and_then(|s| s.strip_suffix(")$"))
                .unwrap_or(s)
        })
    }
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Role {
    type Err = String;

    /// `viewer`, `operator` or `admin`, as in the config and the API.
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text {
            "viewer" => Ok(Role::Viewer),
            "operator" => Ok(Role::Operator),
            "admin" => Ok(Role::Admin),
            other => Err(format!("unknown role {other:?}: viewer, operator or admin")),
        }
    }
}

impl Role {
    /// The name used in the config and the API.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::Operator => "operator",
            Role::Admin => "admin",
        }
    }
}
