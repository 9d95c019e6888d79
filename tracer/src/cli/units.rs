//! `tracer units`, `tracer why UNIT`, `tracer restarts [UNIT]`: the daemon's account when
//! one runs, else a model of their own, from a recording (`--events FILE`) or traced live
//! (until Ctrl-C or `--duration`). The reports themselves are [`crate::report`]'s.

use std::{
    io::{self, Write},
    path::PathBuf,
    time::Duration,
};

use anyhow::{Context as _, bail};
use clap::Args;
use tokio::signal::unix::{SignalKind, signal};

use crate::{
    enrich::Resolver,
    event::Event,
    model::{
        Model, ModelConfig,
        facts::{Facts, LiveFacts},
    },
    probe::ProbeOptions,
    protocol::{Query, Reply, UnitSelect},
    replay,
    report::{self, Source as Origin},
    systemd,
};

/// Where the events come from.
#[derive(Debug, Args)]
pub struct Source {
    /// Replay a recording (the JSON lines of `tracer events --json`) instead of tracing.
    #[arg(long, value_name = "FILE", conflicts_with = "boot")]
    pub events: Option<PathBuf>,
    /// Replay a recorded boot from the daemon's journal, with systemd's account of it as
    /// the daemon recorded it (its changes as they happened): the boot's id (or a
    /// prefix), 0 (or nothing) for the current one, -1 for the one before, ... as
    /// journalctl's -b.
    #[arg(
        short = 'b',
        long,
        value_name = "ID|-N",
        allow_negative_numbers = true,
        num_args = 0..=1,
        default_missing_value = "0",
        conflicts_with = "duration"
    )]
    pub boot: Option<String>,
    /// The daemon's state directory (where its journal is), for --boot.
    #[arg(long, value_name = "DIR", default_value = "/var/lib/tracer")]
    pub state_dir: PathBuf,
    /// Trace live for this many seconds, then report (default: until Ctrl-C).
    #[arg(long, value_name = "SECONDS")]
    pub duration: Option<f64>,
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
    /// The kernel's account alone: systemd is not asked, its account recorded in the
    /// journal (-b) is left out, and the daemon (whose account has systemd's) is not
    /// asked either. What only systemd could say is then marked as inferred.
    #[arg(long)]
    pub no_systemd: bool,
    /// Failed runs within --crash-loop-window seconds that make a crash loop.
    #[arg(long, default_value_t = 3)]
    pub crash_loop_runs: usize,
    /// The window of --crash-loop-runs.
    #[arg(long, default_value_t = 60.0, value_name = "SECONDS")]
    pub crash_loop_window: f64,
}

#[derive(Debug, Args)]
pub struct UnitsArgs {
    /// Only units of these types, as systemctl's --type (service, scope, socket, mount,
    /// swap; comma-separated).
    #[arg(short = 't', long = "type", value_delimiter = ',', value_name = "TYPE")]
    pub types: Vec<String>,
    /// Only units in these states as seen (failed, running, exited, active, inactive;
    /// comma-separated), as systemctl's --state.
    #[arg(long = "state", value_delimiter = ',', value_name = "STATE")]
    pub states: Vec<String>,
    /// Only failed units (--state failed), as systemctl --failed.
    #[arg(long)]
    pub failed: bool,
    #[command(flatten)]
    pub source: Source,
}

#[derive(Debug, Args)]
pub struct WhyArgs {
    /// The unit (`mylog.service`, or `mylog`).
    pub unit: String,
    #[command(flatten)]
    pub source: Source,
}

#[derive(Debug, Args)]
pub struct RestartsArgs {
    /// Only this unit.
    pub unit: Option<String>,
    #[command(flatten)]
    pub source: Source,
}

impl Source {
    /// Where the model's events come from, as the reports say it.
    fn origin(&self) -> Origin {
        if self.events.is_some() || self.boot.is_some() {
            Origin::Recording
        } else {
            Origin::Tracing
        }
    }
}

pub async fn units(args: UnitsArgs) -> anyhow::Result<()> {
    let mut select = UnitSelect {
        types: args.types,
        states: args.states,
    };
    if args.failed {
        select.states.push("failed".into());
    }
    let query = Query::Units {
        json: args.source.json,
        select,
    };
    report(&args.source, query).await
}

pub async fn why(args: WhyArgs) -> anyhow::Result<()> {
    let query = Query::Why {
        unit: args.unit,
        json: args.source.json,
    };
    report(&args.source, query).await
}

pub async fn restarts(args: RestartsArgs) -> anyhow::Result<()> {
    let query = Query::Restarts {
        unit: args.unit,
        json: args.source.json,
    };
    report(&args.source, query).await
}

