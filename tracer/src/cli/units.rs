//! `tracer units`, `tracer why UNIT`, `tracer restarts [UNIT]`: the unit model's account,
//! from a recording (`--events FILE`) or traced live (until Ctrl-C or `--duration`).

use std::{
    io::{self, Write},
    path::PathBuf,
    time::Duration,
};

use anyhow::{Context as _, bail};
use clap::Args;
use serde::Serialize;
use serde_json::json;
use tokio::signal::unix::{SignalKind, signal};

use crate::{
    cgroup::CgroupPaths,
    event::Event,
    model::{
        Model, ModelConfig, Run, StartKind, UnitHistory,
        cause::{Cause, ExecEvidence},
        facts::{Facts, LiveFacts},
    },
    probe::{Probe, ProbeOptions},
    replay,
    systemd::{self, Snapshot, SystemdUnit},
};

/// How long a report waits for systemd's facts over D-Bus before going on without them.
const SYSTEMD_WAIT: Duration = Duration::from_secs(10);

/// Where the events come from.
#[derive(Debug, Args)]
pub struct Source {
    /// Replay a recording (the JSON lines of `tracer events --json`) instead of tracing.
    #[arg(long, value_name = "FILE")]
    pub events: Option<PathBuf>,
    /// Trace live for this many seconds, then report (default: until Ctrl-C).
    #[arg(long, value_name = "SECONDS")]
    pub duration: Option<f64>,
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
    /// Failed runs within --crash-loop-window seconds that make a crash loop.
    #[arg(long, default_value_t = 3)]
    pub crash_loop_runs: usize,
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

/// Which units `tracer units` lists.
#[derive(Clone, Debug, Default, serde::Deserialize, Serialize)]
#[serde(default)]
pub struct UnitSelect {
    pub types: Vec<String>,
    pub states: Vec<String>,
}

impl UnitSelect {
    fn matches(&self, h: &UnitHistory) -> bool {
        let kind = serde_json::to_value(h.unit.kind)
            .ok()
            .and_then(|v| v.as_str().map(str::to_owned))
            .unwrap_or_default();
        (self.types.is_empty() || self.types.contains(&kind))
            && (self.states.is_empty() || self.states.iter().any(|s| s == h.state()))
    }
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

/// A report the daemon makes from its own model.
#[derive(Clone, Debug, serde::Deserialize, Serialize)]
#[serde(tag = "op", rename_all = "kebab-case")]
pub enum Query {
    Units {
        json: bool,
        #[serde(default)]
        select: UnitSelect,
    },
    Why {
        unit: String,
        json: bool,
    },
    Restarts {
        unit: Option<String>,
        json: bool,
    },
}

impl Query {
    /// What systemd says that the report shows next to the kernel's account (None when
    /// systemd cannot be asked).
    pub async fn systemd_facts(&self) -> Option<Snapshot> {
        match self {
            Query::Units { .. } => systemd::try_snapshot(SYSTEMD_WAIT).await,
            Query::Why { unit, .. } => unit_facts(unit).await,
            Query::Restarts { .. } => None,
        }
    }
}

/// systemd's facts of one unit (`mylog` is mylog.service), as a snapshot of it alone.
async fn unit_facts(unit: &str) -> Option<Snapshot> {
    systemd::try_unit(&crate::unit::full_unit_name(unit), SYSTEMD_WAIT)
        .await
        .map(|u| Snapshot {
            units: vec![u],
            ..Snapshot::default()
        })
}

/// A query with systemd's facts, asked before the model answers.
pub struct Question {
    pub query: Query,
    pub systemd: Option<Snapshot>,
}

impl Question {
    pub async fn ask(query: Query) -> Self {
        let systemd = query.systemd_facts().await;
        Self { query, systemd }
    }

