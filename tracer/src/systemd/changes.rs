//! systemd's changes as they happened, and what they add up to.
//!
//! pid 1 says, as each happens, when a unit's state changes (its `PropertiesChanged`
//! signals carry ActiveState, SubState, Result, ExecMainPID, ControlPID and systemd's own
//! timestamps) and when a job is queued and ends (`JobNew`, `JobRemoved` with its result:
//! done, failed, timeout, dependency, skipped, canceled, ...). The daemon records each
//! ([`super::watch`]) beside the kernel's records, and after a service's state changed,
//! its whole account as systemd then gave it (the Exec*= arrays with each command's last
//! run). [`Account`] folds the boot's account and these records into what systemd said
//! last of each unit: the live daemon and a replay of its journal fold the same records,
//! so they answer alike.

use std::collections::{BTreeMap, HashMap};

use serde::{Deserialize, Serialize};

use super::{BootTimes, ServiceFacts, Snapshot, SystemdUnit};

/// One change systemd announced, as recorded (JSON in the journal).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "change", rename_all = "kebab-case")]
pub enum Change {
    /// A unit's `PropertiesChanged`: of the properties it carried, those about its state
    /// (see [`STATE_PROPERTIES`]), as systemd sent them.
    Properties {
        at_ns: u64,
        unit: String,
        props: BTreeMap<String, Prop>,
    },
    /// A job was queued for the unit.
    JobNew { at_ns: u64, id: u32, unit: String },
    /// What the job queued as `id` is (start, stop, restart, verify-active, ...), asked of
    /// systemd right after it was queued (a job that ended first has none).
    JobType { id: u32, job_type: String },
    /// A job ended, with systemd's result.
    JobRemoved {
        at_ns: u64,
        id: u32,
        unit: String,
        result: String,
    },
    /// A service's whole account, asked for right after its state changed.
    Unit { at_ns: u64, unit: Box<SystemdUnit> },
    /// A client asked pid 1 over the bus for a job of the unit (see
    /// [`super::requests`]): the method, and who the bus says the caller is.
    JobAsked {
        at_ns: u64,
        unit: String,
        method: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pid: Option<u32>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        uid: Option<u32>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        comm: Option<String>,
    },
}

/// The latest job a client asked for over the bus, and who asked.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobAsk {
    /// When the call was seen (CLOCK_BOOTTIME ns).
    pub at_ns: u64,
    /// StartUnit, RestartUnit, a unit's Start, ...
    pub method: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pid: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uid: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comm: Option<String>,
}

/// A property's value as systemd sent it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Prop {
    Num(u64),
    Int(i64),
    Bool(bool),
    Str(String),
}

impl Prop {
    fn num(&self) -> Option<u64> {
        match self {
            Self::Num(n) => Some(*n),
            Self::Int(n) => u64::try_from(*n).ok(),
            _ => None,
        }
    }

    fn int(&self) -> Option<i32> {
        match self {
            Self::Num(n) => i32::try_from(*n).ok(),
            Self::Int(n) => i32::try_from(*n).ok(),
            _ => None,
        }
    }
}

/// The properties of a unit's or a service's state that are recorded when systemd says
/// they changed (the rest are in the whole account asked for after).
pub const STATE_PROPERTIES: [&str; 16] = [
    "LastTriggerUSecMonotonic",
    "ActiveState",
    "SubState",
    "StateChangeTimestampMonotonic",
    "InactiveExitTimestampMonotonic",
    "ActiveEnterTimestampMonotonic",
    "ActiveExitTimestampMonotonic",
    "InactiveEnterTimestampMonotonic",
    "Result",
    "MainPID",
    "ExecMainPID",
    "ExecMainCode",
    "ExecMainStatus",
    "ExecMainStartTimestampMonotonic",
    "ExecMainExitTimestampMonotonic",
    "ControlPID",
];

/// Units whose changes are recorded: not devices, scopes or slices (the kernel's cgroup
/// records say what those do, and devices come and go by the hundred at boot).
pub fn followed(unit: &str) -> bool {
    !(unit.ends_with(".device") || unit.ends_with(".scope") || unit.ends_with(".slice"))
}

