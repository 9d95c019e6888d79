//! `tracer why UNIT`: why a unit failed (or did not), in plain words, with the evidence
//! and the fix: the model's account of its latest run, joined with what systemd says of
//! it when systemd could be asked.

use std::io::Write;

use serde::Serialize;

use super::{
    ReportError, Source,
    fmt::secs,
    term::printable,
    verdict::{Verdict, verdict},
};
use crate::{
    event::{Signal, WaitStatus},
    model::{
        ByHand, Model, Role, Run, RunStarts, ServiceType, StartKind, UnitHistory, UnitState,
        cause::{Cause, ExecEvidence, RefusedFile},
        clean_exit,
        facts::Facts,
    },
    systemd::{Snapshot, SystemdUnit},
};

/// The explanation `tracer why` gives.
#[derive(Serialize)]
pub struct Why<'a> {
    pub unit: std::borrow::Cow<'a, str>,
    pub state: UnitState,
    pub runs: usize,
    /// Restarts: systemd's own and those asked for by hand (`run_starts` tells them
    /// apart, and from activations).
    pub restarts: usize,
    pub run_starts: RunStarts,
    pub crash_loop: bool,
    /// The sentence.
    pub explanation: String,
    pub hint: Option<String>,
    pub evidence: Vec<String>,
    pub cause: Option<&'a Cause>,
    /// systemd's verdict on the latest activation (`failed`, `success`, `skipped`), when
    /// systemd could be asked and its account is of that activation: it decides whether
    /// the unit failed.
    pub systemd_verdict: Option<&'static str>,
    /// What systemd says about the unit, when it could be asked.
    pub systemd: Option<&'a SystemdUnit>,
    /// Of the runs started again with no sign of who asked, those a timer, socket or
    /// path unit started (by systemd's recorded firings of its TriggeredBy= units).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub activated_by: Vec<Activated>,
    /// The timer, socket or path unit whose firing started the first run seen, when one
    /// did (a socket's first connection, a path's first file).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub first_run_by: Option<String>,
}

/// Runs a triggering unit started.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Activated {
    pub by: String,
    pub runs: usize,
}

/// How long after a timer's, socket's or path's firing (systemd's timestamp) a run it
/// started is seen to begin, at most (the unit's cgroup is made when the start job runs).
const ACTIVATION_WINDOW_NS: u64 = 5_000_000_000;

/// The runs after the first started again with no sign of who asked (no systemctl) that
/// began within [`ACTIVATION_WINDOW_NS`] after a firing of a unit that triggers it, by
/// that unit; each firing starts one run.
fn activated_by(h: &UnitHistory, sd: Option<&SystemdUnit>) -> Vec<Activated> {
    let Some(u) = sd else {
        return Vec::new();
    };
    let mut used = vec![false; u.activations.len()];
    let mut out: Vec<Activated> = Vec::new();
    for run in h
        .runs
        .iter()
        .skip(1)
        .filter(|r| r.start == StartKind::Again)
    {
        let firing = u.activations.iter().enumerate().rev().find(|(i, a)| {
            !used[*i]
                && a.at_ns <= run.started_ns
                && run.started_ns - a.at_ns <= ACTIVATION_WINDOW_NS
        });
        if let Some((i, a)) = firing {
            used[i] = true;
            match out.iter_mut().find(|x| x.by == a.by) {
                Some(x) => x.runs += 1,
                None => out.push(Activated {
                    by: a.by.clone(),
                    runs: 1,
                }),
            }
        }
    }
    out
}

/// `tracer why` of a timer, socket or path unit: systemd's account.
fn trigger_why(u: &SystemdUnit, explanation: String) -> Why<'_> {
    Why {
        unit: std::borrow::Cow::Owned(u.id.clone()),
        state: match u.active_state.as_str() {
            "failed" => UnitState::Failed,
            "active" => UnitState::Active,
            "inactive" => UnitState::Inactive,
            _ => UnitState::Unknown,
        },
        runs: 0,
        restarts: 0,
        run_starts: RunStarts::default(),
        crash_loop: false,
        explanation,
        hint: None,
        evidence: std::iter::once(format!(
            "this is systemd's account of a {} unit: it starts another, which runs the processes",
            u.id.rsplit_once('.').map_or("", |(_, k)| k)
        ))
        .chain(
            u.triggers
                .iter()
                .map(|t| format!("`tracer why {t}` explains the runs it started")),
        )
        .collect(),
        cause: None,
        systemd_verdict: verdict(u).name(),
        systemd: Some(u),
        activated_by: Vec::new(),
        first_run_by: None,
    }
}

/// What systemd says of a timer, socket or path unit that did not fail: its state, when
/// it last fired and what it starts (a failed one is told by its verdict).
fn trigger_account(u: &SystemdUnit) -> Option<String> {
    let t = u.typed.as_ref()?;
    let (_, kind) = u.id.rsplit_once('.')?;
    if !matches!(kind, "timer" | "socket" | "path") || verdict(u).name() == Some("failed") {
        return None;
    }
    let starts = if u.triggers.is_empty() {
        "nothing".to_owned()
    } else {
        u.triggers.join(", ")
    };
    let at = |us: u64| secs(us.saturating_mul(1000));
    let state = format!("{} ({})", u.active_state, u.sub_state);
    Some(match kind {
        "timer" => format!(
            "{}: a timer, {state}: it starts {starts}; {}{}",
            u.id,
            if t.last_trigger_us > 0 {
                format!("it last elapsed at {}", at(t.last_trigger_us))
            } else {
                "it has not elapsed since boot".to_owned()
            },
            if t.next_elapse_us > 0 && u.active_state == "active" {
                format!(", and elapses next at {}", at(t.next_elapse_us))
            } else {
                String::new()
            }
        ),
        // (systemd lists no Triggers= for it: its instances are of NAME@.service.)
        "socket" if t.accept => format!(
            "{}: a socket, {state}, Accept=yes: each connection is served by an instance of {} ({} accepted so far, {} open now)",
            u.id,
            if u.triggers.is_empty() {
                format!("{}@.service", u.id.trim_end_matches(".socket"))
            } else {
                starts
            },
            t.n_accepted,
            t.n_connections
        ),
        "socket" => format!(
            "{}: a socket, {state}: at its first connection systemd starts {starts} and hands it the listening socket{}",
            u.id,
            if u.sub_state == "running" {
                ", which it did"
            } else {
                ""
            }
        ),
        _ => format!(
            "{}: a path unit, {state}: when what it watches appears or changes, systemd starts {starts}",
            u.id
        ),
    })
}

