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

pub mod cause;
pub mod facts;

use std::collections::{BTreeMap, VecDeque};

use serde::Serialize;

use self::{
    cause::{Cause, ExecEvidence, FileProblem, systemd_exit_status_name},
    facts::{Facts, UnitFile},
};
use crate::{
    enrich::{Enriched, Unit},
    event::{Errno, Event, EventKind, Signal, WaitStatus},
    idhash::{IdMap, IdSet},
    unit::{UnitKind, UnitRef, unit_of_cgroup},
};

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

/// Why a run began.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "start", rename_all = "kebab-case")]
pub enum StartKind {
    /// The unit's first run seen.
    First,
    /// Started again by systemd after the previous run failed (Restart=).
    AutomaticRestart,
    /// Started again after `systemctl` asked (the pid of that systemctl).
    Manual { by_pid: u32, command: String },
    /// Started again, with no sign of who asked.
    Again,
    /// Already running when the tracer started.
    FoundAtStart,
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
    pub role: Option<String>,
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

/// An exec that failed, with the file's state when it did.
#[derive(Clone, Debug, Serialize)]
pub struct FailedExec {
    pub ts_ns: u64,
    pub path: String,
    pub errno: Errno,
    pub problem: FileProblem,
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
    pids: IdSet<u32>,
}

/// A run keeps at most this many commands: past it, half of its helpers (processes not
/// started by the service manager) that have exited are forgotten, the oldest first, so a
/// unit that runs processes by the million (a session's shell loop) does not grow.
pub const MAX_COMMANDS_PER_RUN: usize = 512;

impl Run {
    fn push_command(&mut self, cmd: Command) {
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

    fn command_mut(&mut self, pid: u32) -> Option<&mut Command> {
        self.commands.iter_mut().rev().find(|c| c.pid == pid)
    }

    pub fn command(&self, pid: u32) -> Option<&Command> {
        self.commands.iter().rev().find(|c| c.pid == pid)
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
    /// Runs after the first.
    pub fn restarts(&self) -> usize {
        self.runs
            .iter()
            .filter(|r| !matches!(r.start, StartKind::First | StartKind::FoundAtStart))
            .count()
    }

    /// The latest failure, if any run failed.
    pub fn last_failure(&self) -> Option<&Run> {
        self.runs.iter().rev().find(|r| r.failed())
    }

    /// What the unit looks like now, as far as the events tell.
    pub fn state(&self) -> &'static str {
        let remain = self.file.as_ref().is_some_and(|f| f.remain_after_exit);
        match self.runs.last() {
            None => "unknown",
            Some(r) if r.failed() => "failed",
            Some(r) if r.is_open() && r.commands.iter().any(|c| c.exited_ns.is_none()) => "running",
            Some(r) if r.outcome.is_some() && (r.is_open() || remain) => "exited",
            Some(r) if r.is_open() => "active",
            Some(_) => "inactive",
        }
    }
}

/// A process the model knows.
#[derive(Clone, Debug)]
struct Proc {
    ppid: u32,
    comm: String,
    /// When its fork was seen.
    born_ns: Option<u64>,
    /// The unit and run its last event placed it in.
    unit: Option<(String, usize)>,
}

/// A terminating signal seen on its way to a process.
#[derive(Clone, Debug)]
struct SignalSeen {
    sig: i32,
    sender_pid: u32,
    sender_comm: String,
}

/// A `systemctl VERB UNIT...` seen running.
#[derive(Clone, Debug)]
struct SystemctlCall {
    ts_ns: u64,
    pid: u32,
    verb: String,
    units: Vec<String>,
}

/// A service-manager child that failed its setup before it was moved into its unit's
/// cgroup (systemd ≤ 254 forks in /init.scope and moves the child after).
#[derive(Clone, Debug)]
struct Unplaced {
    ts_ns: u64,
    pid: u32,
    comm: String,
    status: WaitStatus,
}

/// Bound on the tables of in-flight correlation state.
const MAX_PENDING: usize = 65_536;

/// Units kept whose last run has ended. Transient scopes and services (`systemd-run`,
/// sessions) come and go by the thousand on a busy host: past this many, the ones that
/// ended longest ago are forgotten (the journal keeps them), so memory does not grow with
/// the number of units that have come and gone.
pub const MAX_ENDED_UNITS: usize = 1000;

/// The model: feed it events in order with [`Model::apply`].
pub struct Model<F: Facts> {
    facts: F,
    cfg: ModelConfig,
    procs: IdMap<u32, Proc>,
    units: BTreeMap<String, UnitHistory>,
    signals: IdMap<u32, SignalSeen>,
    oom_victims: IdMap<u32, u64>,
    systemctl: VecDeque<SystemctlCall>,
    unplaced: VecDeque<Unplaced>,
    last_ts: u64,
    /// Serial of the next unit history made.
    next_serial: u64,
}

impl<F: Facts> Model<F> {
    pub fn new(facts: F, cfg: ModelConfig) -> Self {
        Self {
            facts,
            cfg,
            procs: IdMap::default(),
            units: BTreeMap::new(),
            signals: IdMap::default(),
            oom_victims: IdMap::default(),
            systemctl: VecDeque::new(),
            unplaced: VecDeque::new(),
            last_ts: 0,
            next_serial: 1,
        }
    }

