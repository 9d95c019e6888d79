//! The command line: one module per subcommand.

pub mod events;
pub mod journal;
pub mod units;

use clap::{Parser, Subcommand};

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
    /// The daemon's recorded boots.
    Journal(journal::JournalArgs),
    /// The always-on service: journal, live stream socket, Prometheus /metrics.
    Daemon(crate::daemon::DaemonArgs),
}
