//! A run's lifecycle: opened by its unit's cgroup appearing, closed by it going; who asked
//! for a start (a `systemctl` seen running); units that ended long ago forgotten.

use super::{
    Change, Model,
    facts::Facts,
    outcome::{Seen, decided, outcome_of, update_crash_loop},
    run::{Command, Run, StartKind, UnitHistory},
};
use crate::{
    enrich::{Enriched, Unit},
    event::CgroupRef,
    idhash::IdSet,
    unit::{UnitKind, UnitRef},
};

/// The unit of the cgroup a cgroup event acted on.
fn subject_unit(e: &Enriched) -> Option<&Unit> {
    e.subject.as_ref()?.unit.as_deref()
}

/// A `systemctl VERB UNIT...` seen running.
#[derive(Clone, Debug)]
pub(super) struct SystemctlCall {
    pub(super) ts_ns: u64,
    pub(super) pid: u32,
    pub(super) verb: String,
    pub(super) units: Vec<String>,
    /// The manager asked: None for the system's, the caller's uid for `--user`.
    pub(super) user: Option<u32>,
}

/// Units kept whose last run has ended. Transient scopes and services (`systemd-run`,
/// sessions) come and go by the thousand on a busy host: past this many, the ones that
/// ended longest ago are forgotten (the journal keeps them), so memory does not grow with
/// the number of units that have come and gone.
pub const MAX_ENDED_UNITS: usize = 1000;

/// Whether a run began before the tracer saw its cgroup appear.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Found {
    /// Its cgroup's mkdir was seen.
    No,
    /// A process of it was in the start-up snapshot.
    AtStart,
    /// A process of it was seen in a cgroup whose mkdir was not: found running, if it is
    /// the unit's first run seen.
    Running,
}

impl<F: Facts> Model<F> {
    /// A unit's own cgroup appearing opens a run.
    pub(super) fn on_cgroup_mkdir(&mut self, e: &Enriched, cgroup: &CgroupRef) {
        if let Some(u) = subject_unit(e)
            && u.cgroup == cgroup.path
            && u.kind != UnitKind::Slice
        {
            self.begin_run(u.unit.clone(), Some(cgroup.id), e.ev.ts_ns, Found::No);
        }
    }

    /// A unit's own cgroup going closes its run.
    pub(super) fn on_cgroup_rmdir(&mut self, e: &Enriched, cgroup: &CgroupRef) {
        if let Some(u) = subject_unit(e)
            && u.cgroup == cgroup.path
        {
            self.end_run(&u.key(), cgroup.id, e.ev.ts_ns);
        }
    }

