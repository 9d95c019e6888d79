//! `tracer events`: the live event stream, in columns or as JSON lines.

use std::io::{self, BufWriter, Write};

use anyhow::Context as _;
use clap::Args;
use tokio::signal::unix::{SignalKind, signal};

use crate::{
    clock::BootClock,
    enrich::{Enriched, Resolver},
    event::{Event, EventKind},
    probe::ProbeOptions,
    protocol::{Filter, KindFilter},
    report::events::{Output, TEXT_HEADER, write_event},
};

#[derive(Debug, Args)]
pub struct EventsArgs {
    /// Print one JSON object per line (field names are documented in README.md); the
    /// same as -o json.
    #[arg(long)]
    pub json: bool,
    /// Output format, as journalctl's -o: short (columns), json (JSON lines), cat (the
    /// detail column alone).
    #[arg(short = 'o', long = "output", value_enum, default_value_t = Output::Short)]
    pub output: Output,
    /// Only events of processes in units matching PATTERN (repeatable; globs with * and
    /// ?; `mylog` means mylog.service), as journalctl's -u.
    #[arg(short = 'u', long = "unit", value_name = "PATTERN")]
    pub units: Vec<String>,
    /// Only events of this process id (repeatable); fork and attach events match their child
    /// or moved process too.
    #[arg(long = "pid", value_name = "PID")]
    pub pids: Vec<u32>,
    /// Only events whose comm is NAME (repeatable).
    #[arg(long = "comm", value_name = "NAME")]
    pub comms: Vec<String>,
    /// Only events in cgroups whose path starts with PREFIX (e.g. /system.slice/).
    #[arg(long, value_name = "PREFIX")]
    pub cgroup: Option<String>,
    /// Only these kinds (comma-separated).
    #[arg(long = "kind", value_delimiter = ',', value_enum, value_name = "KIND")]
    pub kinds: Vec<KindFilter>,
    /// Only failed execs and processes that exited with a non-zero status or a signal.
    #[arg(long)]
    pub failed: bool,
    /// Size of the kernel ring buffer in bytes (a power of two), when tracing standalone.
    #[arg(long, value_name = "BYTES", default_value_t = ProbeOptions::default().ring_size)]
    pub ring_size: u32,
    /// Trace here even when a daemon runs (instead of streaming from it).
    #[arg(long)]
    pub standalone: bool,
    /// Replay a recorded boot from the daemon's journal: its id (or a prefix), 0 (or
    /// nothing) for the current/newest, -1 for the one before, ... as journalctl's -b.
    #[arg(
        short = 'b',
        long,
        value_name = "ID|-N",
        allow_negative_numbers = true,
        num_args = 0..=1,
        default_missing_value = "0"
    )]
    pub boot: Option<String>,
    /// With --boot: only events at or after this time: systemd's syntax ("2026-11-01
    /// 10:00", "today", "yesterday", "-5min", "@1795000000"), or seconds since that boot
    /// ("12.5").
    #[arg(long, value_name = "TIME", allow_hyphen_values = true)]
    pub since: Option<String>,
    /// With --boot: only events before this time (same syntax as --since).
    #[arg(long, value_name = "TIME", allow_hyphen_values = true)]
    pub until: Option<String>,
    /// Show the most recent events of the current boot from the daemon's journal (the
    /// last 10 unless -n says), then keep printing new ones as they happen, as
    /// journalctl -f.
    #[arg(short = 'f', long)]
    pub follow: bool,
    /// Show only the last N events (of the boot given with -b, else of the current one),
    /// as journalctl -n.
    #[arg(short = 'n', long = "lines", value_name = "N")]
    pub lines: Option<usize>,
    /// The daemon's state directory (where its journal is), for --boot.
    #[arg(long, value_name = "DIR", default_value = "/var/lib/tracer")]
    pub state_dir: std::path::PathBuf,
}

impl EventsArgs {
    /// The events asked for.
    fn filter(&self) -> Filter {
        Filter {
            units: self.units.clone(),
            pids: self.pids.clone(),
            comms: self.comms.clone(),
            cgroup_prefix: self.cgroup.clone(),
            kinds: self.kinds.clone(),
            failed_only: self.failed,
        }
    }
}

/// Runs the live stream until Ctrl-C, SIGTERM or a closed stdout: from the daemon when
/// one runs, else standalone; or replays a recorded boot.
pub async fn run(args: EventsArgs) -> anyhow::Result<()> {
    let filter = args.filter();
    let output = if args.json { Output::Json } else { args.output };
    let tail = args.lines.or(args.follow.then_some(10));
    if args.boot.is_some() || tail.is_some() {
        return recorded(&args, &filter, output, tail).await;
    }
    if args.since.is_some() || args.until.is_some() {
        anyhow::bail!(
            "--since and --until select from a recorded boot: add -b (the current boot) or -b ID"
        );
    }
    if !args.standalone {
        if let Some(lines) = crate::client::events(&filter).await? {
            eprintln!(
                "tracer: streaming from the daemon ({}); Ctrl-C to stop",
                crate::client::socket_path().display()
            );
            return from_daemon(lines, output, None, true).await;
        }
        eprintln!("tracer: no daemon is running: tracing standalone");
    }
    standalone(&args, &filter, output).await
}

