//! `tracer events`: the live event stream, in columns or as JSON lines.

use std::io::{self, BufWriter, Write};

use anyhow::Context as _;
use clap::{Args, ValueEnum};
use serde::Serialize;
use tokio::signal::unix::{SignalKind, signal};

use crate::{
    cgroup::CgroupPaths,
    clock::{BootClock, local_time_of_day, rfc3339_utc},
    event::{Event, EventKind},
    probe::{Probe, ProbeOptions},
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

/// How `tracer events` prints.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Output {
    Short,
    Json,
    Cat,
}

/// Event kinds `--kind` selects; `cgroup` is all three cgroup kinds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum, Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum KindFilter {
    Exec,
    ExecFailed,
    Exit,
    Fork,
    Cgroup,
    CgroupMkdir,
    CgroupRmdir,
    CgroupAttach,
    Signal,
    OomKill,
}

impl KindFilter {
    fn matches(self, kind: &EventKind) -> bool {
        match self {
            Self::Cgroup => matches!(
                kind,
                EventKind::CgroupMkdir { .. }
                    | EventKind::CgroupRmdir { .. }
                    | EventKind::CgroupAttach { .. }
            ),
            _ => self
                .to_possible_value()
                .is_some_and(|v| v.get_name() == kind.name()),
        }
    }
}

/// What `tracer events` shows.
#[derive(Clone, Debug, Default, Serialize, serde::Deserialize)]
#[serde(default)]
pub struct Filter {
    /// Unit name patterns (globs); empty: any.
    pub units: Vec<String>,
    pub pids: Vec<u32>,
    pub comms: Vec<String>,
    pub cgroup_prefix: Option<String>,
    pub kinds: Vec<KindFilter>,
    pub failed_only: bool,
}

impl Filter {
    pub fn from_args(args: &EventsArgs) -> Self {
        Self {
            units: args.units.clone(),
            pids: args.pids.clone(),
            comms: args.comms.clone(),
            cgroup_prefix: args.cgroup.clone(),
            kinds: args.kinds.clone(),
            failed_only: args.failed,
        }
    }

    /// Whether to show `ev`, whose task's cgroup resolved to `cgroup` (None: unknown).
    pub fn matches(&self, ev: &Event, cgroup: Option<&str>) -> bool {
        if !self.units.is_empty() {
            let path = match &ev.kind {
                EventKind::CgroupMkdir { cgroup }
                | EventKind::CgroupRmdir { cgroup }
                | EventKind::CgroupAttach { cgroup, .. } => Some(cgroup.path.as_str()),
                _ => cgroup,
            };
            let unit = path.and_then(crate::unit::unit_of_cgroup);
            if !unit.is_some_and(|u| self.units.iter().any(|p| unit_matches(p, &u.name))) {
                return false;
            }
        }
        if !self.pids.is_empty()
            && !self
                .pids
                .iter()
                .any(|&p| p == ev.tgid || p == ev.pid || p == ev.subject_pid())
        {
            return false;
        }
        if !self.comms.is_empty() && !self.comms.contains(&ev.comm) {
            return false;
        }
        if let Some(prefix) = &self.cgroup_prefix {
            let path = match &ev.kind {
                EventKind::CgroupMkdir { cgroup }
                | EventKind::CgroupRmdir { cgroup }
                | EventKind::CgroupAttach { cgroup, .. } => Some(cgroup.path.as_str()),
                _ => cgroup,
            };
            if !path.is_some_and(|p| p.starts_with(prefix.as_str())) {
                return false;
            }
        }
        if !self.kinds.is_empty() && !self.kinds.iter().any(|k| k.matches(&ev.kind)) {
            return false;
        }
        !self.failed_only || ev.is_failure()
    }
}

/// journalctl's -u: a glob over unit names; a pattern without a type suffix means a
/// service (`mylog` is `mylog.service`).
pub fn unit_matches(pattern: &str, unit: &str) -> bool {
    if glob(pattern, unit) {
        return true;
    }
    !pattern.contains('.') && glob(&format!("{pattern}.service"), unit)
}