    /// Takes in a process that was running before the programs were attached (the
    /// start-up snapshot). Its later events find it placed already, so nothing is counted
    /// twice; a fork of the same pid later means pid reuse and replaces it.
    pub fn found_at_start(&mut self, p: &crate::procfs::ProcInfo) {
        let Some(path) = &p.cgroup else {
            return;
        };
        let Some(unit) = unit_of_cgroup(path).filter(runs_in_its_cgroup) else {
            return;
        };
        let name = unit.name.clone();
        if !self
            .units
            .get(&name)
            .is_some_and(|h| h.runs.last().is_some_and(Run::is_open))
        {
            self.begin_run(unit, 0, p.start_ns);
            if let Some(r) = self.units.get_mut(&name).and_then(|h| h.runs.last_mut()) {
                r.start = StartKind::FoundAtStart;
                r.cgroup_id = None;
            }
        }
        let comm = p.comm.clone();
        let top_level = p.ppid == 1
            || self
                .procs
                .get(&p.ppid)
                .is_some_and(|pp| pp.comm == "systemd");
        let h = self.units.get_mut(&name).expect("ensured above");
        let file = h.file.clone();
        let run_index = h.runs.len() - 1;
        let run = &mut h.runs[run_index];
        run.started_ns = run.started_ns.min(p.start_ns);
        let index = run
            .commands
            .iter()
            .filter(|c| c.top_level && c.program.is_some())
            .count();
        let program = p.exe.clone().or_else(|| p.cmdline.first().cloned());
        let role = if top_level {
            program
                .as_deref()
                .and_then(|prog| role_of(file.as_ref(), prog, index))
        } else {
            None
        };
        if role.as_deref() == Some("ExecStart")
            || (top_level && run.main_pid.is_none() && file.is_none())
        {
            run.main_pid = Some(p.pid);
        }
        run.push_command(Command {
            pid: p.pid,
            started_ns: p.start_ns,
            program,
            argv: p.cmdline.clone(),
            top_level,
            role,
            exec_ns: Some(p.start_ns),
            moved_ns: None,
            exited_ns: None,
            status: None,
            failed_execs: Vec::new(),
        });
        self.procs.insert(
            p.pid,
            Proc {
                ppid: p.ppid,
                comm,
                born_ns: Some(p.start_ns),
                unit: Some((name, run_index)),
            },
        );
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
        // The unit whose run the event's task is in; for a cgroup event, the unit of the
        // cgroup acted on.
        let task_unit = e.unit.as_deref().filter(|u| runs_in_its_cgroup(u));
        let subject_unit = e
            .subject
            .as_ref()
            .and_then(|s| s.unit.as_deref())
            .filter(|u| runs_in_its_cgroup(u));
        match &ev.kind {
            EventKind::CgroupMkdir { cgroup } => {
                if let Some(u) = e.subject.as_ref().and_then(|s| s.unit.as_deref())
                    && u.cgroup == cgroup.path
                    && u.kind != UnitKind::Slice
                {
                    self.begin_run(u.unit.clone(), cgroup.id, ev.ts_ns);
                }
            }
            EventKind::CgroupRmdir { cgroup } => {
                if let Some(u) = e.subject.as_ref().and_then(|s| s.unit.as_deref())
                    && u.cgroup == cgroup.path
                {
                    self.end_run(&u.name, cgroup.id, ev.ts_ns);
                }
            }
            EventKind::CgroupAttach { cgroup, target_pid } => {
                // systemd ≤ 254 can move a child that has already exited (failing its
                // setup at once): its exit was seen outside any unit; account it now.
                if let Some(i) = self.unplaced.iter().position(|u| u.pid == *target_pid) {
                    let u = self.unplaced.remove(i).expect("index from position");
                    self.place(u.pid, 1, &u.comm, (subject_unit, cgroup.id), u.ts_ns);
                    self.account_exit(u.pid, 1, &u.comm, u.status, u.ts_ns);
                    return;
                }
                let ppid = self.procs.get(target_pid).map_or(ev.tgid, |p| p.ppid);
                let comm = self
                    .procs
                    .get(target_pid)
                    .map_or_else(|| ev.comm.clone(), |p| p.comm.clone());
                self.place(
                    *target_pid,
                    ppid,
                    &comm,
                    (subject_unit, cgroup.id),
                    ev.ts_ns,
                );
                if ev.tgid == 1
                    && let Some(c) = self.command_of(*target_pid)
                    && c.moved_ns.is_none()
                {
                    c.moved_ns = Some(ev.ts_ns);
                }
            }
            EventKind::Fork { child_pid } => {
                // pid reuse: a new process with this pid replaces whatever was kept.
                self.procs.insert(
                    *child_pid,
                    Proc {
                        ppid: ev.tgid,
                        comm: ev.comm.clone(),
                        born_ns: Some(ev.ts_ns),
                        unit: None,
                    },
                );
                self.signals.remove(child_pid);
                self.oom_victims.remove(child_pid);
                // A unit's process forks into its own cgroup (only a service manager
                // clones children straight into other cgroups).
                if ev.comm != "systemd"
                    && self.procs.get(&ev.tgid).is_some_and(|p| p.unit.is_some())
                {
                    self.place(
                        *child_pid,
                        ev.tgid,
                        &ev.comm,
                        (task_unit, ev.cgroup_id),
                        ev.ts_ns,
                    );
                }
            }
            EventKind::Exec {
                ppid,
                filename,
                argv,
                ..
            } => self.on_exec(ev, task_unit, *ppid, filename, argv),
            EventKind::ExecFailed {
                ppid,
                errno,
                filename,
                ..
            } => {
                self.place(
                    ev.tgid,
                    *ppid,
                    &ev.comm,
                    (task_unit, ev.cgroup_id),
                    ev.ts_ns,
                );
                let problem = FileProblem::diagnose(*errno, self.facts.file(filename).as_ref());
                if let Some(cmd) = self.command_of(ev.tgid) {
                    cmd.failed_execs.push(FailedExec {
                        ts_ns: ev.ts_ns,
                        path: filename.clone(),
                        errno: *errno,
                        problem,
                    });
                }
            }
            EventKind::Exit { ppid, status } => {
                self.place(
                    ev.tgid,
                    *ppid,
                    &ev.comm,
                    (task_unit, ev.cgroup_id),
                    ev.ts_ns,
                );
                self.account_exit(ev.tgid, *ppid, &ev.comm, *status, ev.ts_ns);
            }
            EventKind::Signal {
                target_pid, signal, ..
            } => {
                if self.signals.len() < MAX_PENDING {
                    self.signals.insert(
                        *target_pid,
                        SignalSeen {
                            sig: signal.0,
                            sender_pid: ev.tgid,
                            sender_comm: ev.comm.clone(),
                        },
                    );
                }
            }
            EventKind::OomKill { victim_pid } => {
                if self.oom_victims.len() < MAX_PENDING {
                    self.oom_victims.insert(*victim_pid, ev.ts_ns);
                }
            }
        }
    }