/// A recorded boot from the journal (its last `tail` events when given), then, with
/// `-f`, the daemon's live stream from where the journal ended.
async fn recorded(
    args: &EventsArgs,
    filter: &Filter,
    output: Output,
    tail: Option<usize>,
) -> anyhow::Result<()> {
    let boot = args.boot.as_deref().unwrap_or("0");
    if args.follow && boot != "0" {
        anyhow::bail!("-f follows the current boot: leave out -b, or use -b 0");
    }
    // Subscribe before reading the journal's tail, so nothing falls in between.
    let live = if args.follow {
        let Some(live) = crate::client::events(filter).await? else {
            anyhow::bail!(
                "-f follows the daemon's stream and journal, and no daemon is running: start it (systemctl start tracer), or run `tracer events` to trace here"
            );
        };
        Some(live)
    } else {
        None
    };
    let last = replay_boot(args, filter, boot, output, tail)?;
    match live {
        Some(lines) => from_daemon(lines, output, last, false).await,
        None => Ok(()),
    }
}

/// Traces here until Ctrl-C, SIGTERM or a closed stdout.
async fn standalone(args: &EventsArgs, filter: &Filter, output: Output) -> anyhow::Result<()> {
    let crate::startup::Started {
        mut probe,
        mut cgroups,
        ..
    } = crate::startup::start(
        &ProbeOptions {
            ring_size: args.ring_size,
            ..ProbeOptions::default()
        },
        false,
    )?;
    eprintln!(
        "tracer: streaming exec, exit, fork and cgroup events (cgroup2 at {}); Ctrl-C to stop",
        cgroups.mount().display()
    );

    let mut interrupt = signal(SignalKind::interrupt()).context("installing the SIGINT handler")?;
    let mut terminate =
        signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
    let clock = BootClock::new();
    let mut out = BufWriter::with_capacity(64 * 1024, io::stdout().lock());
    let mut counts = Counts::default();
    let mut batch = Vec::with_capacity(256);
    let mut closed = false;
    if output == Output::Short {
        closed = writeln!(out, "{TEXT_HEADER}")
            .and_then(|()| out.flush())
            .is_err();
    }
    while !closed {
        tokio::select! {
            _ = interrupt.recv() => break,
            _ = terminate.recv() => break,
            r = probe.read(&mut batch) => r?,
        }
        closed = emit(
            &mut out,
            &mut batch,
            filter,
            &mut cgroups,
            &clock,
            output,
            &mut counts,
        )
        .is_err();
    }
    if !closed {
        probe.drain(&mut batch);
        let _ = emit(
            &mut out,
            &mut batch,
            filter,
            &mut cgroups,
            &clock,
            output,
            &mut counts,
        );
    }
    let stats = probe.kernel_stats();
    eprintln!(
        "tracer: {} events seen, {} shown, {} dropped (ring buffer full), {} lost to kernel read errors, {} malformed",
        counts.seen,
        counts.shown,
        stats.drops,
        stats.errors,
        probe.malformed()
    );
    Ok(())
}

/// Prints the daemon's stream until Ctrl-C or a closed stdout; events at or before
/// `after_ns` were already shown (from the journal).
async fn from_daemon(
    mut lines: tokio::io::Lines<tokio::io::BufReader<tokio::net::unix::OwnedReadHalf>>,
    output: Output,
    after_ns: Option<u64>,
    header: bool,
) -> anyhow::Result<()> {
    let mut interrupt = signal(SignalKind::interrupt())?;
    let mut terminate = signal(SignalKind::terminate())?;
    let clock = BootClock::new();
    let mut out = BufWriter::with_capacity(64 * 1024, io::stdout().lock());
    let (mut shown, mut missed) = (0u64, 0u64);
    if header
        && output == Output::Short
        && writeln!(out, "{TEXT_HEADER}")
            .and_then(|()| out.flush())
            .is_err()
    {
        return Ok(());
    }
    loop {
        let line = tokio::select! {
            _ = interrupt.recv() => break,
            _ = terminate.recv() => break,
            l = lines.next_line() => l?,
        };
        let Some(line) = line else {
            eprintln!("tracer: the daemon closed the stream");
            break;
        };
        let v: serde_json::Value = serde_json::from_str(&line)?;
        if v["kind"] == "missed" {
            let n = v["count"].as_u64().unwrap_or(0);
            missed += n;
            eprintln!("tracer: {n} events missed: this client read too slowly");
            continue;
        }
        if v["ok"] == false {
            anyhow::bail!("the daemon refused: {}", v["error"]);
        }
        let ev = match crate::replay::parse_line(&line, 0) {
            Ok(ev) => ev,
            Err(e) => {
                tracing::warn!("a line from the daemon did not parse: {e}");
                continue;
            }
        };
        if after_ns.is_some_and(|a| ev.ts_ns <= a) {
            continue;
        }
        shown += 1;
        let written = if output == Output::Json {
            writeln!(out, "{line}")
        } else {
            show(&mut out, &ev, &clock, v["cgroup"].as_str(), output)
        };
        if written.and_then(|()| out.flush()).is_err() {
            break;
        }
    }
    let _ = out.flush();
    eprintln!("tracer: {shown} events shown, {missed} missed");
    Ok(())
}