/// `*` and `?` globbing.
fn glob(pattern: &str, text: &str) -> bool {
    let (p, t): (Vec<char>, Vec<char>) = (pattern.chars().collect(), text.chars().collect());
    let (mut pi, mut ti, mut star, mut mark) = (0, 0, None, 0);
    while ti < t.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == t[ti]) {
            pi += 1;
            ti += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some(pi);
            mark = ti;
            pi += 1;
        } else if let Some(s) = star {
            pi = s + 1;
            mark += 1;
            ti = mark;
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&c| c == '*')
}

/// The column header of the text output.
pub const TEXT_HEADER: &str = "TIME            KIND          PID     PPID    COMM             CGROUP                           DETAIL";

/// Writes one line of text output.
pub fn write_text(
    out: &mut impl Write,
    ev: &Event,
    clock: &BootClock,
    cgroup: Option<&str>,
) -> io::Result<()> {
    write_short(out, ev, clock, cgroup, false)
}

/// Writes one event as `-o short` (columns) or `-o cat` (the detail alone).
fn write_short(
    out: &mut impl Write,
    ev: &Event,
    clock: &BootClock,
    cgroup: Option<&str>,
    cat: bool,
) -> io::Result<()> {
    let time = local_time_of_day(clock.wall(ev.ts_ns));
    let unknown;
    let cgroup = match cgroup {
        Some(c) => c,
        None => {
            unknown = format!("cgroup:{}", ev.cgroup_id);
            &unknown
        }
    };
    let (pid, ppid, cgroup, detail): (u32, Option<u32>, &str, String) = match &ev.kind {
        EventKind::Exec {
            ppid,
            filename,
            argv,
            filename_truncated,
            argv_truncated,
            ..
        } => {
            let mut d = filename.clone();
            if *filename_truncated {
                d.push('…');
            }
            if !argv.is_empty() {
                d.push_str("  ");
                d.push_str(&shell_words(argv));
                if *argv_truncated {
                    d.push('…');
                }
            }
            (ev.tgid, Some(*ppid), cgroup, d)
        }
        EventKind::ExecFailed {
            ppid,
            errno,
            filename,
            ..
        } => (ev.tgid, Some(*ppid), cgroup, format!("{errno}  {filename}")),
        EventKind::Exit { ppid, status } => (ev.tgid, Some(*ppid), cgroup, status.to_string()),
        EventKind::Fork { child_pid } => (*child_pid, Some(ev.tgid), cgroup, "new process".into()),
        EventKind::CgroupMkdir { cgroup: c } => {
            (ev.tgid, None, c.path.as_str(), format!("mkdir id={}", c.id))
        }
        EventKind::CgroupRmdir { cgroup: c } => {
            (ev.tgid, None, c.path.as_str(), format!("rmdir id={}", c.id))
        }
        EventKind::CgroupAttach {
            cgroup: c,
            target_pid,
        } => (
            ev.tgid,
            None,
            c.path.as_str(),
            format!("attach pid {target_pid} id={}", c.id),
        ),
        EventKind::Signal {
            target_pid, signal, ..
        } => (
            *target_pid,
            None,
            cgroup,
            format!("{signal} sent by {} ({})", ev.tgid, ev.comm),
        ),
        EventKind::OomKill { victim_pid } => (
            *victim_pid,
            None,
            cgroup,
            "chosen by the OOM killer".to_owned(),
        ),
    };
    if cat {
        return writeln!(out, "{detail}");
    }
    let ppid = ppid.map_or_else(|| "-".to_owned(), |p| p.to_string());
    writeln!(
        out,
        "{time:<15} {kind:<13} {pid:<7} {ppid:<7} {comm:<16} {cgroup:<32} {detail}",
        kind = ev.kind_name(),
        comm = ev.comm,
    )
}

