//! The command line: one module per subcommand.

pub mod boot;
mod colour;
pub mod events;
pub mod journal;
mod log;
pub mod units;

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use tracing_subscriber::EnvFilter;

/// eBPF process and service tracer for systemd hosts: why a unit failed, what restarted,
/// what held boot up, and every exec, exit and signal as it happens.
#[derive(Debug, Parser)]
#[command(
    name = "tracer",
    version,
    about,
    after_help = "Examples:\n  tracer why mylog.service        why the unit failed (or did not), and the fix\n  tracer units                    every unit: runs, restarts, state, last cause\n  tracer events --failed          failed execs and exits, live\n  tracer events -f -u mylog       the unit's last events, then new ones as they happen\n  tracer boot --blame             the slowest units of this boot\n  tracer boot --critical          what decided when boot was done, and what held it up\n\nThe daemon (tracer.service) keeps a journal of every boot; the other commands ask it\nwhen it runs and trace on their own when it does not."
)]
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
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell).
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Print the man page tracer(1) (roff), or write one per subcommand into DIR.
    #[command(hide = true)]
    Manpage {
        /// Write tracer.1 and a page per subcommand (tracer-events.1, tracer-why.1,
        /// tracer-journal-list.1, ...) into DIR, and print their paths.
        #[arg(long, value_name = "DIR")]
        dir: Option<std::path::PathBuf>,
    },
}

/// Writes tracer.1 and a page for every subcommand that is not hidden, at any depth
/// (`tracer-journal-list.1`), into `dir`; returns their paths, tracer.1 first.
pub fn write_man_pages(dir: &std::path::Path) -> std::io::Result<Vec<std::path::PathBuf>> {
    fn walk(
        cmd: clap::Command,
        dir: &std::path::Path,
        out: &mut Vec<std::path::PathBuf>,
    ) -> std::io::Result<()> {
        let subs: Vec<clap::Command> = cmd
            .get_subcommands()
            .filter(|s| !s.is_hide_set())
            .cloned()
            .collect();
        // Every page's footer names the program and version, not the subcommand.
        let page = clap_mangen::Man::new(cmd)
            .source(format!("tracer {}", env!("CARGO_PKG_VERSION")))
            .manual("tracer manual");
        out.push(page.generate_to(dir)?);
        for sub in subs {
            walk(sub, dir, out)?;
        }
        Ok(())
    }
    let mut cmd = <Cli as clap::CommandFactory>::command().disable_help_subcommand(true);
    // Gives each subcommand its display name, tracer-SUB, which names its page.
    cmd.build();
    let mut pages = Vec::new();
    walk(cmd, dir, &mut pages)?;
    Ok(pages)
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
    let journal = log::stderr_is_journal();
    log::init(
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_level)),
        journal,
    );

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
            Command::Boot(args) => boot::run(args).await,
            Command::Completions { shell } => {
                let mut cmd = <Cli as clap::CommandFactory>::command();
                clap_complete::generate(shell, &mut cmd, "tracer", &mut std::io::stdout());
                Ok(())
            }
            Command::Manpage { dir: None } => {
                let cmd = <Cli as clap::CommandFactory>::command();
                clap_mangen::Man::new(cmd)
                    .render(&mut std::io::stdout())
                    .map_err(anyhow::Error::from)
            }
            Command::Manpage { dir: Some(dir) } => {
                use anyhow::Context as _;
                let pages = write_man_pages(&dir).with_context(|| {
                    format!(
                        "writing the man pages into {} (does it exist?)",
                        dir.display()
                    )
                })?;
                for p in pages {
                    println!("{}", p.display());
                }
                Ok(())
            }
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        // A closed pipe (`tracer ... | head`) is how a reader says it has enough.
        Err(e)
            if e.chain()
                .filter_map(|c| c.downcast_ref::<std::io::Error>())
                .any(|io| io.kind() == std::io::ErrorKind::BrokenPipe) =>
        {
            ExitCode::SUCCESS
        }
        Err(e) => {
            // An error line is PRIORITY=3 in the journal.
            if journal {
                eprintln!("<3>tracer: {e:#}");
            } else if colour::stderr() {
                eprintln!("{}", colour::fail(&format!("tracer: {e:#}")));
            } else {
                eprintln!("tracer: {e:#}");
            }
            ExitCode::FAILURE
        }
    }
}