/// How systemd's last job for a unit ended.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobEnd {
    pub id: u32,
    /// start, stop, restart, ... (None when the job ended before it was asked).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job_type: Option<String>,
    /// done, canceled, timeout, failed, dependency, skipped, invalid, assert, unsupported,
    /// collected, once, frozen.
    pub result: String,
    /// When the daemon heard of it (CLOCK_BOOTTIME ns).
    pub at_ns: u64,
}

/// The unit a start that ended `dependency` required, whose own job failed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DependencyFailure {
    pub unit: String,
    /// How its job ended (failed, timeout, dependency, ...).
    pub job_result: String,
    /// Its Result=, when it is a service systemd's account describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<String>,
}

/// A timer, socket or path unit firing: when systemd says it did (CLOCK_MONOTONIC, as
/// ns: the kernel's boot-time clock but for time suspended).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Activation {
    pub by: String,
    pub at_ns: u64,
}

/// The firings kept per triggering unit.
const MAX_FIRINGS: usize = 32;

/// No more units than this are followed (a host with more has them past the cap not
/// folded, said by [`Account::overflowed`]); no more jobs than this are waited on.
const MAX_UNITS: usize = 16_384;
const MAX_JOBS: usize = 4096;

/// What systemd said last of each unit: the boot's account with the recorded changes
/// folded in.
#[derive(Clone, Debug, Default)]
pub struct Account {
    boot: Option<BootTimes>,
    units: HashMap<String, SystemdUnit>,
    /// Queued jobs not yet ended: their unit and type.
    jobs: HashMap<u32, (String, Option<String>)>,
    last_job: HashMap<String, JobEnd>,
    /// Each unit's latest job asked for over the bus.
    asked: HashMap<String, JobAsk>,
    /// Each timer's, socket's and path's latest firings (ns), the latest last.
    firings: HashMap<String, Vec<u64>>,
    overflowed: bool,
}

/// The latest moment a unit's state changed, by systemd's timestamps.
pub fn latest_transition(u: &SystemdUnit) -> u64 {
    u.inactive_exit_us
        .max(u.active_enter_us)
        .max(u.active_exit_us)
        .max(u.inactive_enter_us)
}

impl Account {
    /// Whether any change was left out for the cap on units.
    pub fn overflowed(&self) -> bool {
        self.overflowed
    }

    /// Whether anything at all was recorded.
    pub fn is_empty(&self) -> bool {
        self.boot.is_none() && self.units.is_empty() && self.last_job.is_empty()
    }

    fn room_for(&mut self, unit: &str) -> bool {
        if self.units.contains_key(unit) || self.units.len() < MAX_UNITS {
            return true;
        }
        self.overflowed = true;
        false
    }

    /// Takes a unit's whole account, unless what is held already describes a later
    /// moment (an account taken across many changes, like the boot's, may be older for
    /// some units than their changes recorded meanwhile).
    fn take_unit(&mut self, u: &SystemdUnit) {
        if !self.room_for(&u.id) {
            return;
        }
        match self.units.get_mut(&u.id) {
            Some(held) if latest_transition(held) > latest_transition(u) => {}
            Some(held) => *held = u.clone(),
            None => {
                self.units.insert(u.id.clone(), u.clone());
            }
        }
    }

    /// The boot's account (recorded once boot finished).
    pub fn take_snapshot(&mut self, s: &Snapshot) {
        if s.user.is_some() {
            return;
        }
        self.boot = Some(s.boot.clone());
        for u in &s.units {
            self.take_unit(u);
        }
    }