    fn begin_run(&mut self, unit: UnitRef, cgroup_id: u64, ts: u64) {
        let name = unit.name.clone();
        let new = !self.units.contains_key(&name);
        if new {
            let file = self.facts.unit_file(&name);
            self.units.insert(
                name.clone(),
                UnitHistory {
                    unit,
                    runs: Vec::new(),
                    file,
                    crash_loop: false,
                    serial: self.next_serial,
                },
            );
            self.next_serial += 1;
        }
        let manual = self.manual_request(&name, ts);
        let h = self.units.get_mut(&name).expect("inserted above");
        if let Some(prev) = h.runs.last_mut()
            && prev.is_open()
        {
            // A new cgroup while the old one was never seen to go: close the old run.
            prev.ended_ns = Some(ts);
        }
        let start = match (h.runs.last(), manual) {
            (None, _) => StartKind::First,
            (Some(_), Some(call)) => StartKind::Manual {
                by_pid: call.pid,
                command: format!("systemctl {}", call.verb),
            },
            (Some(prev), None) if prev.failed() => StartKind::AutomaticRestart,
            (Some(_), None) => StartKind::Again,
        };
        h.runs.push(Run {
            number: h.runs.len() + 1,
            cgroup_id: Some(cgroup_id),
            started_ns: ts,
            ended_ns: None,
            start,
            commands: Vec::new(),
            main_pid: None,
            outcome: None,
            pids: IdSet::default(),
        });
        if new {
            self.forget_ended_units();
        }
    }

