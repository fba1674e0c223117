//! The command line (clap): every subcommand and flag, and how each becomes the options
//! of the crate that does the work. DESIGN §3 is its contract.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};
use shipwatch_config::{Config, ConfigSource};

/// Exit codes of the client commands, shown in `--help`.
const EXIT_CODES: &str = "\
Exit codes: 0 ok (a followed job succeeded), 1 a followed job failed or was lost, or any \
error, 2 usage, 3 a followed job was cancelled, 130 Ctrl-C stopped watching (the job goes on).";

/// Run deploy scripts across a fleet of hosts and watch every line live.
#[derive(Parser)]
#[command(name = "shipwatch", version, about, after_help = EXIT_CODES)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand)]
pub enum Command {
    /// Validate a config; exit 1 with `file:line:col: message` for every problem.
    Check {
        #[command(flatten)]
        config: ConfigArgs,
    },
    /// Run the supervisor in the foreground: the gateway and N runners (what systemd runs).
    Up {
        #[command(flatten)]
        config: ConfigArgs,
    },
    /// Talk to a running supervisor through `<run_dir>/control.sock`.
    Ctl {
        #[command(flatten)]
        config: ConfigArgs,
        #[command(subcommand)]
        action: CtlAction,
    },
    /// Start a job of TASK; with --follow stream it and exit with its status.
    #[command(after_help = EXIT_CODES)]
    Run {
        #[command(flatten)]
        client: ClientArgs,
        /// The task to run (`shipwatch tasks` lists them).
        task: String,
        /// A param of the task, KEY=VALUE; repeat for more.
        #[arg(short = 'p', long = "param", value_name = "KEY=VALUE", value_parser = key_value)]
        params: Vec<(String, String)>,
        /// Stream the job's log until it ends; exit with its status.
        #[arg(short = 'f', long)]
        follow: bool,
    },
    /// List jobs, newest first.
    Jobs {
        #[command(flatten)]
        client: ClientArgs,
        /// Only jobs of this task.
        #[arg(long)]
        task: Option<String>,
        /// Only jobs in this state (queued, running, succeeded, failed, cancelled, lost).
        #[arg(long)]
        state: Option<shipwatch_protocol::JobState>,
        /// At most this many.
        #[arg(long, default_value_t = 20)]
        limit: u32,
        /// Print `{"jobs":[…]}` as the API does.
        #[arg(long)]
        json: bool,
    },
    /// One job with its hosts' states.
    Show {
        #[command(flatten)]
        client: ClientArgs,
        /// A job number or its page's URL (http://…/jobs/42).
        job: shipwatch_client::JobRef,
        /// Print the job as the API returns it.
        #[arg(long)]
        json: bool,
    },
    /// Print a job's log, following it while it runs; exit with its status.
    #[command(after_help = EXIT_CODES)]
    Tail {
        #[command(flatten)]
        client: ClientArgs,
        /// A job number or its page's URL (http://…/jobs/42).
        job: shipwatch_client::JobRef,
        #[command(flatten)]
        tail: TailArgs,
    },
    /// Cancel a job (running hosts are stopped, pending ones skipped).
    Cancel {
        #[command(flatten)]
        client: ClientArgs,
        /// A job number or its page's URL.
        job: shipwatch_client::JobRef,
    },
    /// Start a job again with the same spec; with --failed on its failed hosts only.
    #[command(after_help = EXIT_CODES)]
    Rerun {
        #[command(flatten)]
        client: ClientArgs,
        /// A job number or its page's URL.
        job: shipwatch_client::JobRef,
        /// Only the hosts that failed, timed out or were unreachable.
        #[arg(long)]
        failed: bool,
        /// Stream the new job's log until it ends; exit with its status.
        #[arg(short = 'f', long)]
        follow: bool,
    },
    /// The tasks this server offers, with their params.
    Tasks {
        #[command(flatten)]
        client: ClientArgs,
        /// Print the API's JSON.
        #[arg(long)]
        json: bool,
    },
    /// Read a password on stdin (no echo on a terminal) and print its argon2id hash for
    /// a `[[users]]` entry's `password_hash`.
    HashPassword,
    /// API tokens for the CLI and CI.
    Token {
        #[command(subcommand)]
        action: TokenAction,
    },
    /// Internal: the gateway process, started by `shipwatch up`.
    #[command(hide = true)]
    Gateway {
        #[command(flatten)]
        config: ConfigArgs,
    },
    /// Internal: runner process number K, started by `shipwatch up`.
    #[command(hide = true)]
    Runner {
        #[command(flatten)]
        config: ConfigArgs,
        /// Which runner this is (0-based).
        #[arg(long)]
        index: u32,
    },
}

/// What `shipwatch token` does.
#[derive(Subcommand)]
pub enum TokenAction {
    /// Print a new token once, and the `[[tokens]]` block (with its hash) to paste.
    New {
        /// The token's name, as the audit log will show who used it.
        name: String,
        /// What the token may do: viewer, operator or admin.
        #[arg(long, default_value = "viewer")]
        role: shipwatch_config::Role,
    },
}