    pub fn apply(&mut self, c: &Change) {
        match c {
            Change::Properties { unit, props, .. } => self.apply_props(unit, props),
            Change::JobNew { id, unit, .. } => {
                if self.jobs.len() >= MAX_JOBS {
                    // Jobs whose end was never heard of (a lost signal): the oldest go.
                    let oldest = self.jobs.keys().min().copied();
                    oldest.map(|k| self.jobs.remove(&k));
                }
                self.jobs.insert(*id, (unit.clone(), None));
            }
            Change::JobType { id, job_type } => {
                if let Some((_, t)) = self.jobs.get_mut(id) {
                    *t = Some(job_type.clone());
                } else if let Some(end) = self.last_job.values_mut().find(|j| j.id == *id) {
                    end.job_type = Some(job_type.clone());
                }
            }
            Change::JobRemoved {
                at_ns,
                id,
                unit,
                result,
            } => {
                let job_type = self.jobs.remove(id).and_then(|(_, t)| t);
                if !self.last_job.contains_key(unit) && self.last_job.len() >= MAX_UNITS {
                    self.overflowed = true;
                    return;
                }
                self.last_job.insert(
                    unit.clone(),
                    JobEnd {
                        id: *id,
                        job_type,
                        result: result.clone(),
                        at_ns: *at_ns,
                    },
                );
            }
            Change::Unit { unit, .. } => self.take_unit(unit),
            Change::JobAsked {
                at_ns,
                unit,
                method,
                pid,
                uid,
                comm,
            } => {
                if !self.asked.contains_key(unit) && self.asked.len() >= MAX_UNITS {
                    self.overflowed = true;
                    return;
                }
                self.asked.insert(
                    unit.clone(),
                    JobAsk {
                        at_ns: *at_ns,
                        method: method.clone(),
                        pid: *pid,
                        uid: *uid,
                        comm: comm.clone(),
                    },
                );
            }
        }
    }

    fn apply_props(&mut self, unit: &str, props: &BTreeMap<String, Prop>) {
        if !self.room_for(unit) {
            return;
        }
        self.note_firing(unit, props);
        let u = self
            .units
            .entry(unit.to_owned())
            .or_insert_with(|| SystemdUnit {
                id: unit.to_owned(),
                ..SystemdUnit::default()
            });
        for (name, value) in props {
            let num = || value.num().unwrap_or(0);
            let text = || match value {
                Prop::Str(s) => s.clone(),
                _ => String::new(),
            };
            match name.as_str() {
                "ActiveState" => u.active_state = text(),
                "SubState" => u.sub_state = text(),
                "InactiveExitTimestampMonotonic" => u.inactive_exit_us = num(),
                "ActiveEnterTimestampMonotonic" => u.active_enter_us = num(),
                "ActiveExitTimestampMonotonic" => u.active_exit_us = num(),
                "InactiveEnterTimestampMonotonic" => u.inactive_enter_us = num(),
                _ => {
                    if !unit.ends_with(".service") {
                        continue;
                    }
                    let s = u.service.get_or_insert_with(ServiceFacts::default);
                    let int = || value.int().unwrap_or(0);
                    match name.as_str() {
                        "Result" => s.result = text(),
                        "ExecMainPID" => s.exec_main_pid = num() as u32,
                        "ExecMainCode" => s.exec_main_code = int(),
                        "ExecMainStatus" => s.exec_main_status = int(),
                        "ExecMainStartTimestampMonotonic" => s.exec_main_start_us = num(),
                        "ControlPID" => s.control_pid = num() as u32,
                        _ => {}
                    }
                }
            }
        }
    }

    /// A timer that elapsed (its LastTriggerUSecMonotonic moved), a socket or path unit
    /// that went running: kept as a firing, at systemd's own timestamp.
    fn note_firing(&mut self, unit: &str, props: &BTreeMap<String, Prop>) {
        let at_us = if unit.ends_with(".timer") {
            props.get("LastTriggerUSecMonotonic").and_then(Prop::num)
        } else if (unit.ends_with(".socket") || unit.ends_with(".path"))
            && props.get("SubState") == Some(&Prop::Str("running".into()))
        {
            props
                .get("StateChangeTimestampMonotonic")
                .and_then(Prop::num)
        } else {
            None
        };
        let Some(at_ns) = at_us.filter(|&t| t > 0).map(|t| t.saturating_mul(1000)) else {
            return;
        };
        let seen = self.firings.entry(unit.to_owned()).or_default();
        if seen.last() != Some(&at_ns) {
            if seen.len() == MAX_FIRINGS {
                seen.remove(0);
            }
            seen.push(at_ns);
        }
    }

