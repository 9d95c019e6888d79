//! A unit's runs and what each ran: the model's account, as the reports read it.

use serde::Serialize;

use super::{
    cause::{Cause, RefusedFile},
    facts::UnitFile,
    systemd::Role,
};
use crate::{
    event::{Errno, WaitStatus},
    idhash::IdSet,
    unit::UnitRef,
};

/// Why a run began.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "start", rename_all = "kebab-case")]
pub enum StartKind {
    /// The unit's first run seen.
    First,
    /// Started again by systemd after the previous run failed (Restart=).
    AutomaticRestart,
    /// Restarted after `systemctl restart` (or try-restart, reload-or-restart) asked:
    /// the pid of that systemctl, and its verb.
    Manual { by_pid: u32, command: String },
    /// Started after `systemctl start` asked: an activation by hand, not a restart (the
    /// earlier run had ended, and systemd was not going to restart it).
    ManualStart { by_pid: u32, command: String },
    /// Started again, with no sign of who asked (a timer, a socket, a dependency, a D-Bus
    /// client): an activation, not known to be a restart.
    Again,
    /// Already running when the tracer started.
    FoundAtStart,
}

impl StartKind {
    /// A restart: systemd's own after a failure (Restart=), or one asked for by hand.
    pub fn is_restart(&self) -> bool {
        matches!(self, Self::AutomaticRestart | Self::Manual { .. })
    }
}

/// How a unit's runs after its first began: restarts (systemd's own, or asked for by
/// hand) apart from activations.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct RunStarts {
    /// systemd's own restarts after a failure (Restart=).
    pub automatic_restarts: usize,
    /// `systemctl restart` and its kin.
    pub manual_restarts: usize,
    /// `systemctl start`.
    pub manual_starts: usize,
    /// Started again with no sign of who asked.
    pub other_starts: usize,
    /// The latest restart asked for by hand.
    pub last_manual_restart: Option<ByHand>,
    /// The latest start asked for by hand.
    pub last_manual_start: Option<ByHand>,
}

/// A request by hand: the pid of the systemctl that made it, and its command.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ByHand {
    pub pid: u32,
    pub command: String,
}

/// One process a run executed.
#[derive(Clone, Debug, Serialize)]
pub struct Command {
    pub pid: u32,
    /// First seen (fork or exec), CLOCK_BOOTTIME ns.
    pub started_ns: u64,
    /// The program it executed (None: it never got past systemd's setup).
    pub program: Option<String>,
    pub argv: Vec<String>,
    /// Started by the service manager itself (ExecStart and friends), not by another command.
    pub top_level: bool,
    /// `ExecStartPre`, `ExecStart`, ... where the unit file tells.
    pub role: Option<Role>,
    /// When it executed its program (after systemd ≥ 255's executor), CLOCK_BOOTTIME ns.
    pub exec_ns: Option<u64>,
    /// When pid 1 moved it into the unit's cgroup (systemd ≤ 254 forks its children in
    /// its own cgroup and moves them; later versions clone them straight into the unit's).
    pub moved_ns: Option<u64>,
    pub exited_ns: Option<u64>,
    pub status: Option<WaitStatus>,
    /// Failed execs in this process.
    pub failed_execs: Vec<FailedExec>,
}

impl Command {
    /// A process first seen at `started_ns`, of which nothing else is known yet.
    pub fn new(pid: u32, started_ns: u64, top_level: bool) -> Self {
        Self {
            pid,
            started_ns,
            program: None,
            argv: Vec::new(),
            top_level,
            role: None,
            exec_ns: None,
            moved_ns: None,
            exited_ns: None,
            status: None,
            failed_execs: Vec::new(),
        }
    }
}

/// An exec that failed, with the file's state soon after it did.
#[derive(Clone, Debug, Serialize)]
pub struct FailedExec {
    pub ts_ns: u64,
    pub path: String,
    pub errno: Errno,
    /// The file's state (the JSON has its problem).
    #[serde(serialize_with = "problem_only")]
    pub problem: RefusedFile,
}

fn problem_only<S: serde::Serializer>(f: &RefusedFile, s: S) -> Result<S::Ok, S::Error> {
    f.problem().serialize(s)
}

/// How a run ended.
#[derive(Clone, Debug, Serialize)]
pub struct Outcome {
    pub pid: u32,
    pub status: WaitStatus,
    pub success: bool,
    pub cause: Option<Cause>,
}

/// One activation of a unit.
#[derive(Clone, Debug, Serialize)]
pub struct Run {
    /// 1 for the first run seen.
    pub number: usize,
    pub cgroup_id: Option<u64>,
    pub started_ns: u64,
    pub ended_ns: Option<u64>,
    #[serde(flatten)]
    pub start: StartKind,
    pub commands: Vec<Command>,
    pub main_pid: Option<u32>,
    pub outcome: Option<Outcome>,
    /// The pids of `commands`.
    #[serde(skip)]
    pub(super) pids: IdSet<u32>,
    /// Its main process's start was announced.
    #[serde(skip)]
    pub(super) timed: bool,
}

/// A run keeps at most this many commands: past it, half of its helpers (processes not
/// started by the service manager) that have exited are forgotten, the oldest first, so a
/// unit that runs processes by the million (a session's shell loop) does not grow.
pub const MAX_COMMANDS_PER_RUN: usize = 512;

