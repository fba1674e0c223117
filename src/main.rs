//! The `shipwatch` binary: parses the command line ([`cli`]) and hands off to the crates.

mod cli;

use std::process::ExitCode;

use anyhow::Context;
use clap::Parser;
use shipwatch_config::ConfigSource;
use tokio_util::sync::CancellationToken;

use cli::{Cli, ClientArgs, Command, CtlAction, TokenAction};

fn main() -> ExitCode {
    let cli = Cli::parse();
    // The supervisor's loop must never wait for its stderr (the journal); every other
    // process writes its lines at once (a child's go to the supervisor, which reads them).
    let flush = match cli.command {
        Command::Up { .. } => shipwatch_supervisor::logging::init_queued(),
        _ => {
            shipwatch_supervisor::logging::init();
            None
        }
    };
    let result = dispatch(cli.command);
    // The queued lines first, then a fatal error after them.
    drop(flush);
    match result {
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
    let done = shipwatch_supervisor::control::ctl(run_dir, &request, json)
        .with_context(|| format!("is `shipwatch up` running for {}?", run_dir.display()))?;
    Ok(if done {
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
