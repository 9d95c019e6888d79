//! The command line: one module per subcommand.

pub mod boot;
pub mod events;
pub mod journal;
pub mod units;

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use tracing_subscriber::EnvFilter;

/// eBPF process and service tracer for systemd hosts.
#[derive(Debug, Parser)]
#[command(name = "tracer", version, about)]
pub struct Cli {
    /// More log output on stderr (-v: info, -vv: debug). RUST_LOG overrides it.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Stream exec, failed exec, exit, fork and cgroup events live, as they happen.
    Events(events::EventsArgs),
    /// Each unit seen: runs, restarts, state, last exit and cause.
    Units(units::UnitsArgs),
    /// Why a unit failed (or did not), in plain words, with the evidence and the fix.
    Why(units::WhyArgs),
    /// Each run of each restarted unit (or of UNIT): when, how it started, how it ended.
    Restarts(units::RestartsArgs),
    /// The boot-order timeline of a recorded boot: what started when, what held it up.
    Boot(boot::BootArgs),
    /// The daemon's recorded boots.
    Journal(journal::JournalArgs),
    /// The always-on service: journal, live stream socket, Prometheus /metrics.
    Daemon(crate::daemon::DaemonArgs),
}

/// The whole program: parse, set up logging, run the subcommand, map the outcome to an
/// exit status (the `tracer` binary is just this).
pub fn main() -> ExitCode {
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
            Command::Events(args) => events::run(args).await,
            Command::Units(args) => units::units(args).await,
            Command::Why(args) => units::why(args).await,
            Command::Restarts(args) => units::restarts(args).await,
            Command::Daemon(args) => crate::daemon::run(args).await,
            Command::Journal(args) => journal::run(args),
            Command::Boot(args) => boot::run(args),
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
