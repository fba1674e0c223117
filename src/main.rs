//! The `shipwatch` binary: parses the command line and hands off to the crates.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use shipwatch_config::{Config, ConfigSource};
use tokio_util::sync::CancellationToken;

/// Run deploy scripts across a fleet of hosts and watch every line live.
#[derive(Parser)]
#[command(name = "shipwatch", version, about)]
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
    match command {
        Command::Check { config } => return Ok(check(&config.source())),
        Command::Up { config } => shipwatch_supervisor::up(config.load()?)?,
        Command::Ctl { config, action } => {
            let run_dir = shipwatch_supervisor::control::run_dir_of(&config.source());
            return ctl(&run_dir, action);
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