/// Writes one event in the chosen format.
pub fn write_event(
    out: &mut impl Write,
    ev: &Event,
    clock: &BootClock,
    cgroup: Option<&str>,
    output: Output,
) -> io::Result<()> {
    match output {
        Output::Json => write_json(out, ev, clock, cgroup),
        Output::Short => write_short(out, ev, clock, cgroup, false),
        Output::Cat => write_short(out, ev, clock, cgroup, true),
    }
}

/// Arguments joined with spaces, quoted where a shell would need it.
fn shell_words(argv: &[String]) -> String {
    let quote = |a: &String| {
        if !a.is_empty()
            && a.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_./=:,@%+".contains(&b))
        {
            a.clone()
        } else {
            format!("'{}'", a.replace('\'', r"'\''"))
        }
    };
    argv.iter().map(quote).collect::<Vec<_>>().join(" ")
}

/// One JSON line: the event's fields plus its wall-clock time and resolved cgroup path.
#[derive(Serialize)]
struct JsonLine<'a> {
    time: String,
    #[serde(flatten)]
    event: &'a Event,
    cgroup: Option<&'a str>,
}

/// Writes one event as a JSON line.
pub fn write_json(
    out: &mut impl Write,
    ev: &Event,
    clock: &BootClock,
    cgroup: Option<&str>,
) -> io::Result<()> {
    let line = JsonLine {
        time: rfc3339_utc(clock.wall(ev.ts_ns)),
        event: ev,
        cgroup,
    };
    serde_json::to_writer(&mut *out, &line)?;
    out.write_all(b"\n")
}