    /// Adds to `u` what only the recorded changes know: how its last job ended, and when
    /// that was `dependency`, the unit it required that failed.
    pub fn annotate(&self, u: &mut SystemdUnit) {
        let triggered_by = if u.triggered_by.is_empty() {
            self.units
                .get(&u.id)
                .map_or(&u.triggered_by, |held| &held.triggered_by)
        } else {
            &u.triggered_by
        };
        let mut activations: Vec<Activation> = triggered_by
            .iter()
            .flat_map(|t| {
                self.firings
                    .get(t)
                    .into_iter()
                    .flatten()
                    .map(|&at_ns| Activation {
                        by: t.clone(),
                        at_ns,
                    })
            })
            .collect();
        activations.sort_by_key(|a| a.at_ns);
        u.activations = activations;
        u.asked_by = self.asked.get(&u.id).cloned();
        let Some(job) = self.last_job.get(&u.id) else {
            return;
        };
        u.last_job = Some(job.clone());
        if job.result != "dependency" {
            return;
        }
        let requires = if u.requires.is_empty() {
            self.units
                .get(&u.id)
                .map_or(&u.requires, |held| &held.requires)
        } else {
            &u.requires
        };
        // Of the units it requires, the one whose job ended worst most lately, no later
        // than its own.
        u.dependency_failed = requires
            .iter()
            .filter_map(|d| Some((d, self.last_job.get(d)?)))
            .filter(|(_, j)| j.result != "done" && j.at_ns <= job.at_ns)
            .max_by_key(|(_, j)| j.at_ns)
            .map(|(d, j)| DependencyFailure {
                unit: d.clone(),
                job_result: j.result.clone(),
                result: self
                    .units
                    .get(d)
                    .and_then(|du| du.service.as_ref())
                    .map(|s| s.result.clone())
                    .filter(|r| !r.is_empty()),
            });
    }

    /// What systemd said last of `name`, with [`Self::annotate`]'s additions.
    pub fn unit(&self, name: &str) -> Option<SystemdUnit> {
        let mut u = match self.units.get(name) {
            Some(u) => u.clone(),
            None if self.last_job.contains_key(name) => SystemdUnit {
                id: name.to_owned(),
                ..SystemdUnit::default()
            },
            None => return None,
        };
        self.annotate(&mut u);
        Some(u)
    }

    /// Everything as one account (the boot's times and every unit), for the reports of a
    /// replayed boot; None when nothing was recorded.
    pub fn snapshot(&self) -> Option<Snapshot> {
        if self.is_empty() {
            return None;
        }
        let mut names: Vec<&String> = self.units.keys().chain(self.last_job.keys()).collect();
        names.sort();
        names.dedup();
        Some(Snapshot {
            boot: self.boot.clone().unwrap_or_default(),
            units: names.into_iter().filter_map(|n| self.unit(n)).collect(),
            user: None,
            names: Vec::new(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn props(pairs: &[(&str, Prop)]) -> BTreeMap<String, Prop> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), v.clone()))
            .collect()
    }

    #[test]
    fn changes_fold_into_what_systemd_said_last() {
        let mut a = Account::default();
        a.apply(&Change::Properties {
            at_ns: 1,
            unit: "app.service".into(),
            props: props(&[
                ("ActiveState", Prop::Str("failed".into())),
                ("SubState", Prop::Str("failed".into())),
                ("InactiveEnterTimestampMonotonic", Prop::Num(900)),
                ("Result", Prop::Str("exit-code".into())),
                ("ExecMainStatus", Prop::Int(3)),
                ("ExecMainCode", Prop::Num(1)),
            ]),
        });
        let u = a.unit("app.service").unwrap();
        assert_eq!(
            (u.active_state.as_str(), u.inactive_enter_us),
            ("failed", 900)
        );
        let s = u.service.unwrap();
        assert_eq!(
            (s.result.as_str(), s.exec_main_code, s.exec_main_status),
            ("exit-code", 1, 3)
        );
        // An account taken before that change (the boot's, slow to gather) does not undo it.
        a.take_snapshot(&Snapshot {
            units: vec![SystemdUnit {
                id: "app.service".into(),
                active_state: "active".into(),
                active_enter_us: 500,
                ..SystemdUnit::default()
            }],
            ..Snapshot::default()
        });
        assert_eq!(a.unit("app.service").unwrap().active_state, "failed");
    }

