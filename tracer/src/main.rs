use std::process::ExitCode;

use clap::Parser;
use tracer::cli::{Cli, Command};
use tracing_subscriber::EnvFilter;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let default_level = match cli.verbose {
        0 => "warn",
        1 => "info",
        _ => "debug",
    };
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_level)),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();

    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("tracer: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        match cli.command {
            Command::Events(args) => tracer::cli::events::run(args).await,
            Command::Units(args) => tracer::cli::units::units(args).await,
            Command::Why(args) => tracer::cli::units::why(args).await,
            Command::Restarts(args) => tracer::cli::units::restarts(args).await,
            Command::Daemon(args) => tracer::daemon::run(args).await,
            Command::Journal(args) => tracer::cli::journal::run(args),
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("tracer: {e:#}");
            ExitCode::FAILURE
        }
    }
}
