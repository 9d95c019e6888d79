//! The unit model: from kernel events alone, which unit every process belongs to, each
//! unit's runs (one per activation: its cgroup appearing to its cgroup going), the
//! commands each run executed, its main process and how the run ended, restarts, crash
//! loops, and the cause of each failure.
//!
//! systemd gives a unit a fresh cgroup for every activation and removes it when the unit
//! stops, so a run is bracketed by the cgroup's mkdir and rmdir. Inside a run, the
//! processes whose parent is the service manager are the unit's commands (ExecStartPre,
//! ExecStart, ...); everything they fork is helpers. systemd ≥ 255 first execs
//! `systemd-executor` in each command's process: that exec is plumbing, the command is
//! what the executor execs next.
//!
//! The model is in rooms along its seams: the process table ([`procs`]), runs and their
//! data ([`run`]), a run's lifecycle from its cgroup ([`lifecycle`]), how it ended and why
//! ([`outcome`], [`cause`]), and what systemd's ways imply ([`systemd`]: roles, service
//! types, the executor).

pub mod cause;
mod changes;
pub mod facts;
mod lifecycle;
mod outcome;
pub mod perm;
mod procs;
pub mod run;
pub mod systemd;

use std::collections::{BTreeMap, VecDeque};

use self::{
    cause::AccessRefusal,
    facts::Facts,
    lifecycle::SystemctlCall,
    procs::{Proc, SignalSeen, Unplaced},
};
pub use self::{
    changes::Change,
    lifecycle::MAX_ENDED_UNITS,
    outcome::clean_exit,
    run::{
        ByHand, Command, FailedExec, MAX_COMMANDS_PER_RUN, Outcome, Run, RunStarts, StartKind,
        UnitHistory, UnitState,
    },
    systemd::{Role, ServiceType},
};
use crate::{enrich::Enriched, event::EventKind, idhash::IdMap};

/// Tunables of the model.
#[derive(Clone, Debug)]
pub struct ModelConfig {
    /// A unit is in a crash loop after this many failed runs ...
    pub crash_loop_runs: usize,
    /// ... within this window.
    pub crash_loop_window_ns: u64,
    /// A `systemctl restart|start|stop` this long before a run started makes it manual.
    pub manual_window_ns: u64,
}

impl Default for ModelConfig {
    fn default() -> Self {
        Self {
            crash_loop_runs: 3,
            crash_loop_window_ns: 60_000_000_000,
            manual_window_ns: 10_000_000_000,
        }
    }
}

/// The model: feed it events in order with [`Model::apply`].
pub struct Model<F: Facts> {
    facts: F,
    cfg: ModelConfig,
    procs: IdMap<u32, Proc>,
    units: BTreeMap<String, UnitHistory>,
    /// How many of `units` have their last run ended (kept in step by `begin_run` and
    /// `end_run`, so that forgetting ended units costs a scan only when it forgets).
    ended_units: usize,
    signals: IdMap<u32, SignalSeen>,
    oom_victims: IdMap<u32, u64>,
    /// The kernel's record of a service manager's check that refused a command, kept
    /// until the checking process's exit (203/EXEC) tells whose it was.
    access_refusals: IdMap<u32, AccessRefusal>,
    systemctl: VecDeque<SystemctlCall>,
    unplaced: VecDeque<Unplaced>,
    last_ts: u64,
    /// Serial of the next unit history made.
    next_serial: u64,
    /// Whether to keep what changes, and what changed since it was last taken.
    announcing: bool,
    changes: Vec<Change>,
}

impl<F: Facts> Model<F> {
    pub fn new(facts: F, cfg: ModelConfig) -> Self {
        Self {
            facts,
            cfg,
            procs: IdMap::default(),
            units: BTreeMap::new(),
            ended_units: 0,
            signals: IdMap::default(),
            oom_victims: IdMap::default(),
            access_refusals: IdMap::default(),
            systemctl: VecDeque::new(),
            unplaced: VecDeque::new(),
            last_ts: 0,
            next_serial: 1,
            announcing: false,
            changes: Vec::new(),
        }
    }

    /// The units seen, by name.
    pub fn units(&self) -> impl Iterator<Item = &UnitHistory> {
        self.units.values()
    }

    pub fn unit(&self, name: &str) -> Option<&UnitHistory> {
        self.units
            .get(name)
            .or_else(|| self.units.get(&format!("{name}.service")))
    }

    /// The unit a live process was placed in.
    pub fn unit_of_pid(&self, pid: u32) -> Option<&str> {
        self.procs.get(&pid)?.unit.as_ref().map(|(u, _)| u.as_str())
    }

    /// Processes currently tracked (bounded by the live ones plus in-flight state).
    pub fn tracked_processes(&self) -> usize {
        self.procs.len()
    }

    /// Applies one event.
    pub fn apply(&mut self, e: &Enriched) {
        let ev = &e.ev;
        self.last_ts = self.last_ts.max(ev.ts_ns);
        match &ev.kind {
            EventKind::CgroupMkdir { cgroup } => self.on_cgroup_mkdir(e, cgroup),
            EventKind::CgroupRmdir { cgroup } => self.on_cgroup_rmdir(e, cgroup),
            EventKind::CgroupAttach { cgroup, target_pid } => {
                self.on_cgroup_attach(e, cgroup, *target_pid);
            }
            EventKind::Fork { child_pid } => self.on_fork(e, *child_pid),
            EventKind::Exec {
                ppid,
                filename,
                argv,
                ..
            } => self.on_exec(e, *ppid, filename, argv),
            EventKind::ExecFailed {
                ppid,
                uid,
                errno,
                filename,
                ..
            } => self.on_exec_failed(e, (*ppid, *uid), *errno, filename),
            EventKind::Exit { ppid, status, .. } => self.on_exit(e, *ppid, *status),
            EventKind::Signal {
                target_pid, signal, ..
            } => self.on_signal(e, *target_pid, *signal),
            EventKind::OomKill { victim_pid } => self.on_oom_kill(e, *victim_pid),
            EventKind::AccessFailed {
                uid,
                gid,
                errno,
                syscall,
                file,
                ..
            } => self.on_access_failed(
                e,
                AccessRefusal {
                    ts_ns: ev.ts_ns,
                    errno: *errno,
                    syscall: *syscall,
                    uid: *uid,
                    gid: *gid,
                    file: file.clone(),
                },
            ),
        }
    }
}

#[cfg(test)]
mod tests;
