//! The `shipwatch` binary: parses the command line and hands off to the crates.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use shipwatch_config::{Config, ConfigSource};
use tokio_util::sync::CancellationToken;

/// Exit codes of the client commands, shown in `--help`.
const EXIT_CODES: &str = "\
Exit codes: 0 ok (a followed job succeeded), 1 a followed job failed or was lost, or any \
error, 2 usage, 3 a followed job was cancelled, 130 Ctrl-C stopped watching (the job goes on).";

/// Run deploy scripts across a fleet of hosts and watch every line live.
#[derive(Parser)]
#[command(name = "shipwatch", version, about, after_help = EXIT_CODES)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
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
enum TokenAction {
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
enum CtlAction {
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
struct ConfigArgs {
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
struct ClientArgs {
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
    fn options(self) -> shipwatch_client::Options {
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
    let source = ConfigArgs {
        file: None,
        demo: false,
        snapshot: None,
    }
    .source();
    shipwatch_config::load(&source)
        .map(|c| c.server.public_url.clone())
        .unwrap_or_else(|_| "http://127.0.0.1:8080".to_string())
}

/// What `tail` and `--follow` print.
#[derive(Args)]
struct TailArgs {
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
    fn options(self) -> shipwatch_client::TailOptions {
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
    fn source(&self) -> ConfigSource {
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
        let local = PathBuf::from("shipwatch.toml");
        if local.exists() {
            ConfigSource::File(local)
        } else {
            ConfigSource::File(PathBuf::from("/etc/shipwatch/shipwatch.toml"))
        }
    }

    fn load(&self) -> anyhow::Result<Config> {
        Ok(shipwatch_config::load(&self.source())?)
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    shipwatch_supervisor::logging::init();
    match dispatch(cli.command) {
        Ok(code) => code,
        Err(error) => {
            eprintln!("shipwatch: {error:#}");
            ExitCode::FAILURE
        }
    }
}

fn dispatch(command: Command) -> anyhow::Result<ExitCode> {
    use shipwatch_client::Command as C;
    let following = |on: bool| on.then(shipwatch_client::TailOptions::default);
    match command {
        Command::Run {
            client: args,
            task,
            params,
            follow,
        } => {
            let command = C::Run {
                task,
                params,
                follow: following(follow),
            };
            return Ok(client(command, args));
        }
        Command::Jobs {
            client: args,
            task,
            state,
            limit,
            json,
        } => {
            let query = shipwatch_client::JobsQuery {
                task,
                state,
                limit,
                json,
            };
            return Ok(client(C::Jobs(query), args));
        }
        Command::Show {
            client: args,
            job,
            json,
        } => return Ok(client(C::Show { job, json }, args)),
        Command::Tail {
            client: args,
            job,
            tail,
        } => {
            let options = tail.options();
            return Ok(client(C::Tail { job, options }, args));
        }
        Command::Cancel { client: args, job } => return Ok(client(C::Cancel { job }, args)),
        Command::Rerun {
            client: args,
            job,
            failed,
            follow,
        } => {
            let command = C::Rerun {
                job,
                failed_only: failed,
                follow: following(follow),
            };
            return Ok(client(command, args));
        }
        Command::Tasks { client: args, json } => return Ok(client(C::Tasks { json }, args)),
        Command::Check { config } => return Ok(check(&config.source())),
        Command::Up { config } => shipwatch_supervisor::up(config.load()?)?,
        Command::Ctl { config, action } => {
            let run_dir = shipwatch_config::run_dir_of(&config.source());
            return ctl(&run_dir, action);
        }
        Command::HashPassword => {
            println!(
                "{}",
                shipwatch_gateway::auth::cli::hash_password_from_stdin()?
            );
        }
        Command::Token {
            action: TokenAction::New { name, role },
        } => {
            let made = shipwatch_gateway::auth::cli::new_token(&name, role)?;
            println!("{}", made.token);
            eprintln!("# The token above is shown only now. Add this to the config and reload:");
            print!("{}", made.config_block);
        }
        Command::Gateway { config } => {
            let config = config.load()?;
            serve(|shutdown| shipwatch_gateway::run(config, shutdown))?;
        }
        Command::Runner { config, index } => {
            let config = config.load()?;
            serve(|shutdown| shipwatch_runner::run(config, index, shutdown))?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Runs a client command; its errors are printed here with their causes.
fn client(command: shipwatch_client::Command, args: ClientArgs) -> ExitCode {
    match shipwatch_client::run(command, args.options()) {
        Ok(exit) => ExitCode::from(exit.code()),
        Err(error) => {
            let code = error.exit_code();
            eprintln!("shipwatch: {:#}", anyhow::Error::from(error));
            ExitCode::from(code)
        }
    }
}

/// `shipwatch check`: a summary line, or every error on its own line and exit 1.
fn check(source: &ConfigSource) -> ExitCode {
    match shipwatch_config::load(source) {
        Ok(config) => {
            for warning in config.warnings() {
                eprintln!("warning: {warning}");
            }
            println!("ok: {}", config.summary());
            ExitCode::SUCCESS
        }
        Err(errors) => {
            for error in &errors.0 {
                eprintln!("{error}");
            }
            ExitCode::FAILURE
        }
    }
}

/// `shipwatch ctl`: one request to the supervisor of this config's run_dir.
fn ctl(run_dir: &std::path::Path, action: CtlAction) -> anyhow::Result<ExitCode> {
    use shipwatch_supervisor::Request;
    let (request, json) = match action {
        CtlAction::Status { json } => (Request::Status, json),
        CtlAction::Restart { target } => (Request::Restart { target }, false),
        CtlAction::Scale { runners } => (Request::Scale { runners }, false),
        CtlAction::Reload => (Request::Reload, false),
        CtlAction::Stop => (Request::Stop, false),
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the tokio runtime")?;
    let response = runtime
        .block_on(shipwatch_supervisor::control::request(run_dir, &request))
        .with_context(|| format!("is `shipwatch up` running for {}?", run_dir.display()))?;
    if json {
        println!("{}", response.to_json_pretty());
    } else if matches!(request, Request::Status) {
        println!("{}", response.message);
        print!(
            "{}",
            shipwatch_supervisor::control::format_table(&response.processes)
        );
    } else if response.ok {
        println!("{}", response.message);
    } else {
        eprintln!("{}", response.message);
    }
    Ok(if response.ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// Runs a long-lived process on tokio until it ends or SIGTERM/SIGINT cancels it.
fn serve<F, Fut, E>(process: F) -> anyhow::Result<()>
where
    F: FnOnce(CancellationToken) -> Fut,
    Fut: Future<Output = Result<(), E>>,
    E: std::error::Error + Send + Sync + 'static,
{
    let runtime = tokio::runtime::Runtime::new().context("cannot start the tokio runtime")?;
    runtime.block_on(async {
        let shutdown = CancellationToken::new();
        let signals = tokio::spawn(cancel_on_signal(shutdown.clone()));
        let result = process(shutdown).await;
        signals.abort();
        result.map_err(anyhow::Error::from)
    })
}

async fn cancel_on_signal(shutdown: CancellationToken) {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        tracing::error!("cannot install signal handlers");
        return;
    };
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM: shutting down"),
        _ = int.recv() => tracing::info!("SIGINT: shutting down"),
    }
    shutdown.cancel();
}
