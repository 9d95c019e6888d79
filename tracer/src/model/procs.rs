//! The process table: which unit and run each live process was placed in, and what is
//! on its way to it (a terminating signal, the OOM killer's choice); the events of a
//! process's life (fork, exec, failed exec, exit) as the model takes them.

use super::{
    Model,
    cause::{AccessRefusal, RefusedFile},
    facts::Facts,
    lifecycle::Found,
    outcome::main_started,
    run::{Command, FailedExec, Run},
    systemd::{Role, forking, is_executor, is_top_level, role_of, runs_in_its_cgroup},
};
use crate::{
    enrich::{Enriched, Unit},
    event::{CgroupRef, Errno, Signal, WaitStatus},
    unit::unit_of_cgroup,
};

/// A process the model knows.
#[derive(Clone, Debug)]
pub(super) struct Proc {
    pub(super) ppid: u32,
    pub(super) comm: String,
    /// When its fork was seen.
    pub(super) born_ns: Option<u64>,
    /// The unit and run its last event placed it in.
    pub(super) unit: Option<(String, usize)>,
}

/// A terminating signal seen on its way to a process.
#[derive(Clone, Debug)]
pub(super) struct SignalSeen {
    pub(super) sig: i32,
    pub(super) sender_pid: u32,
    pub(super) sender_comm: String,
    pub(super) ts_ns: u64,
    /// For a SIGKILL: how long before it the same sender's SIGTERM came, which the
    /// process outlived (a stop that ran out of time ends so).
    pub(super) after_sigterm_ns: Option<u64>,
}

/// A service-manager child that failed its setup before it was moved into its unit's
/// cgroup (systemd ≤ 254 forks in /init.scope and moves the child after).
#[derive(Clone, Debug)]
pub(super) struct Unplaced {
    pub(super) ts_ns: u64,
    pub(super) pid: u32,
    pub(super) comm: String,
    pub(super) status: WaitStatus,
    /// The kernel's record of the check that refused its command, if one failed.
    pub(super) refusal: Option<AccessRefusal>,
}

/// Bound on the tables of in-flight correlation state.
pub(super) const MAX_PENDING: usize = 65_536;

/// The unit whose run an event's task is in.
fn task_unit(e: &Enriched) -> Option<&Unit> {
    e.unit.as_deref().filter(|u| runs_in_its_cgroup(u))
}

impl<F: Facts> Model<F> {
    /// pid 1 (or a process) moved a task into a cgroup.
    pub(super) fn on_cgroup_attach(&mut self, e: &Enriched, cgroup: &CgroupRef, target_pid: u32) {
        let ev = &e.ev;
        let unit = e
            .subject
            .as_ref()
            .and_then(|s| s.unit.as_deref())
            .filter(|u| runs_in_its_cgroup(u));
        // systemd ≤ 254 can move a child that has already exited (failing its setup at
        // once): its exit was seen outside any unit; account it now.
        if let Some(i) = self.unplaced.iter().position(|u| u.pid == target_pid) {
            let u = self.unplaced.remove(i).expect("index from position");
            self.place(u.pid, 1, &u.comm, (unit, cgroup.id), u.ts_ns);
            self.account_exit(u.pid, 1, &u.comm, u.status, u.ts_ns);
            return;
        }
        let ppid = self.procs.get(&target_pid).map_or(ev.tgid, |p| p.ppid);
        let comm = self
            .procs
            .get(&target_pid)
            .map_or_else(|| ev.comm.clone(), |p| p.comm.clone());
        self.place(target_pid, ppid, &comm, (unit, cgroup.id), ev.ts_ns);
        if ev.tgid == 1
            && let Some(c) = self.command_of(target_pid)
            && c.moved_ns.is_none()
        {
            c.moved_ns = Some(ev.ts_ns);
        }
    }

    pub(super) fn on_fork(&mut self, e: &Enriched, child_pid: u32) {
        let ev = &e.ev;
        // pid reuse: a new process with this pid replaces whatever was kept.
        self.procs.insert(
            child_pid,
            Proc {
                ppid: ev.tgid,
                comm: ev.comm.clone(),
                born_ns: Some(ev.ts_ns),
                unit: None,
            },
        );
        self.signals.remove(&child_pid);
        self.oom_victims.remove(&child_pid);
        self.access_refusals.remove(&child_pid);
        // A unit's process forks into its own cgroup (only a service manager clones
        // children straight into other cgroups).
        if ev.comm != "systemd" && self.procs.get(&ev.tgid).is_some_and(|p| p.unit.is_some()) {
            self.place(
                child_pid,
                ev.tgid,
                &ev.comm,
                (task_unit(e), ev.cgroup_id),
                ev.ts_ns,
            );
        }
    }

    /// Places an event's own task (a process seen at its exec, failed exec or exit).
    fn place_task(&mut self, e: &Enriched, ppid: u32) {
        let ev = &e.ev;
        self.place(
            ev.tgid,
            ppid,
            &ev.comm,
            (task_unit(e), ev.cgroup_id),
            ev.ts_ns,
        );
    }

    /// `uid`: the real uid the kernel saw on the process (the one whose permissions the
    /// exec was checked against, after systemd dropped to User=).
    pub(super) fn on_exec_failed(
        &mut self,
        e: &Enriched,
        (ppid, uid): (u32, u32),
        errno: Errno,
        filename: &str,
    ) {
        let ev = &e.ev;
        self.place_task(e, ppid);
        // Only a unit's commands are explained: nothing else is looked at.
        if self.command_of(ev.tgid).is_none() {
            return;
        }
        let lookup = self.facts.file(filename, Some(ev.tgid));
        if let Some(cmd) = self.command_of(ev.tgid) {
            cmd.failed_execs.push(FailedExec {
                ts_ns: ev.ts_ns,
                path: filename.to_owned(),
                errno,
                problem: RefusedFile::refused(errno, lookup).ran_as(uid),
            });
        }
    }