    /// A start that ended `dependency` names the unit it required whose job failed, and
    /// that unit's Result=; a dependency that started fine is not blamed.
    #[test]
    fn a_dependency_s_failure_is_named() {
        let mut a = Account::default();
        a.apply(&Change::Unit {
            at_ns: 1,
            unit: Box::new(SystemdUnit {
                id: "web.service".into(),
                requires: vec!["fine.service".into(), "db.service".into()],
                ..SystemdUnit::default()
            }),
        });
        a.apply(&Change::Unit {
            at_ns: 2,
            unit: Box::new(SystemdUnit {
                id: "db.service".into(),
                active_state: "failed".into(),
                service: Some(ServiceFacts {
                    result: "exit-code".into(),
                    ..ServiceFacts::default()
                }),
                ..SystemdUnit::default()
            }),
        });
        for (id, unit) in [(7, "fine.service"), (8, "db.service"), (9, "web.service")] {
            a.apply(&Change::JobNew {
                at_ns: 3,
                id,
                unit: unit.into(),
            });
        }
        a.apply(&Change::JobType {
            id: 9,
            job_type: "start".into(),
        });
        for (at_ns, id, unit, result) in [
            (4, 7, "fine.service", "done"),
            (5, 8, "db.service", "failed"),
            (6, 9, "web.service", "dependency"),
        ] {
            a.apply(&Change::JobRemoved {
                at_ns,
                id,
                unit: unit.into(),
                result: result.into(),
            });
        }
        let web = a.unit("web.service").unwrap();
        let job = web.last_job.unwrap();
        assert_eq!(
            (job.job_type.as_deref(), job.result.as_str()),
            (Some("start"), "dependency")
        );
        assert_eq!(
            web.dependency_failed,
            Some(DependencyFailure {
                unit: "db.service".into(),
                job_result: "failed".into(),
                result: Some("exit-code".into()),
            })
        );
        assert_eq!(a.unit("fine.service").unwrap().dependency_failed, None);
    }

    /// A timer's firings, at systemd's timestamps, reach the unit it triggers (once each
    /// however often systemd repeats the value).
    #[test]
    fn a_timer_s_firings_are_the_activations_of_its_unit() {
        let mut a = Account::default();
        a.apply(&Change::Unit {
            at_ns: 1,
            unit: Box::new(SystemdUnit {
                id: "tick.service".into(),
                triggered_by: vec!["tick.timer".into()],
                ..SystemdUnit::default()
            }),
        });
        for (at_ns, fired_us) in [(10, 5_000_000), (11, 5_000_000), (20, 8_000_000)] {
            a.apply(&Change::Properties {
                at_ns,
                unit: "tick.timer".into(),
                props: props(&[("LastTriggerUSecMonotonic", Prop::Num(fired_us))]),
            });
        }
        let u = a.unit("tick.service").unwrap();
        assert_eq!(
            u.activations,
            [
                Activation {
                    by: "tick.timer".into(),
                    at_ns: 5_000_000_000
                },
                Activation {
                    by: "tick.timer".into(),
                    at_ns: 8_000_000_000
                }
            ]
        );
    }

    #[test]
    fn records_read_back() {
        let c = Change::Properties {
            at_ns: 5,
            unit: "a.service".into(),
            props: props(&[
                ("SubState", Prop::Str("auto-restart".into())),
                ("ExecMainStatus", Prop::Int(-1)),
                ("ExecMainPID", Prop::Num(42)),
            ]),
        };
        let text = serde_json::to_string(&c).unwrap();
        assert_eq!(serde_json::from_str::<Change>(&text).unwrap(), c);
    }
}