    /// Opens a run of a unit whose cgroup `cgroup_id` appeared at `ts` (or, `found`, was
    /// there before the tracer saw it appear).
    pub(super) fn begin_run(
        &mut self,
        unit: UnitRef,
        cgroup_id: Option<u64>,
        ts: u64,
        found: Found,
    ) {
        let name = unit.key().into_owned();
        let manual = self.manual_request(&unit, ts);
        let new = !self.units.contains_key(&name);
        if new {
            // The system's unit files describe the system's units only (a user's live in
            // their home and in /usr/lib/systemd/user).
            let file = match unit.user {
                None => self.facts.unit_file(&unit.name),
                Some(_) => None,
            };
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
        let h = self.units.get_mut(&name).expect("inserted above");
        if last_ended(h) {
            self.ended_units -= 1;
        }
        if let Some(prev) = h.runs.last_mut()
            && prev.is_open()
        {
            // A new cgroup while the old one was never seen to go: close the old run.
            prev.ended_ns = Some(ts);
        }
        let start = match (h.runs.last(), manual) {
            _ if found == Found::AtStart => StartKind::FoundAtStart,
            (None, _) if found == Found::Running => StartKind::FoundAtStart,
            (None, _) => StartKind::First,
            (Some(_), Some(call)) if call.verb == "start" => StartKind::ManualStart {
                by_pid: call.pid,
                command: format!("systemctl {}", call.verb),
            },
            (Some(_), Some(call)) => StartKind::Manual {
                by_pid: call.pid,
                command: format!("systemctl {}", call.verb),
            },
            (Some(prev), None) if prev.failed() => StartKind::AutomaticRestart,
            (Some(_), None) => StartKind::Again,
        };
        let number = h.runs.len() + 1;
        h.runs.push(Run {
            number,
            cgroup_id,
            started_ns: ts,
            ended_ns: None,
            start: start.clone(),
            commands: Vec::new(),
            main_pid: None,
            outcome: None,
            pids: IdSet::default(),
            timed: false,
        });
        let change = self.announcing.then(|| Change::RunStarted {
            unit: h.unit.clone(),
            run: number,
            start,
            started_ns: ts,
        });
        self.announce_some(change);
        if new {
            self.forget_ended_units();
        }
    }

    /// Past [`MAX_ENDED_UNITS`] units whose last run ended, forgets the oldest quarter.
    fn forget_ended_units(&mut self) {
        if self.ended_units <= MAX_ENDED_UNITS {
            return;
        }
        let mut ended: Vec<(u64, &String)> = self
            .units
            .iter()
            .filter_map(|(name, h)| Some((h.runs.last()?.ended_ns?, name)))
            .collect();
        debug_assert_eq!(ended.len(), self.ended_units);
        ended.sort_unstable();
        let forget: Vec<String> = ended[..ended.len() - MAX_ENDED_UNITS * 3 / 4]
            .iter()
            .map(|(_, name)| (*name).clone())
            .collect();
        for name in &forget {
            self.units.remove(name);
        }
        self.ended_units -= forget.len();
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
    fn manual_request(&self, unit: &UnitRef, ts: u64) -> Option<SystemctlCall> {
        let (name, user) = (unit.name.as_str(), unit.user);
        let short = name.strip_suffix(".service").unwrap_or(name);
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
                ) && c.user == user
                    && c.units.iter().any(|u| u == name || u == short)
            })
            .cloned()
    }

    pub(super) fn end_run(&mut self, unit: &str, cgroup_id: u64, ts: u64) {
        let Some(h) = self.units.get_mut(unit) else {
            return;
        };
        if !last_ended(h) && h.runs.last().is_some_and(|r| ended_by(r, cgroup_id)) {
            self.ended_units += 1;
        }
        let Some(run) = h.runs.iter_mut().rev().find(|r| ended_by(r, cgroup_id)) else {
            return;
        };
        run.ended_ns = Some(ts);
        let mut changes = Vec::new();
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
                    exited_ns: Some(u.ts_ns),
                    status: Some(u.status),
                    ..Command::new(u.pid, u.ts_ns, true)
                });
                run.main_pid = Some(u.pid);
                let outcome = outcome_of(
                    run,
                    u.pid,
                    u.status,
                    h.file.as_ref(),
                    &self.facts,
                    Seen {
                        refusal: u.refusal,
                        ..Seen::default()
                    },
                );
                changes.push(decided(&h.unit, run, outcome));
            }
        }
        changes.extend(update_crash_loop(h, &self.cfg));
        if self.announcing {
            self.changes.extend(changes);
        }
    }

    pub(super) fn note_systemctl(&mut self, e: &Enriched, argv: &[String]) {
        let ev = &e.ev;
        let args: Vec<&String> = argv
            .iter()
            .skip(1)
            .filter(|a| !a.starts_with('-'))
            .collect();
        let Some(verb) = args.first() else {
            return;
        };
        // `systemctl --user` asks the caller's own manager: the caller's uid, from the
        // user manager or the session it runs in.
        let user = if argv.iter().any(|a| a == "--user") {
            let session = e.cgroup.as_deref().and_then(session_uid);
            match e.unit.as_ref().and_then(|u| u.user).or(session) {
                Some(uid) => Some(uid),
                None => return,
            }
        } else {
            None
        };
        self.systemctl.push_back(SystemctlCall {
            ts_ns: ev.ts_ns,
            pid: ev.tgid,
            verb: (*verb).clone(),
            units: args[1..].iter().map(|s| (*s).clone()).collect(),
            user,
        });
        while self.systemctl.len() > 256 {
            self.systemctl.pop_front();
        }
    }
}

/// The uid of the user whose slice a cgroup is in (`/user.slice/user-1000.slice/...`).
fn session_uid(path: &str) -> Option<u32> {
    path.split('/').find_map(|part| {
        part.strip_prefix("user-")?
            .strip_suffix(".slice")?
            .parse()
            .ok()
    })
}

/// Whether the last run of `h` has ended.
fn last_ended(h: &UnitHistory) -> bool {
    h.runs.last().is_some_and(|r| r.ended_ns.is_some())
}

/// Whether the end of cgroup `cgroup_id` ends `run` (its own, or one open without a
/// cgroup known).
fn ended_by(run: &Run, cgroup_id: u64) -> bool {
    run.cgroup_id == Some(cgroup_id) || (run.cgroup_id.is_none() && run.is_open())
}