/// The unit whose firing started the first run, when it began as a first start (not
/// found running, no systemctl seen) within [`ACTIVATION_WINDOW_NS`] after a firing of a
/// unit that triggers it; with how long after.
fn first_run_by<'a>(h: &UnitHistory, sd: Option<&'a SystemdUnit>) -> Option<(&'a str, u64)> {
    let run = h.runs.first().filter(|r| r.start == StartKind::First)?;
    sd?.activations
        .iter()
        .rev()
        .find(|a| a.at_ns <= run.started_ns && run.started_ns - a.at_ns <= ACTIVATION_WINDOW_NS)
        .map(|a| (a.by.as_str(), run.started_ns - a.at_ns))
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
    Some(format!(
        "ExecStart={}{} (from {})",
        if cmd.ignore_failure { "-" } else { "" },
        cmd.line(),
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

/// What the kernel recorded of systemd's check of the command.
fn access_check_line(file: &RefusedFile) -> String {
    let Some(check) = file.check() else {
        return "systemd's own check refused the file".to_owned();
    };
    let mut s = format!(
        "no execve reached the kernel: it refused systemd's access check ({}, X_OK, uid {}): {}",
        check.syscall.name(),
        check.uid,
        check.errno.name().unwrap_or("an error")
    );
    match &check.file {
        Some(f) => {
            s.push_str(&format!(
                "; the file was {:04o} {} at that moment",
                f.perm(),
                file.owner().show(f.file_uid, f.file_gid)
            ));
            if f.noexec {
                s.push_str(", on a noexec mount");
            }
        }
        None => s.push_str("; the file itself was not recorded"),
    }
    s
}

/// Whom systemd says it runs the unit's commands as, when not root by default.
fn run_as_line(s: &crate::systemd::ServiceFacts) -> Option<String> {
    let mut set = Vec::new();
    if s.dynamic_user {
        set.push("DynamicUser=yes".to_owned());
    }
    for (key, value) in [("User", &s.user), ("Group", &s.group)] {
        if !value.is_empty() {
            set.push(format!("{key}={value}"));
        }
    }
    if !s.supplementary_groups.is_empty() {
        set.push(format!(
            "SupplementaryGroups={}",
            s.supplementary_groups.join(" ")
        ));
    }
    (!set.is_empty()).then(|| format!("systemd runs its commands as {}", set.join(" ")))
}

fn why_of<'a>(h: &'a UnitHistory, sd: Option<&'a SystemdUnit>) -> Why<'a> {
    let key = h.unit.key();
    let name = key.as_ref();
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
    let (mut explanation, mut hint, mut cause) = match failed
        .and_then(|r| r.outcome.as_ref().map(|o| (r, o)))
    {
        Some((run, outcome)) => {
            let cause = outcome.cause.as_ref();
            evidence.push(format!(
                "run {} started at {}: pid {} ended with {}",
                run.number,
                secs(run.started_ns),
                outcome.pid,
                describe_status(run, outcome.pid, outcome.status)
            ));
            if let Some(Cause::ExecFailed {
                evidence: how,
                file,
                ..
            }) = cause
            {
                evidence.push(match how {
                    ExecEvidence::Execve => match file.runner() {
                        Some(r) => format!(
                            "the kernel saw the execve fail with that error, run as uid {}; the file's state is as looked at after the failure",
                            r.uid
                        ),
                        None => "the kernel saw the execve fail with that error".to_owned(),
                    },
                    ExecEvidence::SystemdCheck => {
                        "no execve reached the kernel: systemd's own check refused the file; the error is what the file's state implies (looked at after the failure)".to_owned()
                    }
                    ExecEvidence::AccessCheck => access_check_line(file),
                });
                if file.runner().is_some()
                    && let Some(line) = sd.and_then(|u| u.service.as_ref()).and_then(run_as_line)
                {
                    evidence.push(line);
                }
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
    // systemd decides whether the unit failed; the kernel says what happened.
    let mut verdict_name = None;
    let mut state = h.state();
    if let Some(u) = account_of(sd, h.runs.last()) {
        let v = verdict(u);
        verdict_name = v.name();
        state = match (u.active_state.as_str(), u.sub_state.as_str()) {
            ("failed", _) => UnitState::Failed,
            ("active", "running") => UnitState::Running,
            ("active", "exited") => UnitState::Exited,
            ("inactive", _) => UnitState::Inactive,
            _ => state,
        };
        let kernel_saw = |cause: Option<&Cause>, explanation: &str| match cause {
            Some(c) => format!("the kernel saw: {}", c.summary()),
            None => format!(
                "the kernel saw: {}",
                explanation
                    .strip_prefix(&format!("{name}: "))
                    .unwrap_or(explanation)
            ),
        };
        match v {
            Verdict::Success if let Some(run) = failed => {
                evidence.push(format!(
                    "{}; systemd counts run {} a success (Result=success){}",
                    kernel_saw(cause, &explanation),
                    run.number,
                    success_reason(u, run)
                ));
                explanation = format!(
                    "{name}: not failed: systemd counts its run {} a success",
                    run.number
                );
                hint = None;
                cause = None;
            }
            Verdict::Failed(f)
                if failed.is_none()
                    || !f.is_how_a_command_ended()
                    || f.command.is_some_and(|(role, _)| {
                        !matches!(cause, Some(Cause::ExecFailed { command, .. }) if command == role)
                            && role != "ExecStart"
                    }) =>
            {
                evidence.push(kernel_saw(cause, &explanation));
                explanation = f.explain(name);
                // The kernel's fix (chmod +x, ...) stays first: systemd's is what comes
                // after it (reset-failed, a timeout raised).
                // (A stop that ran out of time: the kernel's fix says all systemd's would.)
                let stop_timed_out = matches!(
                    cause,
                    Some(Cause::Killed {
                        after_sigterm_ms: Some(_),
                        ..
                    })
                ) && f.result == "timeout";
                hint = match (hint, f.hint()) {
                    (Some(fix), _) if stop_timed_out => Some(fix),
                    (Some(fix), Some(then)) => Some(format!("{fix}; then {then}")),
                    (fix, then) => then.or(fix),
                };
            }
            Verdict::Dependency { .. } => {
                if let Some(run) = h.runs.last() {
                    evidence.push(format!(
                        "its last run seen, run {} (started at {}), is before that start",
                        run.number,
                        secs(run.started_ns)
                    ));
                }
                explanation = v.explain(name).unwrap_or(explanation);
                hint = v.hint();
                cause = None;
            }
            Verdict::Unmet { .. } | Verdict::ExecCondition { .. } => {
                explanation = v.explain(name).unwrap_or(explanation);
                if v.name() == Some("skipped") {
                    cause = None;
                    hint = None;
                }
            }
            _ => {}
        }
        if let Verdict::Failed(f) = v
            && let Some(note) = f.not_restarted()
        {
            explanation = format!("{explanation}; {note}");
        }
        if let Some(note) = reload_failed(u) {
            explanation = format!("{explanation}; {note}");
            hint.get_or_insert_with(|| {
                "fix what ExecReload= runs (its error is in `journalctl -u UNIT`), then reload again".into()
            });
        }
    } else if failed.is_none() {
        // What only systemd could say (a start it refused, a timeout) is not in the
        // kernel's record: said, rather than taken for a success.
        evidence.push(format!(
            "{}: this is the kernel's account alone; a failure only systemd sees (a start it refused for the start limit or a dependency, a timeout, a protocol) would not show here",
            if sd.is_none() {
                "systemd was not asked"
            } else {
                "systemd's account is of an earlier activation"
            }
        ));
    }
    // A reload that failed leaves the unit running: the kernel's record of it.
    if let Some(run) = h.runs.last() {
        for c in run.commands.iter().filter(|c| {
            c.role == Some(Role::ExecReload) && c.status.is_some_and(|st| !st.success())
        }) {
            evidence.push(format!(
                "ExecReload={} (pid {}) ended with {} at {}: a reload that fails leaves the unit running",
                c.program.as_deref().unwrap_or("?"),
                c.pid,
                c.status.map_or_else(String::new, |st| st.to_string()),
                secs(c.exited_ns.unwrap_or(c.started_ns))
            ));
        }
    }
    if let Some(line) = n_restarts_line(h, sd) {
        evidence.push(line);
    }
    // Who asked for the latest run's job over the bus, when a client did (within 10 s
    // before it began: the call, then the job, then the cgroup).
    if let (Some(run), Some(ask)) = (h.runs.last(), sd.and_then(|u| u.asked_by.as_ref()))
        && ask.at_ns <= run.started_ns
        && run.started_ns - ask.at_ns <= 10_000_000_000
    {
        evidence.push(format!(
            "run {} was asked for over D-Bus: {} by {}{}",
            run.number,
            ask.method,
            match (ask.pid, &ask.comm) {
                (Some(pid), Some(comm)) => format!("pid {pid} ({comm})"),
                (Some(pid), None) => format!("pid {pid}"),
                _ => "a client the bus no longer knew".to_owned(),
            },
            ask.uid.map_or_else(String::new, |u| format!(", uid {u}"))
        ));
    }
    let first_by = first_run_by(h, sd);
    if let Some((by, after_ns)) = first_by {
        evidence.push(format!(
            "run 1 was started by {by}: it began {:.0} ms after {by} fired (systemd's record of its TriggeredBy= units), with no systemctl seen",
            after_ns as f64 / 1e6
        ));
    }
    if h.crash_loop {
        let failed_runs = h.runs.iter().filter(|r| r.failed()).count();
        evidence.push(format!(
            "crash loop: {failed_runs} failed runs; systemd stops restarting once StartLimitBurst= starts fall within StartLimitIntervalSec="
        ));
    }
    Why {
        unit: key.clone(),
        state,
        runs: h.runs.len(),
        restarts: h.restarts(),
        run_starts: h.run_starts(),
        crash_loop: h.crash_loop,
        explanation,
        hint,
        evidence,
        cause,
        systemd_verdict: verdict_name,
        systemd: sd,
        activated_by: activated_by(h, sd),
        first_run_by: first_by.map(|(by, _)| by.to_owned()),
    }
}

/// systemd's word on a reload that failed (ReloadResult= other than success), with the
/// ExecReload= command that failed, when it knows it.
fn reload_failed(u: &SystemdUnit) -> Option<String> {
    let s = u.service.as_ref()?;
    if s.reload_result.is_empty() || s.reload_result == "success" {
        return None;
    }
    let cmd = crate::systemd::ExecCommand::last_failed(&s.exec_reload)
        .map_or_else(String::new, |c| {
            format!(": ExecReload={} ended with {}", c.line(), c.ending())
        });
    Some(format!(
        "its last reload failed{cmd} (ReloadResult={}), and systemd kept it running",
        s.reload_result
    ))
}

/// Why systemd's NRestarts is lower than the automatic restarts tracer saw, when a start
/// since reset it: systemd counts its restarts since the last start that followed a run it
/// did not restart.
fn n_restarts_line(h: &UnitHistory, sd: Option<&SystemdUnit>) -> Option<String> {
    let n = sd?.service.as_ref()?.n_restarts as usize;
    let seen = h.run_starts().automatic_restarts;
    let trailing = h.trailing_automatic_restarts();
    if seen <= n || trailing != n {
        return None;
    }
    let reset = h.runs.iter().rev().nth(trailing)?;
    let how = match &reset.start {
        StartKind::ManualStart { by_pid, command } | StartKind::Manual { by_pid, command } => {
            format!("by {command} (pid {by_pid})")
        }
        StartKind::Again => "again (who asked was not seen)".to_owned(),
        _ => return None,
    };
    Some(format!(
        "systemd's NRestarts={n} counts its automatic restarts since run {} was started {how}; systemd resets it at a start that follows a run it did not restart (tracer saw {seen} in all)",
        reset.number
    ))
}

/// systemd's account of a unit, unless it was taken before the run tracer explains
/// started (a boot's account replayed with a later run): then it says nothing of it.
fn account_of<'a>(sd: Option<&'a SystemdUnit>, run: Option<&Run>) -> Option<&'a SystemdUnit> {
    let u = sd?;
    match run {
        Some(r)
            if u.inactive_exit_us > 0 && r.started_ns / 1000 > u.inactive_exit_us + 2_000_000 =>
        {
            None
        }
        _ => Some(u),
    }
}

/// Why systemd counts as a success what the kernel saw end otherwise.
fn success_reason(u: &SystemdUnit, run: &Run) -> String {
    let Some(s) = &u.service else {
        return String::new();
    };
    let Some(status) = run.outcome.as_ref().map(|o| o.status) else {
        return String::new();
    };
    if let Some(code) = status.exit_code()
        && s.success_exit_status.contains(&i32::from(code))
    {
        return format!(": exit status {code} is in SuccessExitStatus=");
    }
    if let Some(sig) = status.signal()
        && s.success_signals.contains(&sig)
    {
        return format!(": {} is in SuccessExitStatus=", Signal(sig));
    }
    if s.roles()
        .iter()
        .flat_map(|(_, cmds)| cmds.iter())
        .any(|c| c.failed() && c.ignore_failure)
    {
        return ": the command's `-` prefix ignores its failure".to_owned();
    }
    String::new()
}

fn describe_status(run: &Run, pid: u32, status: WaitStatus) -> String {
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
    let key = h.unit.key();
    let name = key.as_ref();
    let service = sd.and_then(|u| u.service.as_ref());
    let ty = service
        .map(|s| s.service_type.as_str())
        .or_else(|| h.file.as_ref().and_then(|f| f.service_type.as_deref()))
        .unwrap_or("simple");
    let service_type = ServiceType::from_name(ty);
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
            if cmd.is_some_and(|c| c.role == Some(Role::ExecCondition)) && !o.status.success() {
                format!(
                    "{name}: skipped, not failed: its ExecCondition= {program} ended with {}: the unit's own condition said not to start it",
                    o.status
                )
            } else if o.status.success()
                && matches!(service_type, Some(ServiceType::Simple | ServiceType::Exec))
                && !remain
            {
                format!(
                    "{name}: {program} ran to completion and exited 0{took}; a Type={ty} service whose main process exits becomes inactive — it is not a long-running daemon; if it is meant to run once, use Type=oneshot (with RemainAfterExit=yes to stay active)"
                )
            } else if o.status.success()
                && sd.is_none()
                && matches!(
                    service_type,
                    Some(ServiceType::Notify | ServiceType::NotifyReload)
                )
            {
                format!(
                    "{name}: not failed as far as the kernel saw: {program} exited 0{took} (Type={ty}) — unless it sent READY=1 first, systemd fails a Type={ty} service whose main process exits (Result=protocol): a program that forks into the background is Type=forking; systemd's Result= would tell, and it was not asked"
                )
            } else if o.status.success() {
                format!(
                    "{name}: not failed: {program} ran to completion and exited 0{took} (Type={ty})"
                )
            } else if sd.is_none()
                && let Some(Cause::Killed {
                    signal,
                    sender_pid: Some(1),
                    ..
                }) = o.cause.as_ref()
            {
                // A stop, or systemd giving up (a timeout): only systemd's Result= tells.
                format!(
                    "{name}: not failed as far as the kernel saw: {program} was killed by {signal} from systemd (1){took} — as a stop ends it, or as systemd ends a service it gave up on (a timeout); systemd's Result= would tell which, and it was not asked"
                )
            } else if clean_exit(o.status) {
                format!(
                    "{name}: not failed: {program} ended cleanly ({}){took}, as a stop ends it",
                    o.status
                )
            } else {
                format!(
                    "{name}: not failed: {program} ended with {}{took}, which the unit file counts a success (SuccessExitStatus=, or a `-` prefix on ExecStart=)",
                    o.status
                )
            }
        }
        // Type=forking: ExecStart's process exited 0 and nothing stayed behind.
        None if service_type == Some(ServiceType::Forking)
            && run.main_pid.is_none()
            && run.commands.iter().all(|c| c.exited_ns.is_some())
            && let Some(c) = run.commands.iter().find(|c| {
                c.role == Some(Role::ExecStart) && c.status.is_some_and(|s| s.success())
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
        // Its cgroup came and went with no process in it.
        None if run.commands.is_empty() && sd.is_none() => format!(
            "{name}: not failed as far as the kernel saw, but no command of run {} ran: systemd made its cgroup at {} and removed it at {} without starting a process — a start that failed in systemd's own setup (an EnvironmentFile= it could not read, say) or one with nothing to run; systemd's Result= would tell, and it was not asked",
            run.number,
            secs(run.started_ns),
            secs(run.ended_ns.unwrap_or(0))
        ),
        None => format!(
            "{name}: not failed: its last run ended at {}",
            secs(run.ended_ns.unwrap_or(0))
        ),
    }
}

/// What `tracer why` says of one run of a unit (its `index` in the history), as it said
/// it when that run was the latest: the runs after it left out. `sd` must be systemd's
/// account of that activation (the caller knows which account is whose). The daemon's
/// journal entries say this, so that they and `tracer why` never explain a run two ways.
pub fn of_run(h: &UnitHistory, index: usize, sd: Option<&SystemdUnit>) -> Option<RunWhy> {
    let cut;
    let h = if index + 1 == h.runs.len() {
        h
    } else {
        cut = UnitHistory {
            unit: h.unit.clone(),
            runs: h.runs.get(..=index)?.to_vec(),
            file: h.file.clone(),
            crash_loop: h.crash_loop,
            serial: h.serial,
        };
        &cut
    };
    let w = why_of(h, sd);
    let failed = match w.systemd_verdict {
        Some(v) => v == "failed",
        None => h.runs.last().is_some_and(Run::failed),
    };
    Some(RunWhy {
        explanation: w.explanation,
        hint: w.hint,
        evidence: w.evidence,
        cause: w.cause.cloned(),
        verdict: w.systemd_verdict,
        result: w
            .systemd
            .filter(|_| w.systemd_verdict.is_some())
            .and_then(|u| u.service.as_ref())
            .map(|s| s.result.clone()),
        failed,
    })
}

/// [`of_run`]'s answer, owned.
#[derive(Clone, Debug)]
pub struct RunWhy {
    pub explanation: String,
    pub hint: Option<String>,
    pub evidence: Vec<String>,
    pub cause: Option<Cause>,
    /// systemd's verdict, when its account was had.
    pub verdict: Option<&'static str>,
    /// systemd's Result=, when its account was had.
    pub result: Option<String>,
    /// Whether the run failed: systemd's verdict, or the kernel's account without it.
    pub failed: bool,
}

/// The `tracer why` report of a unit of a model; `origin` says where the model's events
/// came from (for the errors: what was not seen, and where).
pub fn build<'a, F: Facts>(
    model: &'a Model<F>,
    unit: &str,
    origin: Source,
    sd: Option<&'a Snapshot>,
) -> Result<Why<'a>, ReportError> {
    // A timer, socket or path unit runs no process of its own (systemd ≥ 255 may give a
    // socket a cgroup for its setup): systemd's account of what it starts, when it has
    // not failed.
    let name = crate::unit::full_unit_name(unit);
    if let Some(u) = sd.and_then(|s| s.unit(&name))
        && let Some(explanation) = trigger_account(u)
    {
        return Ok(trigger_why(u, explanation));
    }
    let Some(h) = model.unit(unit) else {
        // No process of it ran: systemd's verdict may still say why (a condition, the
        // start limit).
        if let Some(u) = sd.and_then(|s| s.unit(&name))
            && let v = verdict(u)
            && let Some(explanation) = v.explain(&name)
        {
            return Ok(Why {
                unit: std::borrow::Cow::Owned(u.id.clone()),
                state: if v.name() == Some("failed") {
                    UnitState::Failed
                } else {
                    UnitState::Inactive
                },
                runs: 0,
                restarts: 0,
                run_starts: RunStarts::default(),
                crash_loop: false,
                explanation,
                hint: v.hint(),
                evidence: vec![format!(
                    "no process of it ran {origin}: this is systemd's account alone"
                )],
                cause: None,
                systemd_verdict: v.name(),
                systemd: Some(u),
                activated_by: Vec::new(),
                first_run_by: None,
            });
        }
        // What was meant, when the name is a typo: of systemd's loaded units when it was
        // asked, else of the units the kernel saw.
        let closest = |name: &str| -> Option<String> {
            match sd {
                Some(s) if !s.names.is_empty() => {
                    crate::unit::closest(name, s.names.iter().map(String::as_str))
                }
                Some(s) if s.units.len() > 1 => {
                    crate::unit::closest(name, s.units.iter().map(|u| u.id.as_str()))
                }
                _ => crate::unit::closest(name, model.units().map(|h| h.unit.name.as_str())),
            }
            .map(str::to_owned)
        };
        return Err(match sd.and_then(|s| s.unit(&name)) {
            Some(u) if u.load_state == "not-found" => ReportError::NoUnitFile {
                closest: closest(&name),
                unit: name,
            },
            Some(u) if u.load_state == "masked" => ReportError::Masked { unit: name },
            Some(u) if matches!(u.load_state.as_str(), "error" | "bad-setting") => {
                ReportError::NotLoaded {
                    unit: name,
                    state: u.load_state.clone(),
                }
            }
            Some(u) => ReportError::NeverRan {
                unit: name,
                origin,
                active: u.active_state.clone(),
                sub: u.sub_state.clone(),
                file: if u.fragment_path.is_empty() {
                    "-".into()
                } else {
                    u.fragment_path.clone()
                },
            },
            None => ReportError::NoEvents {
                closest: closest(&name),
                unit: unit.to_owned(),
                origin,
            },
        });
    };
    Ok(why_of(h, sd.and_then(|s| s.unit_of(&h.unit))))
}

pub fn json(out: &mut impl Write, why: &Why) -> Result<(), ReportError> {
    writeln!(out, "{}", serde_json::to_string_pretty(why)?)?;
    Ok(())
}

/// The explanation, the fix, the evidence, then systemd's account and the counts.
pub fn text(out: &mut impl Write, why: &Why) -> Result<(), ReportError> {
    writeln!(out, "{}", printable(&why.explanation))?;
    if let Some(hint) = &why.hint {
        writeln!(out, "  fix: {}", printable(hint))?;
    }
    for e in &why.evidence {
        writeln!(out, "  evidence: {}", printable(e))?;
    }
    if let Some(u) = why.systemd {
        for line in systemd_lines(u) {
            writeln!(out, "  {}", printable(&line))?;
        }
    }
    writeln!(
        out,
        "  runs: {} ({}), state as seen: {}",
        why.runs,
        printable(&starts_text(&why.run_starts, &why.activated_by)),
        why.state
    )?;
    Ok(())
}

/// How the runs after the first began, restarts apart from starts: "0 restarts", "2
/// restarts: 1 automatic, 1 by systemctl restart (pid 384); 1 start by systemctl start
/// (pid 412)".
fn starts_text(n: &RunStarts, activated: &[Activated]) -> String {
    let by_hand = |last: &Option<ByHand>, k: usize| match last {
        Some(b) if k == 1 => format!("{} (pid {})", b.command, b.pid),
        Some(b) => format!("hand, the last {} (pid {})", b.command, b.pid),
        None => "hand".to_owned(),
    };
    let plural =
        |k: usize, one: &str, many: &str| format!("{k} {}", if k == 1 { one } else { many });
    let (a, m) = (n.automatic_restarts, n.manual_restarts);
    let mut s = plural(a + m, "restart", "restarts");
    match (a, m) {
        (0, 0) => {}
        (_, 0) => s.push_str(", automatic"),
        (0, _) => s.push_str(&format!(", by {}", by_hand(&n.last_manual_restart, m))),
        _ => s.push_str(&format!(
            ": {a} automatic, {m} by {}",
            by_hand(&n.last_manual_restart, m)
        )),
    }
    if n.manual_starts > 0 {
        s.push_str(&format!(
            "; {} by {}",
            plural(n.manual_starts, "start", "starts"),
            by_hand(&n.last_manual_start, n.manual_starts)
        ));
    }
    for a in activated {
        s.push_str(&format!(
            "; {} by {}",
            plural(a.runs, "start", "starts"),
            a.by
        ));
    }
    let unattributed = n
        .other_starts
        .saturating_sub(activated.iter().map(|a| a.runs).sum());
    if unattributed > 0 {
        s.push_str(&format!(
            "; {}, who asked not seen (a timer, socket, dependency or D-Bus client)",
            plural(unattributed, "start again", "starts again")
        ));
    }
    s
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
    use crate::testing::Fed;
    use crate::{
        event::{CgroupRef, Event, EventKind},
        model::{
            ModelConfig,
            facts::{RecordedFacts, parse_unit_file},
        },
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
        let mut m = Fed::new(Model::new(facts, ModelConfig::default()));
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
                age_ns: None,
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
        let (text, hint) = explanation(&m.model, "f.service").unwrap();
        assert!(
            text.starts_with(
                "f.service: /usr/sbin/f exited 0 after 12 ms and left no process behind; a Type=forking service"
            ),
            "{text}"
        );
        assert!(text.contains("use Type=simple"), "{text}");
        assert_eq!(hint, None);
    }

    /// A model that knows u.service's unit file, and has seen its cgroup (id 60) made.
    fn u_service(unit_file: &str) -> (Fed<RecordedFacts>, CgroupRef) {
        let mut facts = RecordedFacts::default();
        facts.units.insert(
            "u.service".into(),
            parse_unit_file("/etc/systemd/system/u.service", &[unit_file.into()]),
        );
        let mut m = Fed::new(Model::new(facts, ModelConfig::default()));
        let cg = CgroupRef {
            id: 60,
            level: 2,
            path: "/system.slice/u.service".into(),
            path_truncated: false,
        };
        m.know_cgroup(1, "/init.scope");
        let mkdir = EventKind::CgroupMkdir { cgroup: cg.clone() };
        m.apply(&ev(1, 1, 1, "systemd", mkdir));
        (m, cg)
    }

    /// Run `n` of `unit` as the kernel reports it, from `t` ms: its cgroup (id 60 + n)
    /// made, pid 1's fork of pid 400 + n, the move into the cgroup, the exec of
    /// `program` (when given), the exit with `status`, the cgroup removed.
    fn whole_run(
        m: &mut Fed<RecordedFacts>,
        t: u64,
        n: u64,
        unit: &str,
        program: Option<&str>,
        status: u32,
    ) {
        let cg = CgroupRef {
            id: 60 + n,
            level: 2,
            path: format!("/system.slice/{unit}"),
            path_truncated: false,
        };
        let mkdir = EventKind::CgroupMkdir { cgroup: cg.clone() };
        m.apply(&ev(t + 1, 1, 1, "systemd", mkdir));
        let pid = 400 + n as u32;
        m.apply(&ev(
            t + 2,
            1,
            1,
            "systemd",
            EventKind::Fork { child_pid: pid },
        ));
        let attach = EventKind::CgroupAttach {
            cgroup: cg.clone(),
            target_pid: pid,
        };
        m.apply(&ev(t + 3, 1, 1, "systemd", attach));
        if let Some(program) = program {
            let exec = EventKind::Exec {
                ppid: 1,
                uid: 0,
                filename: program.into(),
                argv: vec![program.into()],
                filename_truncated: false,
                argv_truncated: false,
            };
            m.apply(&ev(t + 4, pid, cg.id, "x", exec));
        }
        let exit = EventKind::Exit {
            ppid: 1,
            status: WaitStatus(status),
            age_ns: None,
        };
        m.apply(&ev(t + 5, pid, cg.id, "x", exit));
        let rmdir = EventKind::CgroupRmdir { cgroup: cg };
        m.apply(&ev(t + 6, 1, 1, "systemd", rmdir));
    }

    /// A command's process as the kernel reports it: pid 1's fork, the move into the
    /// unit's cgroup (id 60), the exec of `program`.
    fn spawn(m: &mut Fed<RecordedFacts>, t: u64, pid: u32, program: &str, cg: &CgroupRef) {
        m.apply(&ev(t, 1, 1, "systemd", EventKind::Fork { child_pid: pid }));
        let attach = EventKind::CgroupAttach {
            cgroup: cg.clone(),
            target_pid: pid,
        };
        m.apply(&ev(t + 1, 1, 1, "systemd", attach));
        let exec = EventKind::Exec {
            ppid: 1,
            uid: 0,
            filename: program.into(),
            argv: vec![program.into()],
            filename_truncated: false,
            argv_truncated: false,
        };
        m.apply(&ev(t + 2, pid, 60, "x", exec));
    }

    /// A unit's run as the kernel reports it: its cgroup, then each command forked by pid 1,
    /// moved in, exec'd and exited with its status, then the cgroup's removal.
    fn one_run(unit_file: &str, commands: &[(&str, i32)]) -> Model<RecordedFacts> {
        let (mut m, cg) = u_service(unit_file);
        let mut t = 2;
        for (i, (program, status)) in commands.iter().enumerate() {
            let pid = 400 + i as u32;
            spawn(&mut m, t, pid, program, &cg);
            let exit = EventKind::Exit {
                age_ns: None,
                ppid: 1,
                status: WaitStatus(*status as u32),
            };
            m.apply(&ev(t + 3, pid, 60, "x", exit));
            t += 10;
        }
        m.apply(&ev(
            t,
            1,
            1,
            "systemd",
            EventKind::CgroupRmdir { cgroup: cg },
        ));
        m.model
    }

    /// What the unit file counts a success (SuccessExitStatus=, a `-` prefix) and an
    /// ExecCondition= that says no are not failures, from the kernel's record alone.
    #[test]
    fn the_unit_file_s_successes_are_not_failures() {
        let m = one_run(
            "[Service]\nExecStart=/bin/x\nSuccessExitStatus=3 SIGUSR1\n",
            &[("/bin/x", 3 << 8)],
        );
        let (text, _) = explanation(&m, "u.service").unwrap();
        assert!(
            text.contains("not failed: /bin/x ended with exit 3"),
            "{text}"
        );
        let m = one_run("[Service]\nExecStart=-/bin/x\n", &[("/bin/x", 1 << 8)]);
        assert!(!m.unit("u.service").unwrap().runs[0].failed());
        let m = one_run(
            "[Service]\nExecCondition=/bin/c\nExecStart=/bin/x\n",
            &[("/bin/c", 1 << 8)],
        );
        let (text, _) = explanation(&m, "u.service").unwrap();
        assert!(
            text.starts_with("u.service: skipped, not failed: its ExecCondition= /bin/c"),
            "{text}"
        );
        // Exit 255 from ExecCondition= is a failure, as systemd counts it.
        let m = one_run(
            "[Service]\nExecCondition=/bin/c\nExecStart=/bin/x\n",
            &[("/bin/c", 255 << 8)],
        );
        assert!(m.unit("u.service").unwrap().runs[0].failed());
    }

    /// As systemd counts them: a failing ExecReload= fails the reload and not the unit;
    /// a failing ExecStopPost= after a clean exit of the main process fails it, unless
    /// its `-` prefix says to ignore it.
    #[test]
    fn reload_and_stop_failures_as_systemd_counts_them() {
        let m = one_run(
            "[Service]\nExecStart=/bin/x\nExecReload=/bin/r\n",
            &[("/bin/r", 1 << 8), ("/bin/x", libc::SIGTERM)],
        );
        assert!(!m.unit("u.service").unwrap().runs[0].failed());
        let post = "[Service]\nExecStart=/bin/x\nExecStopPost=/bin/p\n";
        let m = one_run(post, &[("/bin/x", 0), ("/bin/p", 4 << 8)]);
        let run = &m.unit("u.service").unwrap().runs[0];
        assert!(run.failed());
        let (text, _) = explanation(&m, "u.service").unwrap();
        assert!(
            text.contains("ExecStopPost=/bin/p exited with status 4"),
            "{text}"
        );
        let m = one_run(
            &post.replace("=/bin/p", "=-/bin/p"),
            &[("/bin/x", 0), ("/bin/p", 4 << 8)],
        );
        assert!(!m.unit("u.service").unwrap().runs[0].failed());
    }

    /// Whom systemd says it runs the commands as, for a permission cause.
    #[test]
    fn systemd_says_whom_it_runs_the_commands_as() {
        use crate::systemd::ServiceFacts;
        assert_eq!(run_as_line(&ServiceFacts::default()), None);
        let s = ServiceFacts {
            user: "nobody".into(),
            supplementary_groups: vec!["staff".into(), "adm".into()],
            ..ServiceFacts::default()
        };
        assert_eq!(
            run_as_line(&s).as_deref(),
            Some("systemd runs its commands as User=nobody SupplementaryGroups=staff adm")
        );
        let s = ServiceFacts {
            dynamic_user: true,
            ..ServiceFacts::default()
        };
        assert_eq!(
            run_as_line(&s).as_deref(),
            Some("systemd runs its commands as DynamicUser=yes")
        );
    }

    /// systemd's account decides whether the run failed: a success it counts is not
    /// called failed, and a failure of ExecStartPost= is named as systemd names it.
    #[test]
    fn systemd_s_verdict_decides() {
        use crate::systemd::{CLD_EXITED, ExecCommand, ServiceFacts};
        // No SuccessExitStatus= in the file tracer read; systemd counted it a success.
        let m = one_run("[Service]\nExecStart=/bin/x\n", &[("/bin/x", 3 << 8)]);
        let mut sd = SystemdUnit {
            id: "u.service".into(),
            active_state: "inactive".into(),
            sub_state: "dead".into(),
            service: Some(ServiceFacts {
                result: "success".into(),
                success_exit_status: vec![3],
                ..ServiceFacts::default()
            }),
            ..SystemdUnit::default()
        };
        let w = why_of(m.unit("u.service").unwrap(), Some(&sd));
        assert_eq!(w.systemd_verdict, Some("success"));
        assert!(w.cause.is_none());
        assert_eq!(
            w.explanation,
            "u.service: not failed: systemd counts its run 1 a success"
        );
        assert!(
            w.evidence
                .iter()
                .any(|e| e.ends_with("exit status 3 is in SuccessExitStatus=")),
            "{:?}",
            w.evidence
        );
        // ExecStart ran; ExecStartPost= failed, and systemd failed the unit for it.
        let m = one_run(
            "[Service]\nExecStart=/bin/x\nExecStartPost=/bin/false\n",
            &[("/bin/false", 1 << 8)],
        );
        sd.active_state = "failed".into();
        let s = sd.service.as_mut().unwrap();
        s.result = "exit-code".into();
        s.exec_start_post = vec![ExecCommand {
            path: "/bin/false".into(),
            argv: vec!["/bin/false".into()],
            code: CLD_EXITED,
            status: 1,
            exit_us: 5,
            ..ExecCommand::default()
        }];
        let w = why_of(m.unit("u.service").unwrap(), Some(&sd));
        assert_eq!(w.systemd_verdict, Some("failed"));
        assert_eq!(w.state, UnitState::Failed);
        assert_eq!(
            w.explanation,
            "u.service: ExecStartPost=/bin/false ended with exit status 1 (Result=exit-code)"
        );
    }

    /// ExecStartPost= fails while ExecStart's process runs; systemd then stops the unit,
    /// killing that process: the failure is ExecStartPost's, named as its role, and the
    /// main process stays ExecStart's.
    #[test]
    fn a_failing_control_process_is_the_cause_not_the_stop_it_brings() {
        let (mut m, cg) =
            u_service("[Service]\nExecStart=/bin/sleep 60\nExecStartPost=/bin/false\n");
        spawn(&mut m, 2, 400, "/bin/sleep", &cg);
        spawn(&mut m, 6, 401, "/bin/false", &cg);
        let exit = |status| EventKind::Exit {
            age_ns: None,
            ppid: 1,
            status: WaitStatus(status),
        };
        m.apply(&ev(10, 401, 60, "false", exit(1 << 8)));
        m.apply(&ev(20, 400, 60, "sleep", exit(libc::SIGTERM as u32)));
        m.apply(&ev(
            21,
            1,
            1,
            "systemd",
            EventKind::CgroupRmdir { cgroup: cg },
        ));
        let h = m.model.unit("u.service").unwrap();
        assert_eq!(h.runs[0].main_pid, Some(400));
        let (text, _) = explanation(&m.model, "u.service").unwrap();
        assert_eq!(
            text,
            "u.service: ExecStartPost=/bin/false exited with status 1"
        );
    }
    /// A main process that outlives systemd's SIGTERM and dies of its SIGKILL later: the
    /// kernel's account says so, as a stop that ran out of time (what systemd's Result=
    /// calls timeout), and says what to do; a SIGKILL alone (`systemctl kill`) is not that.
    #[test]
    fn a_stop_that_ran_out_of_time_is_told_from_a_kill() {
        use crate::event::Signal;
        let signal = |sig| EventKind::Signal {
            target_pid: 400,
            signal: Signal(sig),
            code: 0,
            result: 1,
        };
        let exit = |status| EventKind::Exit {
            ppid: 1,
            status: WaitStatus(status),
            age_ns: None,
        };
        let (mut m, cg) = u_service("[Service]\nExecStart=/bin/sh -c x\nTimeoutStopSec=2s\n");
        spawn(&mut m, 2, 400, "/bin/sh", &cg);
        m.apply(&ev(1000, 1, 1, "systemd", signal(libc::SIGTERM)));
        m.apply(&ev(3000, 1, 1, "systemd", signal(libc::SIGKILL)));
        m.apply(&ev(3001, 400, 60, "sh", exit(libc::SIGKILL as u32)));
        let (text, hint) = explanation(&m.model, "u.service").unwrap();
        assert_eq!(
            text,
            "u.service: /bin/sh was killed by SIGKILL from systemd (1), 2.0 s after its SIGTERM, which did not end it: the shape of a stop that ran out of TimeoutStopSec= (inferred from the signals the kernel saw; systemd's Result= would say timeout)"
        );
        assert!(hint.is_some_and(|h| h.contains("raise TimeoutStopSec=")));
        let (mut m, cg) = u_service("[Service]\nExecStart=/bin/sleep 60\n");
        spawn(&mut m, 2, 400, "/bin/sleep", &cg);
        m.apply(&ev(3000, 1, 1, "systemd", signal(libc::SIGKILL)));
        m.apply(&ev(3001, 400, 60, "sleep", exit(libc::SIGKILL as u32)));
        let (text, hint) = explanation(&m.model, "u.service").unwrap();
        assert_eq!(
            text,
            "u.service: /bin/sleep was killed by SIGKILL from systemd (1)"
        );
        assert_eq!(hint, None);
        // SIGABRT from systemd: its watchdog's signal, inferred as such.
        let (mut m, cg) = u_service("[Service]\nExecStart=/bin/sleep 60\nWatchdogSec=2s\n");
        spawn(&mut m, 2, 400, "/bin/sleep", &cg);
        m.apply(&ev(2000, 1, 1, "systemd", signal(libc::SIGABRT)));
        m.apply(&ev(2001, 400, 60, "sleep", exit(libc::SIGABRT as u32)));
        let (text, _) = explanation(&m.model, "u.service").unwrap();
        assert!(
            text.starts_with("u.service: /bin/sleep was killed by SIGABRT from systemd (1): the signal systemd's watchdog sends by default (WatchdogSignal=)"),
            "{text}"
        );
    }

    /// A timer's unit: its runs after the first, started with no systemctl in sight, are
    /// the timer's (by its firings as systemd recorded them), not restarts; one that
    /// began with no firing before it stays unattributed.
    #[test]
    fn a_timer_s_starts_are_named() {
        use crate::systemd::changes::Activation;
        let mut m = Fed::new(Model::new(RecordedFacts::default(), ModelConfig::default()));
        m.know_cgroup(1, "/init.scope");
        // Runs at 0, 10, 20 and 30 s; the timer fired at 9.9 s and 19.9 s (and at 2 s, no
        // run after it within the window but run 2's, which it is too early for).
        for run in 0..4u64 {
            whole_run(&mut m, 10_000 * run, run, "tick.service", None, 0);
        }
        let h = m.model.unit("tick.service").unwrap();
        assert_eq!(h.run_starts().other_starts, 3);
        let fired = |ms: u64| Activation {
            by: "tick.timer".into(),
            at_ns: ms * 1_000_000,
        };
        let sd = SystemdUnit {
            id: "tick.service".into(),
            triggered_by: vec!["tick.timer".into()],
            activations: vec![fired(2_000), fired(9_900), fired(19_900)],
            ..SystemdUnit::default()
        };
        let w = why_of(h, Some(&sd));
        assert_eq!(
            w.activated_by,
            [Activated {
                by: "tick.timer".into(),
                runs: 2
            }]
        );
        assert_eq!(
            starts_text(&w.run_starts, &w.activated_by),
            "0 restarts; 2 starts by tick.timer; 1 start again, who asked not seen (a timer, socket, dependency or D-Bus client)"
        );
        assert_eq!(w.restarts, 0);
    }

    /// A start by hand after systemd's own restarts gave up is an activation, not a
    /// restart; systemd's NRestarts, reset by that start, is explained.
    #[test]
    fn starts_by_hand_are_not_restarts() {
        let mut facts = RecordedFacts::default();
        facts.units.insert(
            "u.service".into(),
            parse_unit_file(
                "/etc/systemd/system/u.service",
                &["[Service]\nExecStart=/bin/x\nRestart=on-failure\n".into()],
            ),
        );
        let mut m = Fed::new(Model::new(facts, ModelConfig::default()));
        m.know_cgroup(1, "/init.scope");
        let systemctl = |t: u64, pid: u32, verb: &str| {
            let argv = ["systemctl", verb, "u"].map(String::from).to_vec();
            ev(
                t,
                pid,
                1,
                "systemctl",
                EventKind::Exec {
                    ppid: 800,
                    uid: 0,
                    filename: "/usr/bin/systemctl".into(),
                    argv,
                    filename_truncated: false,
                    argv_truncated: false,
                },
            )
        };
        // Runs 1 and 2 fail (2 is systemd's restart), run 3 is `systemctl start u`, run 4
        // `systemctl restart u`.
        for (run, status) in [(0u64, 1 << 8), (1, 1 << 8), (2, 0), (3, 0)] {
            let t = 1_000 * run;
            match run {
                2 => m.apply(&systemctl(t, 900, "start")),
                3 => m.apply(&systemctl(t, 901, "restart")),
                _ => {}
            }
            whole_run(&mut m, t, run, "u.service", Some("/bin/x"), status);
        }
        let h = m.model.unit("u.service").unwrap();
        let starts: Vec<_> = h.runs.iter().map(|r| r.start.clone()).collect();
        assert_eq!(
            starts,
            [
                StartKind::First,
                StartKind::AutomaticRestart,
                StartKind::ManualStart {
                    by_pid: 900,
                    command: "systemctl start".into()
                },
                StartKind::Manual {
                    by_pid: 901,
                    command: "systemctl restart".into()
                },
            ]
        );
        assert_eq!(h.restarts(), 2);
        assert_eq!(
            starts_text(&h.run_starts(), &[]),
            "2 restarts: 1 automatic, 1 by systemctl restart (pid 901); 1 start by systemctl start (pid 900)"
        );
        assert_eq!(h.trailing_automatic_restarts(), 0);
        // After the restart by hand systemd counts none: nothing to explain.
        let sd = |n_restarts| SystemdUnit {
            id: "u.service".into(),
            service: Some(crate::systemd::ServiceFacts {
                n_restarts,
                ..Default::default()
            }),
            ..Default::default()
        };
        let u = sd(0);
        assert_eq!(
            n_restarts_line(h, Some(&u)).as_deref(),
            Some(
                "systemd's NRestarts=0 counts its automatic restarts since run 4 was started by systemctl restart (pid 901); systemd resets it at a start that follows a run it did not restart (tracer saw 1 in all)"
            )
        );
        let u = sd(1);
        assert_eq!(n_restarts_line(h, Some(&u)), None, "nothing to explain");
    }
}