/// What `shipwatch ctl` asks the supervisor.
#[derive(Subcommand)]
pub enum CtlAction {
    /// Table of processes: NAME STATE PID UPTIME RESTARTS LAST-EXIT.
    Status {
        /// Print the supervisor's JSON answer instead.
        #[arg(long)]
        json: bool,
    },
    /// Restart a process by name (`gateway`, `runner-2`), or `runners`, or `all`.
    Restart { target: String },
    /// Set the runner count until the next reload from the file.
    Scale { runners: u32 },
    /// Re-read the config file; exit 1 with its errors when it is invalid.
    Reload,
    /// Stop every child and the supervisor.
    Stop,
}

/// Which config to use.
#[derive(Args)]
pub struct ConfigArgs {
    /// Config file [default: ./shipwatch.toml, then /etc/shipwatch/shipwatch.toml]
    #[arg(
        short = 'c',
        long = "config",
        value_name = "FILE",
        conflicts_with = "demo"
    )]
    file: Option<PathBuf>,
    /// Use the embedded demo config (20 simulated hosts, data in ./shipwatch-data).
    #[arg(long)]
    demo: bool,
    /// Internal: read the config text the supervisor saved here, as if it were FILE.
    #[arg(long, value_name = "SNAPSHOT", requires = "file", hide = true)]
    snapshot: Option<PathBuf>,
}

/// Which server a client command talks to, as whom.
#[derive(Args)]
pub struct ClientArgs {
    /// The gateway's URL, http:// or https:// (certificates checked against the OS's CA
    /// store; SSL_CERT_FILE replaces it) [default: public_url of the local config, else
    /// http://127.0.0.1:8080]
    #[arg(long, env = "SHIPWATCH_URL", value_name = "URL")]
    server: Option<String>,
    /// API token, sent as `Authorization: Bearer`.
    #[arg(
        long,
        env = "SHIPWATCH_TOKEN",
        hide_env_values = true,
        value_name = "TOKEN"
    )]
    token: Option<String>,
    /// Read the token from FILE (it must not be readable by group or others).
    #[arg(long, value_name = "FILE", conflicts_with = "token")]
    token_file: Option<PathBuf>,
}

impl ClientArgs {
    pub fn options(self) -> shipwatch_client::Options {
        let default_server = match &self.server {
            Some(_) => String::new(),
            None => local_public_url(),
        };
        shipwatch_client::Options {
            server: self.server,
            default_server,
            token: self.token,
            token_file: self.token_file,
        }
    }
}

/// `public_url` of the config `shipwatch up` would read here, when it loads.
fn local_public_url() -> String {
    shipwatch_config::load(&ConfigSource::default_file())
        .map(|c| c.server.public_url.clone())
        .unwrap_or_else(|_| "http://127.0.0.1:8080".to_string())
}

/// What `tail` and `--follow` print.
#[derive(Args)]
pub struct TailArgs {
    /// Only this host's lines; repeat for more.
    #[arg(long = "host", value_name = "H")]
    hosts: Vec<String>,
    /// Only stdout or only stderr.
    #[arg(long, value_name = "S")]
    stream: Option<shipwatch_protocol::Stream>,
    /// Start after this seq (what an earlier tail printed last).
    #[arg(long, value_name = "SEQ", default_value_t = 0)]
    after: u64,
    /// Print what is stored now and stop, even while the job runs.
    #[arg(long)]
    no_follow: bool,
    /// The time column: wall clock (UTC) or since the job started.
    #[arg(long, value_enum, default_value = "abs")]
    timestamps: TimestampsArg,
    /// `text` lines, or every event's JSON one a line.
    #[arg(short = 'o', long = "output", value_enum, default_value = "text")]
    output: OutputArg,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum TimestampsArg {
    Abs,
    Rel,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum OutputArg {
    Text,
    Ndjson,
}

impl TailArgs {
    pub fn options(self) -> shipwatch_client::TailOptions {
        shipwatch_client::TailOptions {
            filters: shipwatch_client::Filters {
                hosts: self.hosts,
                stream: self.stream,
            },
            after: self.after,
            no_follow: self.no_follow,
            timestamps: match self.timestamps {
                TimestampsArg::Abs => shipwatch_client::Timestamps::Absolute,
                TimestampsArg::Rel => shipwatch_client::Timestamps::Relative,
            },
            output: match self.output {
                OutputArg::Text => shipwatch_client::Output::Text,
                OutputArg::Ndjson => shipwatch_client::Output::Ndjson,
            },
        }
    }
}

/// `KEY=VALUE` of `-p`.
fn key_value(arg: &str) -> Result<(String, String), String> {
    match arg.split_once('=') {
        Some((key, value)) if !key.is_empty() => Ok((key.to_string(), value.to_string())),
        _ => Err(format!("{arg:?} is not KEY=VALUE")),
    }
}

impl ConfigArgs {
    /// The config these flags name.
    pub fn source(&self) -> ConfigSource {
        if self.demo {
            return ConfigSource::Demo;
        }
        if let Some(file) = &self.file {
            return match &self.snapshot {
                Some(snapshot) => ConfigSource::Snapshot {
                    file: snapshot.clone(),
                    of: file.clone(),
                },
                None => ConfigSource::File(file.clone()),
            };
        }
        ConfigSource::default_file()
    }

    /// That config, loaded and validated.
    pub fn load(&self) -> anyhow::Result<Config> {
        Ok(shipwatch_config::load(&self.source())?)
    }
}