    pub(super) fn on_exit(&mut self, e: &Enriched, ppid: u32, status: WaitStatus) {
        let ev = &e.ev;
        self.place_task(e, ppid);
        self.account_exit(ev.tgid, ppid, &ev.comm, status, ev.ts_ns);
    }

    /// A service manager's check refused a command: kept until the checking process
    /// exits (with 203/EXEC, when that is what the check decided).
    pub(super) fn on_access_failed(&mut self, e: &Enriched, refusal: AccessRefusal) {
        if self.access_refusals.len() < MAX_PENDING {
            self.access_refusals.insert(e.ev.tgid, refusal);
        }
    }

    /// A terminating signal on its way: kept until its target's exit tells the cause.
    pub(super) fn on_signal(&mut self, e: &Enriched, target_pid: u32, signal: Signal) {
        if self.signals.len() < MAX_PENDING || self.signals.contains_key(&target_pid) {
            let after_sigterm_ns = self
                .signals
                .get(&target_pid)
                .filter(|s| {
                    signal.0 == libc::SIGKILL && s.sig == libc::SIGTERM && s.sender_pid == e.ev.tgid
                })
                .map(|s| e.ev.ts_ns.saturating_sub(s.ts_ns));
            self.signals.insert(
                target_pid,
                SignalSeen {
                    sig: signal.0,
                    sender_pid: e.ev.tgid,
                    sender_comm: e.ev.comm.clone(),
                    ts_ns: e.ev.ts_ns,
                    after_sigterm_ns,
                },
            );
        }
    }

    pub(super) fn on_oom_kill(&mut self, e: &Enriched, victim_pid: u32) {
        if self.oom_victims.len() < MAX_PENDING {
            self.oom_victims.insert(victim_pid, e.ev.ts_ns);
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
        let name = unit.key().into_owned();
        if !self
            .units
            .get(&name)
            .is_some_and(|h| h.runs.last().is_some_and(Run::is_open))
        {
            self.begin_run(unit, None, p.start_ns, Found::AtStart);
        }
        let comm = p.comm.clone();
        let top_level = is_top_level(p.ppid, self.procs.get(&p.ppid));
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
        if role == Some(Role::ExecStart) || (top_level && run.main_pid.is_none() && file.is_none())
        {
            run.main_pid = Some(p.pid);
        }
        run.push_command(Command {
            program,
            argv: p.cmdline.clone(),
            role,
            exec_ns: Some(p.start_ns),
            ..Command::new(p.pid, p.start_ns, top_level)
        });
        let change = main_started(&h.unit, run);
        self.announce_some(change);
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

    /// Puts a process into the run of `unit` (None: it is in no unit's cgroup), whose
    /// cgroup `cgroup_id` it was seen in.
    pub(super) fn place(
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
        let key = unit.key();
        if entry.unit.as_ref().is_some_and(|(u, _)| *u == *key) {
            return;
        }
        let key = key.into_owned();
        let unit = unit.unit.clone();
        // A run opened by the cgroup's mkdir, or one opened now for a unit whose cgroup
        // was there before the tracer.
        if !self
            .units
            .get(&key)
            .is_some_and(|h| h.runs.last().is_some_and(Run::is_open))
        {
            self.begin_run(unit, Some(cgroup_id), ts, Found::Running);
        }
        let top_level = is_top_level(ppid, self.procs.get(&ppid));
        let born = self.procs.get(&pid).and_then(|p| p.born_ns);
        let h = self.units.get_mut(&key).expect("ensured above");
        let run_index = h.runs.len() - 1;
        let run = &mut h.runs[run_index];
        if !run.pids.contains(&pid) {
            // Started at its fork, when it was seen (systemd ≥ 255 clones straight into
            // the unit's cgroup, so the child is placed only at its first exec).
            run.push_command(Command::new(pid, born.unwrap_or(ts), top_level));
        }
        if let Some(p) = self.procs.get_mut(&pid) {
            p.unit = Some((key, run_index));
        }
    }

    pub(super) fn command_of(&mut self, pid: u32) -> Option<&mut Command> {
        let (unit, run) = self.procs.get(&pid)?.unit.clone()?;
        self.units
            .get_mut(&unit)?
            .runs
            .get_mut(run)?
            .command_mut(pid)
    }

    pub(super) fn on_exec(&mut self, e: &Enriched, ppid: u32, filename: &str, argv: &[String]) {
        let ev = &e.ev;
        if ev.comm == "systemctl" || argv.first().is_some_and(|a| a.ends_with("/systemctl")) {
            self.note_systemctl(e, argv);
        }
        self.place_task(e, ppid);
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
        let Some(h) = self.units.get_mut(&unit) else {
            return;
        };
        let Some(run) = h.runs.get_mut(run_index) else {
            return;
        };
        // The k-th top-level program of a run is the k-th entry of ExecStartPre= then
        // ExecStart= (systemd runs them in that order).
        let index = run
            .commands
            .iter()
            .filter(|c| c.top_level && c.program.is_some())
            .count();
        let forking = forking(file.as_ref());
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
                if cmd.role == Some(Role::ExecStart) && !forking {
                    run.main_pid = Some(ev.tgid);
                }
            }
            let change = main_started(&h.unit, run);
            self.announce_some(change);
        }
    }
}