    /// Answers the query from a model: the report's bytes, or the error text.
    pub fn answer<F: Facts>(&self, model: &Model<F>) -> Result<Vec<u8>, String> {
        let mut out = Vec::new();
        let sd = self.systemd.as_ref();
        let r = match &self.query {
            Query::Units { json, select } => write_units(&mut out, model, select, *json, sd),
            Query::Why { unit, json } => {
                write_why(&mut out, model, unit, *json, "since the daemon started", sd)
            }
            Query::Restarts { unit, json } => {
                write_restarts(&mut out, model, unit.as_deref(), *json)
            }
        };
        r.map(|()| out).map_err(|e| format!("{e:#}"))
    }
}

/// Asks the running daemon, when the source is live and one runs.
async fn ask_daemon(src: &Source, query: Query) -> anyhow::Result<Option<Result<Vec<u8>, String>>> {
    if src.events.is_some() || src.duration.is_some() {
        return Ok(None);
    }
    crate::daemon::client::query(&query).await
}

fn print_reply(reply: Result<Vec<u8>, String>) -> anyhow::Result<()> {
    match reply {
        Ok(bytes) => {
            io::stdout().lock().write_all(&bytes)?;
            Ok(())
        }
        Err(e) => bail!("{e}"),
    }
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
    for ev in &events {
        model.apply(ev);
    }
    Ok(events.first().map(|e| e.ts_ns))
}

/// Builds the model from the source.
async fn model(src: &Source) -> anyhow::Result<Model<LiveFacts>> {
    let mut model = Model::new(
        LiveFacts,
        ModelConfig {
            crash_loop_runs: src.crash_loop_runs,
            crash_loop_window_ns: (src.crash_loop_window * 1e9) as u64,
            ..ModelConfig::default()
        },
    );
    if let Some(path) = &src.events {
        apply_recording(path, &mut model)?;
        return Ok(model);
    }
    // The start-up snapshot comes first, then the programs are attached; what the
    // snapshot found is then known to the events that follow.
    let cgroups = CgroupPaths::scan_system().context("reading the cgroup2 tree")?;
    let running = crate::procfs::snapshot();
    let mut probe = Probe::load(&ProbeOptions::default())?;
    for (id, path) in cgroups.iter() {
        model.know_cgroup(id, path);
    }
    for p in &running {
        model.found_at_start(p);
    }
    tracing::info!(
        processes = running.len(),
        cgroups = cgroups.len(),
        "found at start"
    );
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
            model.apply(&ev);
        }
    }
    probe.drain(&mut batch);
    for ev in batch.drain(..) {
        model.apply(&ev);
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

fn secs(ns: u64) -> String {
    format!("{:.3}s", ns as f64 / 1e9)
}

fn last_exit(h: &UnitHistory) -> String {
    h.runs
        .iter()
        .rev()
        .find_map(|r| r.outcome.as_ref())
        .map_or_else(|| "-".to_owned(), |o| o.status.to_string())
}

fn last_cause(h: &UnitHistory) -> String {
    h.last_failure()
        .and_then(|r| r.outcome.as_ref())
        .and_then(|o| o.cause.as_ref())
        .map_or_else(|| "-".to_owned(), Cause::summary)
}

pub async fn units(args: UnitsArgs) -> anyhow::Result<()> {
    let mut select = UnitSelect {
        types: args.types.clone(),
        states: args.states.clone(),
    };
    if args.failed {
        select.states.push("failed".into());
    }
    let query = Query::Units {
        json: args.source.json,
        select: select.clone(),
    };
    if let Some(reply) = ask_daemon(&args.source, query).await? {
        return print_reply(reply);
    }
    let model = model(&args.source).await?;
    let sd = live_systemd(&args.source, systemd::try_snapshot(SYSTEMD_WAIT)).await;
    write_units(
        &mut io::stdout().lock(),
        &model,
        &select,
        args.source.json,
        sd.as_ref(),
    )
}

/// systemd's facts when they describe what the report is about: live tracing, not a
/// recording (whose units may be another machine's).
async fn live_systemd(
    src: &Source,
    ask: impl Future<Output = Option<Snapshot>>,
) -> Option<Snapshot> {
    if src.events.is_some() {
        None
    } else {
        ask.await
    }
}

/// The `tracer units` report of a model.
pub fn write_units<F: Facts>(
    out: &mut impl Write,
    model: &Model<F>,
    select: &UnitSelect,
    json: bool,
    sd: Option<&Snapshot>,
) -> anyhow::Result<()> {
    let sd_unit = |name: &str| sd.and_then(|s| s.unit(name));
    if json {
        let units: Vec<_> = model
            .units()
            .filter(|h| select.matches(h))
            .map(|h| {
                json!({
                    "unit": h.unit.name,
                    "kind": h.unit.kind,
                    "user": h.unit.user,
                    "runs": h.runs.len(),
                    "restarts": h.restarts(),
                    "state": h.state(),
                    "crash_loop": h.crash_loop,
                    "last_exit": h.runs.iter().rev().find_map(|r| r.outcome.as_ref()).map(|o| o.status.to_string()),
                    "last_cause": h.last_failure().and_then(|r| r.outcome.as_ref()).and_then(|o| o.cause.clone()),
                    "systemd": sd_unit(&h.unit.name),
                })
            })
            .collect();
        writeln!(out, "{}", serde_json::to_string_pretty(&units)?)?;
        return Ok(());
    }
    // systemd's own view, when it could be asked: its state and the unit file's.
    let systemd_cols = |name: &str| match sd.map(|s| s.unit(name)) {
        None => String::new(),
        Some(None) => format!(" {:<18} {:<9}", "-", "-"),
        Some(Some(u)) => format!(
            " {:<18} {:<9}",
            format!("{}/{}", u.active_state, u.sub_state),
            if u.unit_file_state.is_empty() {
                "-"
            } else {
                u.unit_file_state.as_str()
            }
        ),
    };
    writeln!(
        out,
        "{:<40} {:>4} {:>8} {:<9}{} {:<28} CAUSE",
        "UNIT",
        "RUNS",
        "RESTARTS",
        "STATE",
        if sd.is_some() {
            format!(" {:<18} {:<9}", "SYSTEMD", "FILE")
        } else {
            String::new()
        },
        "LAST EXIT"
    )?;
    for h in model.units().filter(|h| select.matches(h)) {
        let mut cause = last_cause(h);
        if h.crash_loop {
            cause.push_str(" [crash loop]");
        }
        writeln!(
            out,
            "{:<40} {:>4} {:>8} {:<9}{} {:<28} {cause}",
            h.unit.display_name(),
            h.runs.len(),
            h.restarts(),
            h.state(),
            systemd_cols(&h.unit.name),
            last_exit(h),
        )?;
    }
    Ok(())
}

/// The explanation `tracer why` gives.
#[derive(Serialize)]
struct Why<'a> {
    unit: &'a str,
    state: &'static str,
    runs: usize,
    restarts: usize,
    crash_loop: bool,
    /// The sentence.
    explanation: String,
    hint: Option<String>,
    evidence: Vec<String>,
    cause: Option<&'a Cause>,
    /// What systemd says about the unit, when it could be asked.
    systemd: Option<&'a SystemdUnit>,
}

/// `ExecStart=` as written or as systemd parsed it, and the file it is from.
fn exec_start_line(h: &UnitHistory, sd: Option<&SystemdUnit>) -> Option<String> {
    if let Some(file) = &h.file
        && let Some(line) = file.exec_start_lines.first()
    {
        return Some(format!("ExecStart={line} (from {})", file.path));
    }
    let u = sd?;
    let cmd = u.service.as_ref()?.exec_start.first()?;
    let argv = if cmd.argv.is_empty() {
        cmd.path.clone()
    } else {
        cmd.argv.join(" ")
    };
    Some(format!(
        "ExecStart={}{argv} (from {})",
        if cmd.ignore_failure { "-" } else { "" },
        u.fragment_path
    ))
}

/// What systemd says about the unit, in a line or two.
fn systemd_lines(u: &SystemdUnit) -> Vec<String> {
    let mut lines = Vec::new();
    let mut file = if u.fragment_path.is_empty() {
        format!("no unit file (load state {})", u.load_state)
    } else {
        u.fragment_path.clone()
    };
    if !u.unit_file_state.is_empty() {
        file.push_str(&format!(", {}", u.unit_file_state));
    }
    let links = u.enablement_links();
    if !links.is_empty() {
        file.push_str(&format!(" (symlink {})", links.join(", ")));
    }
    lines.push(format!("unit file: {file}"));
    let mut state = format!("systemd says: {} ({})", u.active_state, u.sub_state);
    if let Some(s) = &u.service {
        state.push_str(&format!(
            "; Type={} Restart={} Result={} NRestarts={}",
            s.service_type, s.restart, s.result, s.n_restarts
        ));
        if s.remain_after_exit {
            state.push_str(" RemainAfterExit=yes");
        }
    }
    lines.push(state);
    if let Some(target) = u.part_of() {
        lines.push(format!("started as part of {target}"));
    }
    lines
}

fn why_of<'a>(h: &'a UnitHistory, sd: Option<&'a SystemdUnit>) -> Why<'a> {
    let name = h.unit.name.as_str();
    let mut evidence = Vec::new();
    // The latest run is what `why` explains; an earlier failure is history.
    let failed = h.runs.last().filter(|r| r.failed());
    if failed.is_none()
        && let Some(earlier) = h.last_failure()
        && let Some(c) = earlier.outcome.as_ref().and_then(|o| o.cause.as_ref())
    {
        evidence.push(format!(
            "an earlier run ({}, started at {}) failed: {}",
            earlier.number,
            secs(earlier.started_ns),
            c.summary()
        ));
    }
    let (explanation, hint, cause) = match failed.and_then(|r| r.outcome.as_ref().map(|o| (r, o))) {
        Some((run, outcome)) => {
            let cause = outcome.cause.as_ref();
            evidence.push(format!(
                "run {} started at {}: pid {} ended with {}",
                run.number,
                secs(run.started_ns),
                outcome.pid,
                describe_status(run, outcome.pid, outcome.status)
            ));
            if let Some(Cause::ExecFailed { evidence: how, .. }) = cause {
                evidence.push(
                    match how {
                        ExecEvidence::Execve => "the kernel saw the execve fail with that error",
                        ExecEvidence::SystemdCheck => {
                            "no execve reached the kernel: systemd's own check refused the file; the error is what the file's state implies"
                        }
                    }
                    .to_owned(),
                );
            }
            evidence.extend(exec_start_line(h, sd));
            match cause {
                Some(c) => (c.explain(name), c.hint(), Some(c)),
                None => (format!("{name}: run {} failed", run.number), None, None),
            }
        }
        None => match h.runs.last() {
            None => (
                format!("{name}: never started: no process ever ran in it while tracer watched"),
                None,
                None,
            ),
            Some(run) => (not_failed(h, run, sd), None, None),
        },
    };
    if h.crash_loop {
        let failed_runs = h.runs.iter().filter(|r| r.failed()).count();
        evidence.push(format!(
            "crash loop: {failed_runs} failed runs; systemd stops restarting once StartLimitBurst= starts fall within StartLimitIntervalSec="
        ));
    }
    Why {
        unit: name,
        state: h.state(),
        runs: h.runs.len(),
        restarts: h.restarts(),
        crash_loop: h.crash_loop,
        explanation,
        hint,
        evidence,
        cause,
        systemd: sd,
    }
}

fn describe_status(run: &Run, pid: u32, status: crate::event::WaitStatus) -> String {
    let executed = run.command(pid).and_then(|c| c.program.clone());
    match (status.exit_code(), executed) {
        (Some(code), None) => match crate::model::cause::systemd_exit_status_name(code) {
            Some(name) => format!("exit status {code}/{name} before executing anything"),
            None => status.to_string(),
        },
        (_, Some(program)) => format!("{status} (it was running {program})"),
        (None, None) => status.to_string(),
    }
}

/// What to say about a unit whose last run did not fail.
fn not_failed(h: &UnitHistory, run: &Run, sd: Option<&SystemdUnit>) -> String {
    let name = h.unit.name.as_str();
    let service = sd.and_then(|u| u.service.as_ref());
    let ty = service
        .map(|s| s.service_type.as_str())
        .or_else(|| h.file.as_ref().and_then(|f| f.service_type.as_deref()))
        .unwrap_or("simple");
    let remain = service.map_or_else(
        || h.file.as_ref().is_some_and(|f| f.remain_after_exit),
        |s| s.remain_after_exit,
    );
    match &run.outcome {
        Some(o) => {
            let cmd = run.command(o.pid);
            let program = cmd
                .and_then(|c| c.program.clone())
                .unwrap_or_else(|| "its main process".into());
            let took = cmd
                .and_then(|c| {
                    c.exited_ns
                        .map(|e| e.saturating_sub(c.exec_ns.unwrap_or(c.started_ns)))
                })
                .map_or_else(String::new, |ns| {
                    format!(" after {:.0} ms", ns as f64 / 1e6)
                });
            if o.status.success() && matches!(ty, "simple" | "exec") && !remain {
                format!(
                    "{name}: {program} ran to completion and exited 0{took}; a Type={ty} service whose main process exits becomes inactive — it is not a long-running daemon; if it is meant to run once, use Type=oneshot (with RemainAfterExit=yes to stay active)"
                )
            } else if o.status.success() {
                format!(
                    "{name}: not failed: {program} ran to completion and exited 0{took} (Type={ty})"
                )
            } else {
                format!(
                    "{name}: not failed: {program} ended cleanly ({}){took}, as a stop ends it",
                    o.status
                )
            }
        }
        // Type=forking: ExecStart's process exited 0 and nothing stayed behind.
        None if ty == "forking"
            && run.main_pid.is_none()
            && run.commands.iter().all(|c| c.exited_ns.is_some())
            && let Some(c) = run.commands.iter().find(|c| {
                c.role.as_deref() == Some("ExecStart") && c.status.is_some_and(|s| s.success())
            }) =>
        {
            let program = c.program.as_deref().unwrap_or("ExecStart's process");
            let took = c
                .exited_ns
                .map(|e| e.saturating_sub(c.exec_ns.unwrap_or(c.started_ns)))
                .map_or_else(String::new, |ns| {
                    format!(" after {:.0} ms", ns as f64 / 1e6)
                });
            format!(
                "{name}: {program} exited 0{took} and left no process behind; a Type=forking service is expected to start a daemon that keeps running after ExecStart's process exits — with nothing left, it becomes inactive; if the program stays in the foreground use Type=simple (or exec), if it is meant to run once use Type=oneshot"
            )
        }
        None if run.is_open() && run.main_pid.is_none() => {
            let now: Vec<String> = run
                .commands
                .iter()
                .filter(|c| c.exited_ns.is_none())
                .filter_map(|c| c.program.clone())
                .collect();
            format!(
                "{name}: still activating since {}{}",
                secs(run.started_ns),
                if now.is_empty() {
                    String::new()
                } else {
                    format!(", running {}", now.join(", "))
                }
            )
        }
        None if run.is_open() => {
            format!("{name}: not failed: running since {}", secs(run.started_ns))
        }
        None => format!(
            "{name}: not failed: its last run ended at {}",
            secs(run.ended_ns.unwrap_or(0))
        ),
    }
}

pub async fn why(args: WhyArgs) -> anyhow::Result<()> {
    let query = Query::Why {
        unit: args.unit.clone(),
        json: args.source.json,
    };
    if let Some(reply) = ask_daemon(&args.source, query).await? {
        return print_reply(reply);
    }
    let model = model(&args.source).await?;
    let from = if args.source.events.is_some() {
        "in the recording"
    } else {
        "while tracing"
    };
    let sd = live_systemd(&args.source, unit_facts(&args.unit)).await;
    write_why(
        &mut io::stdout().lock(),
        &model,
        &args.unit,
        args.source.json,
        from,
        sd.as_ref(),
    )
}

/// The `tracer why` report of a unit.
pub fn write_why<F: Facts>(
    out: &mut impl Write,
    model: &Model<F>,
    unit: &str,
    json: bool,
    from: &str,
    sd: Option<&Snapshot>,
) -> anyhow::Result<()> {
    let Some(h) = model.unit(unit) else {
        let name = crate::unit::full_unit_name(unit);
        if let Some(u) = sd.and_then(|s| s.unit(&name)) {
            if u.load_state == "not-found" {
                bail!(
                    "{name}: no such unit: systemd has no unit file for it (is it in /etc/systemd/system, and did you run systemctl daemon-reload?)"
                );
            }
            bail!(
                "{name}: no process ran in it {from}; systemd says {} ({}), unit file {}",
                u.active_state,
                u.sub_state,
                if u.fragment_path.is_empty() {
                    "-"
                } else {
                    &u.fragment_path
                }
            );
        }
        bail!("no events for {unit} {from}: was it started while tracer watched?");
    };
    let sd_unit = sd.and_then(|s| s.unit(&h.unit.name));
    let why = why_of(h, sd_unit);
    if json {
        writeln!(out, "{}", serde_json::to_string_pretty(&why)?)?;
        return Ok(());
    }
    writeln!(out, "{}", why.explanation)?;
    if let Some(hint) = &why.hint {
        writeln!(out, "  fix: {hint}")?;
    }
    for e in &why.evidence {
        writeln!(out, "  evidence: {e}")?;
    }
    if let Some(u) = why.systemd {
        for line in systemd_lines(u) {
            writeln!(out, "  {line}")?;
        }
    }
    writeln!(
        out,
        "  runs: {} ({} restarts), state as seen: {}",
        why.runs, why.restarts, why.state
    )?;
    Ok(())
}

fn start_text(s: &StartKind) -> String {
    match s {
        StartKind::First => "first".into(),
        StartKind::AutomaticRestart => "auto-restart".into(),
        StartKind::Manual { by_pid, command } => format!("{command} ({by_pid})"),
        StartKind::Again => "started again".into(),
        StartKind::FoundAtStart => "found running".into(),
    }
}

pub async fn restarts(args: RestartsArgs) -> anyhow::Result<()> {
    let query = Query::Restarts {
        unit: args.unit.clone(),
        json: args.source.json,
    };
    if let Some(reply) = ask_daemon(&args.source, query).await? {
        return print_reply(reply);
    }
    let model = model(&args.source).await?;
    write_restarts(
        &mut io::stdout().lock(),
        &model,
        args.unit.as_deref(),
        args.source.json,
    )
}

/// The `tracer restarts` report of one unit, or of every unit that restarted.
pub fn write_restarts<F: Facts>(
    out: &mut impl Write,
    model: &Model<F>,
    unit: Option<&str>,
    json: bool,
) -> anyhow::Result<()> {
    let units: Vec<&UnitHistory> = match unit {
        Some(u) => vec![
            model
                .unit(u)
                .with_context(|| format!("no events for {u}"))?,
        ],
        None => model.units().filter(|h| h.runs.len() > 1).collect(),
    };
    if json {
        let v: Vec<_> = units
            .iter()
            .map(|h| {
                json!({
                    "unit": h.unit.name,
                    "restarts": h.restarts(),
                    "crash_loop": h.crash_loop,
                    "runs": h.runs.iter().map(|r| json!({
                        "run": r.number,
                        "start": r.start,
                        "started_ns": r.started_ns,
                        "ended_ns": r.ended_ns,
                        "main_pid": r.main_pid,
                        "status": r.outcome.as_ref().map(|o| o.status.0),
                        "outcome": r.outcome.as_ref().map(|o| o.status.to_string()),
                        "failed": r.failed(),
                        "cause": r.outcome.as_ref().and_then(|o| o.cause.clone()),
                    })).collect::<Vec<_>>(),
                })
            })
            .collect();
        writeln!(out, "{}", serde_json::to_string_pretty(&v)?)?;
        return Ok(());
    }
    writeln!(
        out,
        "{:<32} {:>3} {:>10} {:>10} {:>9} {:<24} {:<24} CAUSE",
        "UNIT", "RUN", "START", "END", "DURATION", "HOW", "OUTCOME"
    )?;
    for h in units {
        for r in &h.runs {
            let end = r.ended_ns.map_or_else(|| "-".to_owned(), secs);
            let dur = r
                .ended_ns
                .map_or_else(|| "-".to_owned(), |e| secs(e.saturating_sub(r.started_ns)));
            let outcome = r.outcome.as_ref().map_or_else(
                || {
                    if r.is_open() {
                        "running".into()
                    } else {
                        "-".into()
                    }
                },
                |o| o.status.to_string(),
            );
            let cause = r
                .outcome
                .as_ref()
                .and_then(|o| o.cause.as_ref())
                .map_or_else(|| "-".to_owned(), Cause::summary);
            writeln!(
                out,
                "{:<32} {:>3} {:>10} {:>10} {:>9} {:<24} {:<24} {cause}",
                h.unit.display_name(),
                r.number,
                secs(r.started_ns),
                end,
                dur,
                start_text(&r.start),
                outcome
            )?;
        }
    }
    Ok(())
}

/// For tests: the explanation of a unit in a model built from any facts.
pub fn explanation<F: Facts>(model: &Model<F>, unit: &str) -> Option<(String, Option<String>)> {
    model.unit(unit).map(|h| {
        let w = why_of(h, None);
        (w.explanation, w.hint)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        event::{CgroupRef, EventKind, WaitStatus},
        model::facts::{RecordedFacts, parse_unit_file},
    };

    fn ev(ts_ms: u64, tgid: u32, cgroup_id: u64, comm: &str, kind: EventKind) -> Event {
        Event {
            ts_ns: ts_ms * 1_000_000,
            pid: tgid,
            tgid,
            cgroup_id,
            comm: comm.into(),
            kind,
        }
    }

    /// A Type=forking service whose ExecStart exits 0 without leaving a daemon, as the
    /// kernel reports it: its cgroup, pid 1's fork, the move, the exec, the exit, the
    /// cgroup's removal.
    #[test]
    fn a_forking_service_that_left_nothing_behind_is_explained() {
        let mut facts = RecordedFacts::default();
        facts.units.insert(
            "f.service".into(),
            parse_unit_file(
                "/etc/systemd/system/f.service",
                &["[Service]\nType=forking\nExecStart=/usr/sbin/f\n".into()],
            ),
        );
        let mut m = Model::new(facts, ModelConfig::default());
        let cg = CgroupRef {
            id: 60,
            level: 2,
            path: "/system.slice/f.service".into(),
            path_truncated: false,
        };
        m.know_cgroup(1, "/init.scope");
        m.apply(&ev(
            1,
            1,
            1,
            "systemd",
            EventKind::CgroupMkdir { cgroup: cg.clone() },
        ));
        m.apply(&ev(2, 1, 1, "systemd", EventKind::Fork { child_pid: 400 }));
        m.apply(&ev(
            3,
            1,
            1,
            "systemd",
            EventKind::CgroupAttach {
                cgroup: cg.clone(),
                target_pid: 400,
            },
        ));
        m.apply(&ev(
            4,
            400,
            60,
            "f",
            EventKind::Exec {
                ppid: 1,
                uid: 0,
                filename: "/usr/sbin/f".into(),
                argv: vec!["/usr/sbin/f".into()],
                filename_truncated: false,
                argv_truncated: false,
            },
        ));
        m.apply(&ev(
            16,
            400,
            60,
            "f",
            EventKind::Exit {
                ppid: 1,
                status: WaitStatus(0),
            },
        ));
        m.apply(&ev(
            17,
            1,
            1,
            "systemd",
            EventKind::CgroupRmdir { cgroup: cg },
        ));
        let (text, hint) = explanation(&m, "f.service").unwrap();
        assert!(
            text.starts_with(
                "f.service: /usr/sbin/f exited 0 after 12 ms and left no process behind; a Type=forking service"
            ),
            "{text}"
        );
        assert!(text.contains("use Type=simple"), "{text}");
        assert_eq!(hint, None);
    }
}
