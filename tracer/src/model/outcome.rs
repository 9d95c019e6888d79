//! How a run ended: which exit was its main process's, and the cause of a failure from
//! what was seen around it (a failed exec, a signal and its sender, the OOM killer,
//! systemd's setup exit statuses).

use super::{
    Change, Model, ModelConfig,
    cause::{
        AccessRefusal, Cause, ExecEvidence, RefusedFile, SetupDetail, systemd_exit_status_name,
    },
    facts::{Facts, UnitFile},
    procs::{SignalSeen, Unplaced},
    run::{Outcome, Run, UnitHistory},
    systemd::{Role, forking},
};
use crate::{
    event::{Signal, WaitStatus},
    unit::UnitRef,
};

impl<F: Facts> Model<F> {
    /// A process's exit, once it has been placed (or not) in a unit's run.
    pub(super) fn account_exit(
        &mut self,
        pid: u32,
        ppid: u32,
        comm: &str,
        status: WaitStatus,
        ts_ns: u64,
    ) {
        let placed = self.procs.remove(&pid).and_then(|p| p.unit);
        let signal = self.signals.remove(&pid);
        let oom = self.oom_victims.remove(&pid).is_some();
        let refusal = self.access_refusals.remove(&pid);
        let Some((unit, run_index)) = placed else {
            // A service-manager child that failed its setup outside any unit's cgroup.
            if ppid == 1
                && comm.starts_with('(')
                && status
                    .exit_code()
                    .is_some_and(|c| systemd_exit_status_name(c).is_some())
            {
                self.unplaced.push_back(Unplaced {
                    ts_ns,
                    pid,
                    comm: comm.to_owned(),
                    status,
                    refusal,
                });
                while self.unplaced.len() > 64 {
                    self.unplaced.pop_front();
                }
            }
            return;
        };
        let Some(h) = self.units.get_mut(&unit) else {
            return;
        };
        let file = h.file.clone();
        let Some(run) = h.runs.get_mut(run_index) else {
            return;
        };
        let Some(cmd) = run.command_mut(pid) else {
            return;
        };
        cmd.exited_ns = Some(ts_ns);
        cmd.status = Some(status);
        let top_level = cmd.top_level;
        let role = cmd.role;
        let is_exec_start = role == Some(Role::ExecStart);
        // A command whose failure systemd ignores (its line's `-` prefix).
        let ignored = cmd.program.as_ref().is_some_and(|p| {
            file.as_ref()
                .is_some_and(|f| f.failure_ignored.iter().any(|i| i == p))
        });
        let setup_failure = cmd.program.is_none()
            && status
                .exit_code()
                .is_some_and(|c| systemd_exit_status_name(c).is_some());
        let forking = forking(file.as_ref());

        // Which exit ends the run's main process:
        // - a command that failed systemd's setup, or any failing top-level command;
        // - ExecStart's process (for Type=forking: unless it exited 0, leaving a daemon);
        // - without a unit file: the last top-level command to exit;
        // - for Type=forking, the daemon ExecStart left behind.
        // (Once a failing control process decided the run, the main process's later
        // exit, from the stop that failure brings, decides nothing.)
        // A failing ExecReload= fails the reload, not the run: systemd keeps the unit
        // running (its ReloadResult= says it), so it decides nothing here.
        let reload = role == Some(Role::ExecReload);
        // A stop's command that fails after the main process ended cleanly fails the
        // unit all the same: systemd counts ExecStop= and ExecStopPost= in its Result=.
        let stop_failed_late = top_level
            && !status.success()
            && !ignored
            && matches!(role, Some(Role::ExecStop | Role::ExecStopPost))
            && run.outcome.as_ref().is_some_and(|o| o.success);
        let is_main = if reload || (ignored && !is_exec_start) {
            false
        } else if stop_failed_late {
            true
        } else if run.outcome.is_some() {
            false
        } else if run.main_pid == Some(pid) {
            true
        } else if top_level {
            setup_failure
                || !status.success()
                || (is_exec_start && !forking)
                || (file.is_none() && !forking)
        } else {
            forking
                && run
                    .commands
                    .iter()
                    .any(|c| c.role == Some(Role::ExecStart) && c.status == Some(WaitStatus(0)))
        };
        let mut changes = Vec::new();
        if is_exec_start && forking && status.success() {
            // The daemon is the process still running in the cgroup.
            run.main_pid = run
                .commands
                .iter()
                .find(|c| !c.top_level && c.exited_ns.is_none())
                .map(|c| c.pid);
            changes.extend(main_started(&h.unit, run));
        } else if is_main {
            // A failing control process (ExecStartPost=, ...) ends the run, but the main
            // process stays ExecStart's.
            run.main_pid.get_or_insert(pid);
            changes.extend(main_started(&h.unit, run));
            let seen = Seen {
                signal,
                oom,
                refusal,
            };
            let outcome = outcome_of(run, pid, status, file.as_ref(), &self.facts, seen);
            changes.push(decided(&h.unit, run, outcome));
            changes.extend(update_crash_loop(h, &self.cfg));
        }
        if self.announcing {
            self.changes.extend(changes);
        }
    }
}