/// Prints a recorded boot from the journal, with the same filters and output (only the
/// last `tail` events when given). Returns the last event's time.
fn replay_boot(
    args: &EventsArgs,
    filter: &Filter,
    which: &str,
    output: Output,
    tail: Option<usize>,
) -> anyhow::Result<Option<u64>> {
    let root = args.state_dir.join("journal");
    let boot = crate::journal::find_boot(&root, which)?;
    let clock = BootClock::new();
    let mut cgroups = Resolver::default();
    let mut out = BufWriter::with_capacity(64 * 1024, io::stdout().lock());
    if output == Output::Short {
        writeln!(out, "{TEXT_HEADER}")?;
    }
    // Wall-clock times map onto this boot's clock through its own start: the current
    // boot's from the kernel, an older one's from when its journal was started.
    let boot_clock = if boot.boot_id == crate::journal::current_boot_id().unwrap_or_default() {
        clock
    } else {
        BootClock::from_wall_at(
            std::time::UNIX_EPOCH + std::time::Duration::from_nanos(boot.created_ns),
            crate::journal::first_event_ns(&boot).unwrap_or(0),
        )
    };
    let when = |s: &Option<String>| -> anyhow::Result<Option<u64>> {
        s.as_deref()
            .map(|t| {
                crate::clock::parse_when(t, &boot_clock)
                    .with_context(|| format!("{t:?} is not a time: try \"2026-11-01 10:00\", \"today\", \"-5min\", \"@1795000000\" or seconds since boot"))
            })
            .transpose()
    };
    let since = when(&args.since)?;
    let until = when(&args.until)?;
    let mut broken = false;
    let mut last = None;
    let mut kept: std::collections::VecDeque<Enriched> = Default::default();
    let damage = crate::journal::read_boot(&boot, |item| {
        if broken {
            return;
        }
        let ev = match item {
            crate::journal::Item::Event(ev) => ev,
            crate::journal::Item::Cgroup { id, path } => {
                cgroups.insert(id, &path);
                return;
            }
            crate::journal::Item::Process { .. }
            | crate::journal::Item::Systemd(_)
            | crate::journal::Item::SystemdChange(_) => return,
        };
        let in_time = since.is_none_or(|s| ev.ts_ns >= s) && until.is_none_or(|u| ev.ts_ns < u);
        last = Some(last.unwrap_or(0).max(ev.ts_ns));
        let e = cgroups.enrich(ev);
        if !in_time || !filter.matches(&e) {
            return;
        }
        match tail {
            Some(n) => {
                if kept.len() == n {
                    kept.pop_front();
                }
                if n > 0 {
                    kept.push_back(e);
                }
            }
            None => {
                let r = show(&mut out, &e.ev, &boot_clock, e.cgroup.as_deref(), output);
                broken = r.is_err();
            }
        }
    })?;
    for e in &kept {
        if show(&mut out, &e.ev, &boot_clock, e.cgroup.as_deref(), output).is_err() {
            break;
        }
    }
    let _ = out.flush();
    for d in &damage {
        eprintln!("tracer: journal damage skipped: {d}");
    }
    Ok(last)
}

#[derive(Default)]
struct Counts {
    seen: u64,
    shown: u64,
}

/// Writes out a batch; an error means stdout is gone (e.g. `| head` exited).
fn emit(
    out: &mut impl Write,
    batch: &mut Vec<Event>,
    filter: &Filter,
    cgroups: &mut Resolver,
    clock: &BootClock,
    output: Output,
    counts: &mut Counts,
) -> io::Result<()> {
    for ev in batch.drain(..) {
        counts.seen += 1;
        let e = cgroups.enrich(ev);
        if filter.matches(&e) {
            counts.shown += 1;
            show(out, &e.ev, clock, e.cgroup.as_deref(), output)?;
        }
    }
    out.flush()
}

/// Writes one event in the chosen format; in text to a terminal that wants colour
/// ([`super::colour`]), a failure (a failed exec or access check, an exit that was not 0,
/// an OOM kill) is painted.
fn show(
    out: &mut impl Write,
    ev: &Event,
    clock: &BootClock,
    cgroup: Option<&str>,
    output: Output,
) -> io::Result<()> {
    let failure = ev.is_failure() || matches!(ev.kind, EventKind::OomKill { .. });
    if !failure || output == Output::Json || !paint() {
        return write_event(out, ev, clock, cgroup, output);
    }
    let mut line = Vec::new();
    write_event(&mut line, ev, clock, cgroup, output)?;
    let line = String::from_utf8_lossy(&line);
    writeln!(out, "{}", super::colour::fail(line.trim_end_matches('\n')))
}

/// Whether stdout wants colour, asked once.
fn paint() -> bool {
    static PAINT: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *PAINT.get_or_init(super::colour::stdout)
}