    /// Past [`MAX_ENDED_UNITS`] units whose last run ended, forgets the oldest quarter.
    fn forget_ended_units(&mut self) {
        if self.units.len() <= MAX_ENDED_UNITS {
            return;
        }
        let mut ended: Vec<(u64, &String)> = self
            .units
            .iter()
            .filter_map(|(name, h)| Some((h.runs.last()?.ended_ns?, name)))
            .collect();
        if ended.len() <= MAX_ENDED_UNITS {
            return;
        }
        ended.sort_unstable();
        let forget: Vec<String> = ended[..ended.len() - MAX_ENDED_UNITS * 3 / 4]
            .iter()
            .map(|(_, name)| (*name).clone())
            .collect();
        for name in &forget {
            self.units.remove(name);
        }
        self.procs
            .values_mut()
            .filter(|p| {
                p.unit
                    .as_ref()
                    .is_some_and(|(u, _)| !self.units.contains_key(u))
            })
            .for_each(|p| p.unit = None);
    }

    /// The systemctl call that asked for this unit shortly before `ts`, if any.
    fn manual_request(&self, unit: &str, ts: u64) -> Option<SystemctlCall> {
        let short = unit.strip_suffix(".service").unwrap_or(unit);
        self.systemctl
            .iter()
            .rev()
            .take_while(|c| ts.saturating_sub(c.ts_ns) <= self.cfg.manual_window_ns)
            .find(|c| {
                matches!(
                    c.verb.as_str(),
                    "restart"
                        | "try-restart"
                        | "reload-or-restart"
                        | "try-reload-or-restart"
                        | "start"
                ) && c.units.iter().any(|u| u == unit || u == short)
            })
            .cloned()
    }

    fn end_run(&mut self, unit: &str, cgroup_id: u64, ts: u64) {
        let Some(h) = self.units.get_mut(unit) else {
            return;
        };
        let Some(run) = h
            .runs
            .iter_mut()
            .rev()
            .find(|r| r.cgroup_id == Some(cgroup_id) || (r.cgroup_id.is_none() && r.is_open()))
        else {
            return;
        };
        run.ended_ns = Some(ts);
        if run.outcome.is_none() && run.commands.is_empty() {
            // systemd ≤ 254: the child may have failed its setup in /init.scope before it
            // was moved here. Take the one that failed while this run was open.
            let started = run.started_ns;
            if let Some(i) = self
                .unplaced
                .iter()
                .position(|u| u.ts_ns >= started && u.ts_ns <= ts)
            {
                let u = self.unplaced.remove(i).expect("index from position");
                run.push_command(Command {
                    pid: u.pid,
                    started_ns: u.ts_ns,
                    program: None,
                    argv: Vec::new(),
                    top_level: true,
                    role: None,
                    exec_ns: None,
                    moved_ns: None,
                    exited_ns: Some(u.ts_ns),
                    status: Some(u.status),
                    failed_execs: Vec::new(),
                });
                run.main_pid = Some(u.pid);
                run.outcome = Some(outcome_of(
                    run,
                    u.pid,
                    u.status,
                    h.file.as_ref(),
                    &self.facts,
                    None,
                    false,
                ));
            }
        }
        update_crash_loop(h, &self.cfg);
    }