/// Prints a report: the running daemon's when the source is live and one runs, else one
/// of a model of our own, with systemd's facts when they describe what it is about (live
/// tracing, not a recording, whose units may be another machine's).
async fn report(src: &Source, query: Query) -> anyhow::Result<()> {
    if src.no_systemd {
        systemd::stop_asking();
    }
    if let Some(which) = &src.boot {
        let replayed = crate::cli::boot::replay_boot(&src.state_dir, which, model_config(src))?;
        if replayed.account.overflowed() && !src.no_systemd {
            eprintln!(
                "tracer: systemd's recorded account of this boot names more units than are followed: some are missing from it"
            );
        }
        let sd = replayed.account.snapshot().filter(|_| !src.no_systemd);
        if src.no_systemd {
            eprintln!(
                "tracer: --no-systemd: systemd's recorded account of this boot is left out; what follows is the kernel's account alone"
            );
        } else if sd.is_none() {
            eprintln!(
                "tracer: the journal holds no account of systemd's for this boot (it was not reachable): what follows is the kernel's account alone"
            );
        }
        let mut text = Vec::new();
        report::render(
            &mut text,
            &query,
            &replayed.model,
            src.origin(),
            sd.as_ref(),
        )?;
        return print(&query, &text);
    }
    let live = src.events.is_none() && src.duration.is_none() && !src.no_systemd;
    if live && let Some(reply) = crate::client::query(&query).await? {
        return match reply {
            Reply::Output(text) => print(&query, text.as_bytes()),
            Reply::Error(e) => bail!("{e}"),
        };
    }
    let model = model(src).await?;
    let sd = if src.events.is_some() {
        None
    } else {
        systemd::facts_for(&query, &systemd::Link::default()).await
    };
    let mut text = Vec::new();
    report::render(&mut text, &query, &model, src.origin(), sd.as_ref())?;
    print(&query, &text)
}

/// Writes a report to stdout, its failures painted when stdout is a terminal that wants
/// colour (never JSON).
fn print(query: &Query, text: &[u8]) -> anyhow::Result<()> {
    let json = match query {
        Query::Units { json, .. } | Query::Why { json, .. } | Query::Restarts { json, .. } => *json,
    };
    let mut out = io::stdout().lock();
    match std::str::from_utf8(text) {
        Ok(t) if !json && super::colour::stdout() => {
            let painted = match query {
                Query::Units { .. } => super::colour::units(t),
                Query::Why { .. } => super::colour::why(t),
                Query::Restarts { .. } => t.to_owned(),
            };
            out.write_all(painted.as_bytes())?;
        }
        _ => out.write_all(text)?,
    }
    out.flush()?;
    Ok(())
}

/// Feeds a recording (`tracer events --json` lines) through a model; malformed lines are
/// reported and skipped. Returns the first event's timestamp.
pub fn apply_recording<F: Facts>(
    path: &std::path::Path,
    model: &mut Model<F>,
) -> anyhow::Result<Option<u64>> {
    let (events, errors) = replay::read_file(path)
        .with_context(|| format!("reading the recording {}", path.display()))?;
    if !errors.is_empty() {
        eprintln!(
            "tracer: skipped {} malformed line(s) of {} (first: {})",
            errors.len(),
            path.display(),
            errors[0]
        );
    }
    let first = events.first().map(|e| e.ts_ns);
    let mut cgroups = Resolver::default();
    for ev in events {
        model.apply(&cgroups.enrich(ev));
    }
    Ok(first)
}

fn model_config(src: &Source) -> ModelConfig {
    ModelConfig {
        crash_loop_runs: src.crash_loop_runs,
        crash_loop_window_ns: (src.crash_loop_window * 1e9) as u64,
        ..ModelConfig::default()
    }
}

/// Builds the model from the source.
async fn model(src: &Source) -> anyhow::Result<Model<LiveFacts>> {
    let mut model = Model::new(LiveFacts, model_config(src));
    if let Some(path) = &src.events {
        apply_recording(path, &mut model)?;
        return Ok(model);
    }
    let mut started = crate::startup::start(&ProbeOptions::default(), true)?;
    started.seed(&mut model);
    let crate::startup::Started {
        mut probe,
        mut cgroups,
        ..
    } = started;
    eprintln!(
        "tracer: watching units{}; Ctrl-C to report",
        src.duration
            .map_or(String::new(), |d| format!(" for {d} s"))
    );
    let mut interrupt = signal(SignalKind::interrupt())?;
    let mut terminate = signal(SignalKind::terminate())?;
    let deadline = tokio::time::sleep(src.duration.map_or(Duration::MAX, Duration::from_secs_f64));
    tokio::pin!(deadline);
    let mut batch: Vec<Event> = Vec::new();
    loop {
        tokio::select! {
            _ = interrupt.recv() => break,
            _ = terminate.recv() => break,
            _ = &mut deadline => break,
            r = probe.read(&mut batch) => r?,
        }
        for ev in batch.drain(..) {
            model.apply(&cgroups.enrich(ev));
        }
    }
    probe.drain(&mut batch);
    for ev in batch.drain(..) {
        model.apply(&cgroups.enrich(ev));
    }
    let stats = probe.kernel_stats();
    if stats.drops > 0 {
        eprintln!(
            "tracer: {} events were dropped (ring buffer full): the account may miss runs",
            stats.drops
        );
    }
    Ok(model)
}