/// What the kernel saw of a process before it exited, besides its own events.
#[derive(Default)]
pub(super) struct Seen {
    /// A terminating signal another process sent it.
    pub signal: Option<SignalSeen>,
    /// The OOM killer chose it.
    pub oom: bool,
    /// A service manager's check of the command it was to exec failed in it.
    pub refusal: Option<AccessRefusal>,
}

/// How a run ended, from its main process's exit and what was seen around it.
pub(super) fn outcome_of(
    run: &Run,
    pid: u32,
    status: WaitStatus,
    file: Option<&UnitFile>,
    facts: &impl Facts,
    seen: Seen,
) -> Outcome {
    let Seen {
        signal,
        oom,
        refusal,
    } = seen;
    let cmd = run.command(pid);
    let program = cmd
        .and_then(|c| c.program.clone())
        .or_else(|| file.and_then(|f| f.exec_start.first().cloned()))
        .unwrap_or_else(|| "the main process".to_owned());
    // (The cause names the role as a setting's name.)
    let role = cmd
        .and_then(|c| c.role)
        .unwrap_or(Role::ExecStart)
        .name()
        .to_owned();
    // What the unit file counts a success (SuccessExitStatus=, a `-` prefix) has no cause.
    // (Both apply to ExecStart's process only.) And an ExecCondition= that exits 1–254
    // skips the unit: not a failure.
    let counted = match cmd.and_then(|c| c.role).unwrap_or(Role::ExecStart) {
        Role::ExecStart => file.is_some_and(|f| f.counts_as_success(status)),
        Role::ExecCondition => status.exit_code().is_some_and(|c| (1..255).contains(&c)),
        _ => false,
    };
    let success = clean_exit(status) || counted;
    let cause = if status.success() || counted {
        None
    } else if oom {
        Some(Cause::OomKilled { pid, program })
    } else if let Some(sig) = status.signal() {
        let sender = signal.filter(|s| s.sig == sig);
        Some(Cause::Killed {
            signal: Signal(sig),
            core_dumped: status.core_dumped(),
            sender_pid: sender.as_ref().map(|s| s.sender_pid),
            after_sigterm_ms: sender
                .as_ref()
                .and_then(|s| s.after_sigterm_ns)
                .map(|ns| ns / 1_000_000),
            sender_comm: sender.map(|s| s.sender_comm),
            pid,
            program,
        })
    } else {
        let code = status.exit_code().unwrap_or(0);
        let failed_exec = cmd.and_then(|c| c.failed_execs.last());
        match (code, failed_exec) {
            // The exec itself failed: the kernel saw execve return the error.
            (203, Some(f)) => Some(Cause::ExecFailed {
                command: role,
                path: f.path.clone(),
                file: f.problem.clone().with_settings(file),
                evidence: ExecEvidence::Execve,
                pid,
            }),
            // systemd's own check refused the file before any execve, and the kernel
            // recorded the check: its errno and the file as it was then.
            (203, None) if let Some(check) = refusal => {
                let name = check.file.as_ref().map(|f| f.file_name.as_str());
                let (command, path) = checked_command(file, name, role);
                // The look only names a noexec mount and the owner (the process is gone:
                // the host's view of the path).
                let lookup = facts.file(&path, None);
                Some(Cause::ExecFailed {
                    command,
                    path,
                    file: RefusedFile::check_refused(check, lookup),
                    evidence: ExecEvidence::AccessCheck,
                    pid,
                })
            }
            // systemd's own check refused the file before any execve, unrecorded: the
            // file's state now says why.
            (203, None) if file.is_some_and(|f| !f.exec_start.is_empty()) => {
                let path = file.expect("checked").exec_start[0].clone();
                // The process is gone: the host's view of the path.
                let lookup = facts.file(&path, None);
                Some(Cause::ExecFailed {
                    command: role,
                    path,
                    file: RefusedFile::checked(lookup),
                    evidence: ExecEvidence::SystemdCheck,
                    pid,
                })
            }
            (c, _)
                if systemd_exit_status_name(c).is_some()
                    && cmd.is_none_or(|c| c.program.is_none()) =>
            {
                let (setting, detail) = setup_setting(c, file, facts);
                Some(Cause::SetupFailed {
                    status: c,
                    name: systemd_exit_status_name(c).unwrap_or_default().to_owned(),
                    setting,
                    detail,
                    pid,
                })
            }
            (c, _) => Some(Cause::ExitCode {
                code: c,
                pid,
                program,
                command: (role != Role::ExecStart.name()).then_some(role),
            }),
        }
    };
    Outcome {
        pid,
        status,
        success,
        cause,
    }
}