    /// Puts a process into the run of `unit` (None: it is in no unit's cgroup), whose
    /// cgroup `cgroup_id` it was seen in.
    fn place(
        &mut self,
        pid: u32,
        ppid: u32,
        comm: &str,
        (unit, cgroup_id): (Option<&Unit>, u64),
        ts: u64,
    ) {
        let entry = self.procs.entry(pid).or_insert_with(|| Proc {
            ppid,
            comm: comm.to_owned(),
            born_ns: None,
            unit: None,
        });
        entry.ppid = ppid;
        if entry.comm != comm {
            comm.clone_into(&mut entry.comm);
        }
        // Outside any unit (the root, /init.scope): keep where the process was placed. On
        // systemd 252 a child pid 1 moved into a unit can still report /init.scope when it
        // fails its setup (217/USER) right away.
        let Some(unit) = unit else {
            return;
        };
        if entry.unit.as_ref().is_some_and(|(u, _)| *u == unit.name) {
            return;
        }
        let unit = unit.unit.clone();
        // A run opened by the cgroup's mkdir, or one opened now for a unit whose cgroup
        // was there before the tracer.
        if !self
            .units
            .get(&unit.name)
            .is_some_and(|h| h.runs.last().is_some_and(Run::is_open))
        {
            let name = unit.name.clone();
            self.begin_run(unit.clone(), cgroup_id, ts);
            if let Some(r) = self.units.get_mut(&name).and_then(|h| h.runs.last_mut())
                && r.number == 1
            {
                r.start = StartKind::FoundAtStart;
            }
        }
        let top_level = ppid == 1
            || self
                .procs
                .get(&ppid)
                .is_some_and(|p| p.comm == "systemd" && p.ppid != 0);
        let born = self.procs.get(&pid).and_then(|p| p.born_ns);
        let h = self.units.get_mut(&unit.name).expect("ensured above");
        let run_index = h.runs.len() - 1;
        let run = &mut h.runs[run_index];
        if !run.pids.contains(&pid) {
            run.push_command(Command {
                pid,
                // The fork, when it was seen (systemd ≥ 255 clones straight into the
                // unit's cgroup, so the child is placed only at its first exec).
                started_ns: born.unwrap_or(ts),
                program: None,
                argv: Vec::new(),
                top_level,
                role: None,
                exec_ns: None,
                moved_ns: None,
                exited_ns: None,
                status: None,
                failed_execs: Vec::new(),
            });
        }
        if let Some(p) = self.procs.get_mut(&pid) {
            p.unit = Some((unit.name, run_index));
        }
    }

    fn command_of(&mut self, pid: u32) -> Option<&mut Command> {
        let (unit, run) = self.procs.get(&pid)?.unit.clone()?;
        self.units
            .get_mut(&unit)?
            .runs
            .get_mut(run)?
            .command_mut(pid)
    }

    fn on_exec(
        &mut self,
        ev: &Event,
        unit: Option<&Unit>,
        ppid: u32,
        filename: &str,
        argv: &[String],
    ) {
        if ev.comm == "systemctl" || argv.first().is_some_and(|a| a.ends_with("/systemctl")) {
            self.note_systemctl(ev, argv);
        }
        self.place(ev.tgid, ppid, &ev.comm, (unit, ev.cgroup_id), ev.ts_ns);
        let executor = is_executor(filename, argv);
        let file = self
            .procs
            .get(&ev.tgid)
            .and_then(|p| p.unit.clone())
            .and_then(|(u, _)| self.units.get(&u))
            .and_then(|h| h.file.clone());
        let Some((unit, run_index)) = self.procs.get(&ev.tgid).and_then(|p| p.unit.clone()) else {
            return;
        };
        let Some(run) = self
            .units
            .get_mut(&unit)
            .and_then(|h| h.runs.get_mut(run_index))
        else {
            return;
        };
        // The k-th top-level program of a run is the k-th entry of ExecStartPre= then
        // ExecStart= (systemd runs them in that order).
        let index = run
            .commands
            .iter()
            .filter(|c| c.top_level && c.program.is_some())
            .count();
        let forking = file
            .as_ref()
            .and_then(|f| f.service_type.as_deref())
            .is_some_and(|t| t == "forking");
        if let Some(cmd) = run.command_mut(ev.tgid)
            && !executor
            && cmd.program.is_none()
        {
            cmd.program = Some(filename.to_owned());
            cmd.exec_ns = Some(ev.ts_ns);
            cmd.argv = argv.to_vec();
            if cmd.top_level {
                cmd.role = role_of(file.as_ref(), filename, index);
                // ExecStart's process is the main process (but for Type=forking, where
                // the main process is the daemon it leaves behind).
                if cmd.role.as_deref() == Some("ExecStart") && !forking {
                    run.main_pid = Some(ev.tgid);
                }
            }
        }
    }

    fn note_systemctl(&mut self, ev: &Event, argv: &[String]) {
        let args: Vec<&String> = argv
            .iter()
            .skip(1)
            .filter(|a| !a.starts_with('-'))
            .collect();
        let Some(verb) = args.first() else {
            return;
        };
        self.systemctl.push_back(SystemctlCall {
            ts_ns: ev.ts_ns,
            pid: ev.tgid,
            verb: (*verb).clone(),
            units: args[1..].iter().map(|s| (*s).clone()).collect(),
        });
        while self.systemctl.len() > 256 {
            self.systemctl.pop_front();
        }
    }