/// Runs the live stream until Ctrl-C, SIGTERM or a closed stdout: from the daemon when
/// one runs, else standalone; or replays a recorded boot.
pub async fn run(args: EventsArgs) -> anyhow::Result<()> {
    let filter = Filter::from_args(&args);
    let output = if args.json { Output::Json } else { args.output };
    let tail = args.lines.or(args.follow.then_some(10));
    if args.boot.is_some() || tail.is_some() {
        let boot = args.boot.as_deref().unwrap_or("0");
        if args.follow && boot != "0" {
            anyhow::bail!("-f follows the current boot: leave out -b, or use -b 0");
        }
        // Subscribe before reading the journal's tail, so nothing falls in between.
        let live = if args.follow {
            let Some(live) = crate::daemon::client::events(&filter).await? else {
                anyhow::bail!(
                    "-f follows the daemon's stream and journal, and no daemon is running: start it (systemctl start tracer), or run `tracer events` to trace here"
                );
            };
            Some(live)
        } else {
            None
        };
        let last = replay_boot(&args, &filter, boot, output, tail)?;
        return match live {
            Some(lines) => from_daemon(lines, output, last, false).await,
            None => Ok(()),
        };
    }
    if args.since.is_some() || args.until.is_some() {
        anyhow::bail!(
            "--since and --until select from a recorded boot: add -b (the current boot) or -b ID"
        );
    }
    if !args.standalone {
        if let Some(lines) = crate::daemon::client::events(&filter).await? {
            eprintln!(
                "tracer: streaming from the daemon ({}); Ctrl-C to stop",
                crate::daemon::client::socket_path().display()
            );
            return from_daemon(lines, output, None, true).await;
        }
        eprintln!("tracer: no daemon is running: tracing standalone");
    }
    let mut cgroups = CgroupPaths::scan_system().context("reading the cgroup2 tree")?;
    let mut probe = Probe::load(&ProbeOptions {
        ring_size: args.ring_size,
        ..ProbeOptions::default()
    })?;
    // Cgroups made while the programs were being attached.
    cgroups.rescan().context("reading the cgroup2 tree")?;
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
            &filter,
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
            &filter,
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
            write_event(&mut out, &ev, &clock, v["cgroup"].as_str(), output)
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
    let mut cgroups = CgroupPaths::default();
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
    let mut kept: std::collections::VecDeque<(Event, Option<String>)> = Default::default();
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
            crate::journal::Item::Process(_) | crate::journal::Item::Systemd(_) => return,
        };
        let cgroup = cgroups.path(ev.cgroup_id).map(str::to_owned);
        let in_time = since.is_none_or(|s| ev.ts_ns >= s) && until.is_none_or(|u| ev.ts_ns < u);
        last = Some(last.unwrap_or(0).max(ev.ts_ns));
        cgroups.observe(&ev);
        if !in_time || !filter.matches(&ev, cgroup.as_deref()) {
            return;
        }
        match tail {
            Some(n) => {
                if kept.len() == n {
                    kept.pop_front();
                }
                if n > 0 {
                    kept.push_back((ev, cgroup));
                }
            }
            None => {
                let r = write_event(&mut out, &ev, &boot_clock, cgroup.as_deref(), output);
                broken = r.is_err();
            }
        }
    })?;
    for (ev, cgroup) in &kept {
        if write_event(&mut out, ev, &boot_clock, cgroup.as_deref(), output).is_err() {
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
    cgroups: &mut CgroupPaths,
    clock: &BootClock,
    output: Output,
    counts: &mut Counts,
) -> io::Result<()> {
    for ev in batch.drain(..) {
        counts.seen += 1;
        let cgroup = cgroups.path(ev.cgroup_id);
        if filter.matches(&ev, cgroup) {
            counts.shown += 1;
            write_event(out, &ev, clock, cgroup, output)?;
        }
        cgroups.observe(&ev);
    }
    out.flush()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{CgroupRef, Errno, WaitStatus};

    fn text_line(ev: &Event, clock: &BootClock, cgroup: Option<&str>) -> String {
        let mut out = Vec::new();
        write_text(&mut out, ev, clock, cgroup).unwrap();
        String::from_utf8(out)
            .unwrap()
            .trim_end_matches('\n')
            .to_owned()
    }

    fn json_line(ev: &Event, clock: &BootClock, cgroup: Option<&str>) -> String {
        let mut out = Vec::new();
        write_json(&mut out, ev, clock, cgroup).unwrap();
        let line = String::from_utf8(out).unwrap();
        assert_eq!(line.matches('\n').count(), 1, "one line: {line}");
        line
    }

    fn ev(kind: EventKind) -> Event {
        Event {
            ts_ns: 1_000_000_000,
            pid: 100,
            tgid: 100,
            cgroup_id: 5,
            comm: "mylog.sh".into(),
            kind,
        }
    }

    fn exec() -> Event {
        ev(EventKind::Exec {
            ppid: 1,
            uid: 0,
            filename: "/usr/local/bin/mylog.sh".into(),
            argv: vec![
                "/bin/sh".into(),
                "/usr/local/bin/mylog.sh".into(),
                "a b".into(),
            ],
            filename_truncated: false,
            argv_truncated: false,
        })
    }

    fn failed_exec() -> Event {
        ev(EventKind::ExecFailed {
            ppid: 1,
            uid: 0,
            errno: Errno(libc::EACCES),
            filename: "/usr/local/bin/mylog.sh".into(),
            filename_truncated: false,
        })
    }

    fn exit(status: u32) -> Event {
        ev(EventKind::Exit {
            ppid: 1,
            status: WaitStatus(status),
        })
    }

    #[test]
    fn text_lines_say_what_happened() {
        let clock = BootClock::new();
        let line = text_line(&exec(), &clock, Some("/system.slice/mylog.service"));
        assert!(line.contains(" exec "), "{line}");
        assert!(line.contains("/system.slice/mylog.service"), "{line}");
        assert!(
            line.ends_with("/usr/local/bin/mylog.sh  /bin/sh /usr/local/bin/mylog.sh 'a b'"),
            "{line}"
        );
        let line = text_line(&failed_exec(), &clock, None);
        assert!(
            line.ends_with("EACCES (Permission denied)  /usr/local/bin/mylog.sh"),
            "{line}"
        );
        assert!(line.contains("cgroup:5"), "{line}");
        assert!(text_line(&exit(3 << 8), &clock, None).ends_with("exit 3"));
        assert!(text_line(&exit(9), &clock, None).ends_with("killed by SIGKILL"));
        assert!(
            text_line(&exit(11 | 0x80), &clock, None).ends_with("killed by SIGSEGV (core dumped)")
        );
    }

    #[test]
    fn json_lines_carry_time_and_cgroup() {
        let clock = BootClock::new();
        let v: serde_json::Value =
            serde_json::from_str(&json_line(&failed_exec(), &clock, Some("/a.slice"))).unwrap();
        assert_eq!(v["kind"], "exec-failed");
        assert_eq!(v["error"], "EACCES");
        assert_eq!(v["cgroup"], "/a.slice");
        assert_eq!(v["pid"], 100);
        assert!(v["time"].as_str().unwrap().ends_with('Z'));
    }

    #[test]
    fn unit_patterns_glob_like_journalctl() {
        assert!(unit_matches("mylog", "mylog.service"));
        assert!(unit_matches("mylog.service", "mylog.service"));
        assert!(!unit_matches("mylog", "mylog.socket"));
        assert!(unit_matches("getty@*", "getty@tty1.service"));
        assert!(unit_matches("*.socket", "dbus.socket"));
        assert!(unit_matches("sys?emd-*", "systemd-udevd.service"));
        assert!(!unit_matches("nginx", "mylog.service"));
        let f = Filter {
            units: vec!["mylog".into()],
            ..Filter::default()
        };
        assert!(f.matches(&exec(), Some("/system.slice/mylog.service")));
        assert!(!f.matches(&exec(), Some("/system.slice/other.service")));
        assert!(!f.matches(&exec(), None));
    }

    #[test]
    fn cat_output_is_the_detail_alone() {
        let mut out = Vec::new();
        write_event(
            &mut out,
            &failed_exec(),
            &BootClock::new(),
            None,
            Output::Cat,
        )
        .unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "EACCES (Permission denied)  /usr/local/bin/mylog.sh\n"
        );
    }

    #[test]
    fn filters_select_what_was_asked() {
        let all = Filter::default();
        assert!(all.matches(&exec(), None));

        let failed = Filter {
            failed_only: true,
            ..Filter::default()
        };
        assert!(!failed.matches(&exec(), None));
        assert!(failed.matches(&failed_exec(), None));
        assert!(!failed.matches(&exit(0), None));
        assert!(failed.matches(&exit(1 << 8), None));
        assert!(failed.matches(&exit(9), None));

        let kinds = Filter {
            kinds: vec![KindFilter::ExecFailed, KindFilter::Cgroup],
            ..Filter::default()
        };
        assert!(!kinds.matches(&exec(), None));
        assert!(kinds.matches(&failed_exec(), None));
        let mkdir = ev(EventKind::CgroupMkdir {
            cgroup: CgroupRef {
                id: 9,
                level: 1,
                path: "/system.slice/x.service".into(),
                path_truncated: false,
            },
        });
        assert!(kinds.matches(&mkdir, None));

        let pid = Filter {
            pids: vec![200],
            ..Filter::default()
        };
        assert!(!pid.matches(&exec(), None));
        assert!(pid.matches(&ev(EventKind::Fork { child_pid: 200 }), None));

        let cg = Filter {
            cgroup_prefix: Some("/system.slice/".into()),
            ..Filter::default()
        };
        assert!(cg.matches(&exec(), Some("/system.slice/mylog.service")));
        assert!(!cg.matches(&exec(), Some("/user.slice")));
        assert!(!cg.matches(&exec(), None));
        assert!(cg.matches(&mkdir, None));

        let comm = Filter {
            comms: vec!["other".into()],
            ..Filter::default()
        };
        assert!(!comm.matches(&exec(), None));
    }
}
