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
}

impl ConfigArgs {
    fn source(&self) -> ConfigSource {
        if self.demo {
            return ConfigSource::Demo;
        }
        if let Some(file) = &self.file {
            return ConfigSource::File(file.clone());
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
    init_logging();
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

/// Logs to stderr; the supervisor prefixes children's lines with their name.
fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("SHIPWATCH_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
}