    /// A process's exit, once it has been placed (or not) in a unit's run.
    fn account_exit(&mut self, pid: u32, ppid: u32, comm: &str, status: WaitStatus, ts_ns: u64) {
        let placed = self.procs.remove(&pid).and_then(|p| p.unit);
        let signal = self.signals.remove(&pid);
        let oom = self.oom_victims.remove(&pid).is_some();
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
        let is_exec_start = cmd.role.as_deref() == Some("ExecStart");
        let setup_failure = cmd.program.is_none()
            && status
                .exit_code()
                .is_some_and(|c| systemd_exit_status_name(c).is_some());
        let forking = file
            .as_ref()
            .and_then(|f| f.service_type.as_deref())
            .is_some_and(|t| t == "forking");

        // Which exit ends the run's main process:
        // - a command that failed systemd's setup, or any failing top-level command;
        // - ExecStart's process (for Type=forking: unless it exited 0, leaving a daemon);
        // - without a unit file: the last top-level command to exit;
        // - for Type=forking, the daemon ExecStart left behind.
        let is_main = if run.main_pid == Some(pid) {
            true
        } else if run.outcome.is_some() {
            false
        } else if top_level {
            setup_failure
                || !status.success()
                || (is_exec_start && !forking)
                || (file.is_none() && !forking)
        } else {
            forking
                && run.commands.iter().any(|c| {
                    c.role.as_deref() == Some("ExecStart") && c.status == Some(WaitStatus(0))
                })
        };
        if is_exec_start && forking && status.success() {
            // The daemon is the process still running in the cgroup.
            run.main_pid = run
                .commands
                .iter()
                .find(|c| !c.top_level && c.exited_ns.is_none())
                .map(|c| c.pid);
            return;
        }
        if is_main {
            run.main_pid = Some(pid);
            run.outcome = Some(outcome_of(
                run,
                pid,
                status,
                file.as_ref(),
                &self.facts,
                signal,
                oom,
            ));
            update_crash_loop(h, &self.cfg);
        }
    }
}

/// Whether the processes of a cgroup are that unit's run: not for a slice, nor for pid 1's
/// own init.scope, whose children are on their way into a unit (systemd ≤ 254 forks
/// there, then moves them).
fn runs_in_its_cgroup(u: &UnitRef) -> bool {
    u.kind != UnitKind::Slice && u.cgroup != "/init.scope"
}

/// How a run ended, from its main process's exit and what was seen around it.
fn outcome_of(
    run: &Run,
    pid: u32,
    status: WaitStatus,
    file: Option<&UnitFile>,
    facts: &impl Facts,
    signal: Option<SignalSeen>,
    oom: bool,
) -> Outcome {
    let cmd = run.command(pid);
    let program = cmd
        .and_then(|c| c.program.clone())
        .or_else(|| file.and_then(|f| f.exec_start.first().cloned()))
        .unwrap_or_else(|| "the main process".to_owned());
    let role = cmd
        .and_then(|c| c.role.clone())
        .unwrap_or_else(|| "ExecStart".to_owned());
    let cause = if status.success() {
        None
    } else if oom {
        Some(Cause::OomKilled { pid, program })
    } else if let Some(sig) = status.signal() {
        let sender = signal.filter(|s| s.sig == sig);
        Some(Cause::Killed {
            signal: Signal(sig),
            core_dumped: status.core_dumped(),
            sender_pid: sender.as_ref().map(|s| s.sender_pid),
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
                errno: f.errno,
                owner: f.problem.owner_names(facts),
                problem: f.problem.clone(),
                evidence: ExecEvidence::Execve,
                pid,
            }),
            // systemd's own check refused the file before any execve: the file's state
            // says why.
            (203, None) if file.is_some_and(|f| !f.exec_start.is_empty()) => {
                let path = file.expect("checked").exec_start[0].clone();
                let state = facts.file(&path);
                let errno = match &state {
                    None => Errno(libc::ENOENT),
                    Some(_) => Errno(libc::EACCES),
                };
                let problem = FileProblem::diagnose(errno, state.as_ref());
                Some(Cause::ExecFailed {
                    command: role,
                    owner: problem.owner_names(facts),
                    problem,
                    path,
                    errno,
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
            }),
        }
    };
    Outcome {
        pid,
        status,
        success: clean_exit(status),
        cause,
    }
}

/// systemd counts exit 0 and death by SIGHUP, SIGINT, SIGTERM or SIGPIPE (how a stop ends
/// a service) as a clean end.
fn clean_exit(status: WaitStatus) -> bool {
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
) -> (Option<String>, Option<String>) {
    let Some(file) = file else {
        return (None, None);
    };
    match status {
        200 => match &file.working_directory {
            Some(dir) => {
                let detail = match facts.file(dir.trim_start_matches('-')) {
                    None => "the directory does not exist",
                    Some(f) if !f.is_dir => "it is not a directory",
                    Some(_) => "the directory is not accessible",
                };
                (Some(format!("WorkingDirectory={dir}")), Some(detail.into()))
            }
            None => (None, None),
        },
        217 => match &file.user {
            Some(user) => {
                let detail = match facts.user_exists(user) {
                    Some(false) => Some("no such user".to_owned()),
                    _ => None,
                };
                (Some(format!("User={user}")), detail)
            }
            None => (None, None),
        },
        _ => (None, None),
    }
}

/// The executor of systemd ≥ 255, exec'd from a file descriptor before the real program.
fn is_executor(filename: &str, argv: &[String]) -> bool {
    argv.first()
        .is_some_and(|a| a.ends_with("/systemd-executor") || a == "systemd-executor")
        || (filename.starts_with("/proc/self/fd/") || filename.starts_with("/dev/fd/"))
            && argv.first().is_some_and(|a| a.contains("systemd-executor"))
}

/// ExecStartPre or ExecStart: by position among the run's top-level commands when that
/// fits, else by which list names the program.
fn role_of(file: Option<&UnitFile>, program: &str, index: usize) -> Option<String> {
    let file = file?;
    let same = |p: &String| p == program || base(p) == base(program);
    let pre = file.exec_start_pre.len();
    if index < pre && same(&file.exec_start_pre[index]) {
        return Some("ExecStartPre".into());
    }
    if file
        .exec_start
        .get(index.wrapping_sub(pre))
        .is_some_and(same)
    {
        return Some("ExecStart".into());
    }
    if file.exec_start.iter().any(same) {
        Some("ExecStart".into())
    } else if file.exec_start_pre.iter().any(same) {
        Some("ExecStartPre".into())
    } else {
        None
    }
}

fn base(path: &str) -> &str {
    path.rsplit('/').next().unwrap_or(path)
}

fn update_crash_loop(h: &mut UnitHistory, cfg: &ModelConfig) {
    let Some(last) = h.runs.iter().rev().find(|r| r.failed()) else {
        h.crash_loop = false;
        return;
    };
    let end = last.started_ns;
    let failed = h
        .runs
        .iter()
        .filter(|r| r.failed() && end.saturating_sub(r.started_ns) <= cfg.crash_loop_window_ns)
        .count();
    h.crash_loop = failed >= cfg.crash_loop_runs;
}

#[cfg(test)]
mod tests {
    use super::{facts::RecordedFacts, *};
    use crate::testing::Fed;
    use crate::{event::CgroupRef, procfs::ProcInfo};