impl Run {
    pub(super) fn push_command(&mut self, cmd: Command) {
        if self.commands.len() >= MAX_COMMANDS_PER_RUN {
            let main = self.main_pid;
            let forgettable =
                |c: &Command| !c.top_level && c.exited_ns.is_some() && Some(c.pid) != main;
            let n = self.commands.iter().filter(|c| forgettable(c)).count();
            let mut forget = n.saturating_sub(n / 2).max(usize::from(n > 0));
            self.commands.retain(|c| {
                let gone = forget > 0 && forgettable(c);
                forget -= usize::from(gone);
                !gone
            });
            self.pids = self.commands.iter().map(|c| c.pid).collect();
        }
        self.pids.insert(cmd.pid);
        self.commands.push(cmd);
    }

    pub(super) fn command_mut(&mut self, pid: u32) -> Option<&mut Command> {
        self.commands.iter_mut().rev().find(|c| c.pid == pid)
    }

    pub fn command(&self, pid: u32) -> Option<&Command> {
        self.commands.iter().rev().find(|c| c.pid == pid)
    }

    /// When its main process was executed, the first time that is known: how long after
    /// the run began (None: not known, or told before).
    pub(super) fn main_started(&mut self) -> Option<u64> {
        if self.timed {
            return None;
        }
        let main = self.command(self.main_pid?)?;
        main.program.as_ref()?;
        let after = main.started_ns.saturating_sub(self.started_ns);
        self.timed = true;
        Some(after)
    }

    /// Failed: the main process failed, or the run ended without one that succeeded.
    pub fn failed(&self) -> bool {
        self.outcome.as_ref().is_some_and(|o| !o.success)
    }

    pub fn is_open(&self) -> bool {
        self.ended_ns.is_none()
    }
}

/// Everything seen of one unit.
#[derive(Clone, Debug, Serialize)]
pub struct UnitHistory {
    pub unit: UnitRef,
    pub runs: Vec<Run>,
    /// What its unit file says, when one was found.
    pub file: Option<UnitFile>,
    /// Failed runs within the crash-loop window at the last failure.
    pub crash_loop: bool,
    /// Tells this history from an earlier one of the same name that was forgotten.
    #[serde(skip)]
    pub serial: u64,
}

impl UnitHistory {
    /// Runs that were restarts: systemd's own after a failure, or asked for by hand (a
    /// `systemctl start` after the unit had ended is an activation, not a restart).
    pub fn restarts(&self) -> usize {
        self.runs.iter().filter(|r| r.start.is_restart()).count()
    }

    /// How the runs after the first began.
    pub fn run_starts(&self) -> RunStarts {
        let mut n = RunStarts::default();
        for r in &self.runs {
            match &r.start {
                StartKind::AutomaticRestart => n.automatic_restarts += 1,
                StartKind::Manual { by_pid, command } => {
                    n.manual_restarts += 1;
                    n.last_manual_restart = Some(ByHand {
                        pid: *by_pid,
                        command: command.clone(),
                    });
                }
                StartKind::ManualStart { by_pid, command } => {
                    n.manual_starts += 1;
                    n.last_manual_start = Some(ByHand {
                        pid: *by_pid,
                        command: command.clone(),
                    });
                }
                StartKind::Again => n.other_starts += 1,
                StartKind::First | StartKind::FoundAtStart => {}
            }
        }
        n
    }

    /// systemd's own restarts since the last run that began otherwise: what systemd's
    /// NRestarts counts (systemd resets it at a start that follows a run it did not
    /// restart).
    pub fn trailing_automatic_restarts(&self) -> usize {
        self.runs
            .iter()
            .rev()
            .take_while(|r| r.start == StartKind::AutomaticRestart)
            .count()
    }

    /// The latest failure, if any run failed.
    pub fn last_failure(&self) -> Option<&Run> {
        self.runs.iter().rev().find(|r| r.failed())
    }

    /// What the unit looks like now, as far as the events tell.
    pub fn state(&self) -> UnitState {
        let remain = self.file.as_ref().is_some_and(|f| f.remain_after_exit);
        match self.runs.last() {
            None => UnitState::Unknown,
            Some(r) if r.failed() => UnitState::Failed,
            Some(r) if r.is_open() && r.commands.iter().any(|c| c.exited_ns.is_none()) => {
                UnitState::Running
            }
            Some(r) if r.outcome.is_some() && (r.is_open() || remain) => UnitState::Exited,
            Some(r) if r.is_open() => UnitState::Active,
            Some(_) => UnitState::Inactive,
        }
    }
}

/// A unit's state as the events tell it (systemd's own may differ: it knows what the
/// events cannot, such as RemainAfterExit= without a unit file).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum UnitState {
    Unknown,
    Failed,
    Running,
    Exited,
    Active,
    Inactive,
}

impl UnitState {
    /// As `--state` names it: `failed`, `running`, ...
    pub fn name(self) -> &'static str {
        match self {
            Self::Unknown => "unknown",
            Self::Failed => "failed",
            Self::Running => "running",
            Self::Exited => "exited",
            Self::Active => "active",
            Self::Inactive => "inactive",
        }
    }
}

impl std::fmt::Display for UnitState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.pad(self.name())
    }
}

impl PartialEq<&str> for UnitState {
    fn eq(&self, other: &&str) -> bool {
        self.name() == *other
    }
}