/// The command a refused check was for: of the unit file's ExecStartPre= and ExecStart=
/// programs, the one with the name the kernel recorded; else the first ExecStart=; else
/// the name itself. Returns the setting's name and the path.
fn checked_command(file: Option<&UnitFile>, name: Option<&str>, role: String) -> (String, String) {
    let base = |p: &str| p.rsplit('/').next().unwrap_or(p).to_owned();
    if let (Some(f), Some(name)) = (file, name) {
        if let Some(p) = f.exec_start.iter().find(|p| base(p) == name) {
            return ("ExecStart".into(), p.clone());
        }
        if let Some(p) = f.exec_start_pre.iter().find(|p| base(p) == name) {
            return ("ExecStartPre".into(), p.clone());
        }
    }
    match (file.and_then(|f| f.exec_start.first()), name) {
        (Some(p), _) => (role, p.clone()),
        (None, Some(name)) => (role, name.to_owned()),
        (None, None) => (role, "the command".to_owned()),
    }
}

/// systemd counts exit 0 and death by SIGHUP, SIGINT, SIGTERM or SIGPIPE (how a stop ends
/// a service) as a clean end.
pub fn clean_exit(status: WaitStatus) -> bool {
    status.success()
        || status.signal().is_some_and(|s| {
            [libc::SIGHUP, libc::SIGINT, libc::SIGTERM, libc::SIGPIPE].contains(&s)
        })
}

/// The unit-file setting behind a setup failure, and what is wrong with it.
fn setup_setting(
    status: u8,
    file: Option<&UnitFile>,
    facts: &impl Facts,
) -> (Option<String>, SetupDetail) {
    let unknown = (None, SetupDetail::Known(None));
    let Some(file) = file else {
        return unknown;
    };
    match status {
        200 => match &file.working_directory {
            Some(dir) => (
                Some(format!("WorkingDirectory={dir}")),
                SetupDetail::Directory(facts.file(dir.trim_start_matches('-'), None)),
            ),
            None => unknown,
        },
        217 => match &file.user {
            Some(user) => (
                Some(format!("User={user}")),
                SetupDetail::User(facts.user_exists(user)),
            ),
            None => unknown,
        },
        _ => unknown,
    }
}

/// Whether the unit is in a crash loop now; the change when it just entered one.
pub(super) fn update_crash_loop(h: &mut UnitHistory, cfg: &ModelConfig) -> Option<Change> {
    let was = h.crash_loop;
    let Some(last) = h.runs.iter().rev().find(|r| r.failed()) else {
        h.crash_loop = false;
        return None;
    };
    let end = last.started_ns;
    let failed = h
        .runs
        .iter()
        .filter(|r| r.failed() && end.saturating_sub(r.started_ns) <= cfg.crash_loop_window_ns)
        .count();
    h.crash_loop = failed >= cfg.crash_loop_runs;
    (h.crash_loop && !was).then(|| Change::CrashLoop {
        unit: h.unit.clone(),
    })
}

/// Records how a run ended; the change that announces it.
pub(super) fn decided(unit: &UnitRef, run: &mut Run, outcome: Outcome) -> Change {
    let change = Change::RunOutcome {
        unit: unit.clone(),
        run: run.number,
        failed: !outcome.success,
        cause: outcome.cause.clone(),
    };
    run.outcome = Some(outcome);
    change
}

/// The change when a run's main process is first known to have been executed.
pub(super) fn main_started(unit: &UnitRef, run: &mut Run) -> Option<Change> {
    let after_ns = run.main_started()?;
    Some(Change::MainStarted {
        unit: unit.clone(),
        run: run.number,
        after_ns,
    })
}