    fn ev(ts_ns: u64, tgid: u32, cgroup_id: u64, comm: &str, kind: EventKind) -> Event {
        Event {
            ts_ns,
            pid: tgid,
            tgid,
            cgroup_id,
            comm: comm.into(),
            kind,
        }
    }

    fn cgroup(id: u64, path: &str) -> CgroupRef {
        CgroupRef {
            id,
            level: 2,
            path: path.into(),
            path_truncated: false,
        }
    }

    #[test]
    fn units_that_came_and_went_are_forgotten_past_the_cap() {
        let mut m = Fed::new(Model::new(RecordedFacts::default(), ModelConfig::default()));
        m.know_cgroup(50, "/system.slice/a.service");
        m.apply(&ev(
            1,
            1,
            1,
            "systemd",
            EventKind::CgroupMkdir {
                cgroup: cgroup(50, "/system.slice/a.service"),
            },
        ));
        for i in 0..3 * MAX_ENDED_UNITS as u64 {
            let cg = cgroup(1000 + i, &format!("/system.slice/run-u{i}.scope"));
            m.apply(&ev(
                10 + 2 * i,
                1,
                1,
                "systemd",
                EventKind::CgroupMkdir { cgroup: cg.clone() },
            ));
            m.apply(&ev(
                11 + 2 * i,
                1,
                1,
                "systemd",
                EventKind::CgroupRmdir { cgroup: cg },
            ));
        }
        assert!(
            m.units().count() <= MAX_ENDED_UNITS + 1,
            "{}",
            m.units().count()
        );
        // The running unit and the latest ended ones are kept.
        assert!(m.unit("a.service").is_some());
        let last = format!("run-u{}.scope", 3 * MAX_ENDED_UNITS - 1);
        assert!(m.unit(&last).is_some());
        assert!(m.unit("run-u0.scope").is_none());
    }

    #[test]
    fn a_run_keeps_a_bounded_number_of_helpers() {
        let mut m = Fed::new(Model::new(RecordedFacts::default(), ModelConfig::default()));
        let path = "/user.slice/user-0.slice/session-1.scope";
        m.apply(&ev(
            1,
            1,
            1,
            "systemd",
            EventKind::CgroupMkdir {
                cgroup: cgroup(60, path),
            },
        ));
        for i in 0..10 * MAX_COMMANDS_PER_RUN as u32 {
            let pid = 10_000 + i;
            let exec = EventKind::Exec {
                ppid: 500,
                uid: 0,
                filename: "/bin/true".into(),
                argv: vec!["true".into()],
                filename_truncated: false,
                argv_truncated: false,
            };
            m.apply(&ev(u64::from(10 + 2 * i), pid, 60, "true", exec));
            let exit = EventKind::Exit {
                ppid: 500,
                status: WaitStatus(0),
            };
            m.apply(&ev(u64::from(11 + 2 * i), pid, 60, "true", exit));
        }
        let run = &m.unit("session-1.scope").unwrap().runs[0];
        assert!(
            run.commands.len() <= MAX_COMMANDS_PER_RUN,
            "{}",
            run.commands.len()
        );
        // The latest ones are kept.
        let last = 10_000 + 10 * MAX_COMMANDS_PER_RUN as u32 - 1;
        assert!(
            run.command(last)
                .is_some_and(|c| c.status == Some(WaitStatus(0)))
        );
        assert_eq!(m.tracked_processes(), 0);
    }

    #[test]
    fn a_process_found_at_start_is_not_counted_twice() {
        let mut m = Fed::new(Model::new(RecordedFacts::default(), ModelConfig::default()));
        m.know_cgroup(50, "/system.slice/a.service");
        m.found_at_start(&ProcInfo {
            pid: 300,
            ppid: 1,
            start_ns: 1_000,
            comm: "a".into(),
            exe: Some("/usr/bin/a".into()),
            cmdline: vec!["/usr/bin/a".into()],
            cgroup: Some("/system.slice/a.service".into()),
        });
        let h = m.unit("a.service").unwrap();
        assert_eq!(h.runs.len(), 1);
        assert_eq!(h.runs[0].start, StartKind::FoundAtStart);
        assert_eq!(h.state(), "running");
        // Its exit, then the cgroup going, then a new activation.
        m.apply(&ev(
            5_000,
            300,
            50,
            "a",
            EventKind::Exit {
                ppid: 1,
                status: WaitStatus(2 << 8),
            },
        ));
        let cg = CgroupRef {
            id: 50,
            level: 2,
            path: "/system.slice/a.service".into(),
            path_truncated: false,
        };
        m.apply(&ev(
            6_000,
            1,
            1,
            "systemd",
            EventKind::CgroupRmdir { cgroup: cg.clone() },
        ));
        let h = m.unit("a.service").unwrap();
        assert_eq!(h.runs.len(), 1, "the exit closed the run found at start");
        assert_eq!(h.runs[0].commands.len(), 1);
        assert_eq!(h.runs[0].main_pid, Some(300));
        assert!(matches!(
            h.runs[0].outcome.as_ref().and_then(|o| o.cause.clone()),
            Some(Cause::ExitCode { code: 2, .. })
        ));
        assert_eq!(h.state(), "failed");
        let next = CgroupRef { id: 51, ..cg };
        m.apply(&ev(
            7_000,
            1,
            1,
            "systemd",
            EventKind::CgroupMkdir { cgroup: next },
        ));
        let h = m.unit("a.service").unwrap();
        assert_eq!(h.runs.len(), 2);
        assert_eq!(h.runs[1].start, StartKind::AutomaticRestart);
        assert_eq!(m.tracked_processes(), 0, "the exited process is not kept");
    }
}
