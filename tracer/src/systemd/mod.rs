//! What systemd itself knows, read over D-Bus: its boot timestamps, and for each unit its
//! timestamps, ordering dependencies, unit file, enablement, Type=, Restart= and ExecStart=
//! as it parsed them.
//!
//! As root, tracer asks pid 1 over its own socket, /run/systemd/private ([`private`]):
//! there from the first moment of boot, and on hosts with no D-Bus daemon. Otherwise (not
//! root, or that socket refused) it asks over the system bus, which the daemon, started
//! before it, waits for. Everything here is optional: without systemd the tracer works
//! from the kernel's events and the unit files alone, and says so.
//!
//! Timestamps are systemd's `*TimestampMonotonic` properties: microseconds of
//! CLOCK_MONOTONIC, 0 when unset. The kernel events use CLOCK_BOOTTIME; the two differ
//! only by time spent suspended, so during boot they agree.

pub mod changes;
mod private;
pub mod requests;
pub mod watch;

use std::{collections::HashMap, time::Duration};

use serde::{Deserialize, Serialize};
use zbus::zvariant::{DeserializeDict, OwnedObjectPath, Type};

const SERVICE: &str = "org.freedesktop.systemd1";
const MANAGER_PATH: &str = "/org/freedesktop/systemd1";
const MANAGER: &str = "org.freedesktop.systemd1.Manager";
const UNIT: &str = "org.freedesktop.systemd1.Unit";
const SERVICE_IFACE: &str = "org.freedesktop.systemd1.Service";
const PROPERTIES: &str = "org.freedesktop.DBus.Properties";
const CALL_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a connection to pid 1's own socket may take to be made. (In the VMs, pid 1
/// starting forty units at once took more than 2 s to take a connection; over the bus it
/// is no faster, since pid 1 answers there from the same loop.)
const PRIVATE_CONNECT: Duration = Duration::from_secs(6);

#[derive(Debug, thiserror::Error)]
pub enum SystemdError {
    #[error(
        "systemd is not reachable ({0}): is pid 1 systemd? (tracer asks over its socket, /run/systemd/private, as root, else over the system bus: is dbus running?)"
    )]
    Unreachable(String),
    #[error("asking systemd for {what} over D-Bus failed: {source}")]
    Call {
        what: String,
        #[source]
        source: zbus::Error,
    },
}

/// The manager's boot timestamps (µs of CLOCK_MONOTONIC, 0 when unset).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BootTimes {
    pub version: String,
    pub firmware_us: u64,
    pub loader_us: u64,
    /// When the initrd's systemd started (0 without an initrd).
    pub initrd_us: u64,
    /// When the system's systemd started.
    pub userspace_us: u64,
    /// When the boot's jobs were all done (0 while booting).
    pub finish_us: u64,
    /// Set when not in a container (what systemd-analyze uses to tell).
    pub security_start_us: u64,
    /// What default.target points to (graphical.target, multi-user.target, ...).
    pub default_target: Option<String>,
}

impl BootTimes {
    /// Boot has finished: every job of the boot transaction is done.
    pub fn finished(&self) -> bool {
        self.finish_us > 0
    }

    /// The end of the kernel's part: the initrd's start, or userspace's without one
    /// (systemd-analyze's "kernel" time), when known.
    pub fn kernel_done_us(&self) -> Option<u64> {
        let done = if self.initrd_us > 0 {
            self.initrd_us
        } else {
            self.userspace_us
        };
        (self.security_start_us > 0).then_some(done)
    }
}

/// A command line of an `Exec*=` setting as systemd parsed it, and how its last run went.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExecCommand {
    pub path: String,
    pub argv: Vec<String>,
    /// `-` prefix: a failure is ignored.
    pub ignore_failure: bool,
    /// The last run's process (0: not run in this activation, or not known).
    #[serde(default)]
    pub pid: u32,
    /// How it ended: `CLD_EXITED` (1) with the exit status, `CLD_KILLED` (2) or
    /// `CLD_DUMPED` (3) with the signal; 0 while running or not run.
    #[serde(default)]
    pub code: i32,
    #[serde(default)]
    pub status: i32,
    /// When it started and exited (µs of CLOCK_MONOTONIC, 0 when not).
    #[serde(default)]
    pub start_us: u64,
    #[serde(default)]
    pub exit_us: u64,
}

/// `siginfo`'s codes for how a child ended, as systemd reports them.
pub const CLD_EXITED: i32 = 1;
pub const CLD_KILLED: i32 = 2;
pub const CLD_DUMPED: i32 = 3;

impl ExecCommand {
    /// It ran and ended, and not as a success (exit 0) would.
    pub fn failed(&self) -> bool {
        self.exit_us > 0 && !(self.code == CLD_EXITED && self.status == 0)
    }

    /// Of `cmds`, the one that failed last.
    pub fn last_failed(cmds: &[Self]) -> Option<&Self> {
        cmds.iter().filter(|c| c.failed()).max_by_key(|c| c.exit_us)
    }

    /// How it ended, in words ("exit status 3", "signal SIGTERM").
    pub fn ending(&self) -> String {
        match self.code {
            CLD_EXITED => format!("exit status {}", self.status),
            CLD_KILLED | CLD_DUMPED => format!(
                "signal {}{}",
                crate::event::signal_name(self.status)
                    .map_or_else(|| self.status.to_string(), str::to_owned),
                if self.code == CLD_DUMPED {
                    " (core dumped)"
                } else {
                    ""
                }
            ),
            _ => "still running".to_owned(),
        }
    }

    /// The command line as the unit file has it.
    pub fn line(&self) -> String {
        let mut argv = self.argv.iter();
        let mut s = self.path.clone();
        // argv[0] is the path, unless the unit file renamed it (`@`).
        if argv.next().is_some_and(|a0| a0 != &self.path) {
            s = format!("@{s} {}", self.argv[0]);
        }
        for a in argv {
            s.push(' ');
            s.push_str(a);
        }
        s
    }
}

/// The process roles of a service, as its settings are named, in the order systemd runs
/// them.
pub const ROLES: [&str; 7] = [
    "ExecCondition",
    "ExecStartPre",
    "ExecStart",
    "ExecStartPost",
    "ExecReload",
    "ExecStop",
    "ExecStopPost",
];

/// The service-specific part of a unit.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceFacts {
    pub service_type: String,
    pub restart: String,
    pub result: String,
    pub exec_start: Vec<ExecCommand>,
    pub exec_main_start_us: u64,
    pub exec_main_pid: u32,
    pub n_restarts: u32,
    pub remain_after_exit: bool,
    /// The other roles' commands (see [`ROLES`]), with their last runs.
    #[serde(default)]
    pub exec_condition: Vec<ExecCommand>,
    #[serde(default)]
    pub exec_start_pre: Vec<ExecCommand>,
    #[serde(default)]
    pub exec_start_post: Vec<ExecCommand>,
    #[serde(default)]
    pub exec_reload: Vec<ExecCommand>,
    #[serde(default)]
    pub exec_stop: Vec<ExecCommand>,
    #[serde(default)]
    pub exec_stop_post: Vec<ExecCommand>,
    /// How the main process ended (`CLD_*` and the status or signal).
    #[serde(default)]
    pub exec_main_code: i32,
    #[serde(default)]
    pub exec_main_status: i32,
    /// The control process running now (ExecStartPre, ExecStop, ...), 0 when none.
    #[serde(default)]
    pub control_pid: u32,
    /// TimeoutStartSec=, TimeoutStopSec=, RuntimeMaxSec=, WatchdogSec= in µs
    /// (u64::MAX: infinity; 0: off).
    #[serde(default)]
    pub timeout_start_us: u64,
    #[serde(default)]
    pub timeout_stop_us: u64,
    #[serde(default)]
    pub runtime_max_us: u64,
    #[serde(default)]
    pub watchdog_us: u64,
    /// SuccessExitStatus=: exit statuses and signals counted as success besides 0 (and
    /// the clean signals).
    #[serde(default)]
    pub success_exit_status: Vec<i32>,
    #[serde(default)]
    pub success_signals: Vec<i32>,
    /// Whom systemd runs the commands as: User=, Group=, SupplementaryGroups=,
    /// DynamicUser= (empty: root, the default).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub user: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub group: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub supplementary_groups: Vec<String>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub dynamic_user: bool,
    /// PIDFile= (Type=forking: where systemd reads the daemon's pid).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub pid_file: String,
    /// EnvironmentFile=: each file, and whether a `-` prefix makes it optional.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub environment_files: Vec<(String, bool)>,
    /// How the last reload went (ReloadResult=: success, exit-code, timeout, ...).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub reload_result: String,
    /// RestartPreventExitStatus=: exit statuses (and signals) after which Restart= does
    /// not restart it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub restart_prevent_exit_status: Vec<i32>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub restart_prevent_signals: Vec<i32>,
}

impl ServiceFacts {
    /// Each role's commands, in the order systemd runs them.
    pub fn roles(&self) -> [(&'static str, &[ExecCommand]); 7] {
        [
            (ROLES[0], &self.exec_condition),
            (ROLES[1], &self.exec_start_pre),
            (ROLES[2], &self.exec_start),
            (ROLES[3], &self.exec_start_post),
            (ROLES[4], &self.exec_reload),
            (ROLES[5], &self.exec_stop),
            (ROLES[6], &self.exec_stop_post),
        ]
    }

    /// The command whose failure systemd counted: of those that ran and failed without
    /// a `-` prefix, the one that exited last.
    pub fn failed_command(&self) -> Option<(&'static str, &ExecCommand)> {
        self.roles()
            .into_iter()
            .flat_map(|(role, cmds)| cmds.iter().map(move |c| (role, c)))
            .filter(|(_, c)| c.failed() && !c.ignore_failure)
            .max_by_key(|(_, c)| c.exit_us)
    }
}

/// One unit as systemd describes it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SystemdUnit {
    pub id: String,
    pub load_state: String,
    pub active_state: String,
    pub sub_state: String,
    /// The unit file (empty for units without one).
    pub fragment_path: String,
    /// enabled, disabled, static, generated, ...
    pub unit_file_state: String,
    pub after: Vec<String>,
    pub wanted_by: Vec<String>,
    pub required_by: Vec<String>,
    pub inactive_exit_us: u64,
    pub active_enter_us: u64,
    pub active_exit_us: u64,
    pub inactive_enter_us: u64,
    pub service: Option<ServiceFacts>,
    /// The first Condition*= or Assert*= not met at the last start (`ConditionPathExists=/x`,
    /// `!` for a negated one), when one was not.
    #[serde(default)]
    pub condition_failed: Option<String>,
    /// Whether it was an Assert*= (the start failed) rather than a Condition*= (skipped).
    #[serde(default)]
    pub assert_failed: bool,
    /// StartLimitBurst= and StartLimitIntervalSec= (µs).
    #[serde(default)]
    pub start_limit_burst: u32,
    #[serde(default)]
    pub start_limit_interval_us: u64,
    /// Requires=, Requisite= and BindsTo=: the units whose failed start fails its own
    /// (a start job of it then ends `dependency`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub requires: Vec<String>,
    /// How systemd's last job for the unit ended, as recorded when it did (see
    /// [`changes::Account`]); None when no job was seen to end.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_job: Option<changes::JobEnd>,
    /// When that job ended `dependency`: which unit it required failed, and how.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dependency_failed: Option<changes::DependencyFailure>,
    /// TriggeredBy=: the timers, sockets and paths that start it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub triggered_by: Vec<String>,
    /// When those fired, as systemd recorded it (see [`changes::Account`]), the latest
    /// last.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub activations: Vec<changes::Activation>,
    /// Triggers=: what a timer, socket or path unit starts.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub triggers: Vec<String>,
    /// The latest job of it a client asked for over the bus, and who (see
    /// [`changes::Account`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub asked_by: Option<changes::JobAsk>,
    /// What systemd says of a timer, socket, path or mount unit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub typed: Option<TypedFacts>,
}

/// A timer's, socket's, path's or mount's own account (the fields of its type; the
/// others stay empty).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TypedFacts {
    /// Result=: success, resources, exit-code, trigger-limit-hit, ...
    pub result: String,
    /// A timer's last elapse and its next (monotonic µs; 0: none, or a calendar timer's
    /// realtime one).
    #[serde(default)]
    pub last_trigger_us: u64,
    #[serde(default)]
    pub next_elapse_us: u64,
    /// A socket's Accept=, and its connections accepted (Accept=yes) and open now.
    #[serde(default)]
    pub accept: bool,
    #[serde(default)]
    pub n_accepted: u32,
    #[serde(default)]
    pub n_connections: u32,
    /// A mount's What= and Where=, and its mount helper's last run.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub what: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub r#where: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub exec_mount: Vec<ExecCommand>,
}

/// The D-Bus interface of a unit type with an account of its own ([`TypedFacts`]).
fn typed_interface(id: &str) -> Option<&'static str> {
    let (_, suffix) = id.rsplit_once('.')?;
    Some(match suffix {
        "timer" => "org.freedesktop.systemd1.Timer",
        "socket" => "org.freedesktop.systemd1.Socket",
        "path" => "org.freedesktop.systemd1.Path",
        "mount" => "org.freedesktop.systemd1.Mount",
        _ => return None,
    })
}

impl SystemdUnit {
    /// See [`Snapshot::fill_from`]: only for the same activation (the same timestamps).
    pub fn fill_from(&mut self, earlier: &SystemdUnit) {
        let same = self.inactive_exit_us == earlier.inactive_exit_us
            && self.inactive_enter_us == earlier.inactive_enter_us
            && self.active_state == earlier.active_state;
        if !same {
            return;
        }
        if self.condition_failed.is_none() {
            self.condition_failed.clone_from(&earlier.condition_failed);
            self.assert_failed = earlier.assert_failed;
        }
        let (Some(now), Some(then)) = (self.service.as_mut(), earlier.service.as_ref()) else {
            return;
        };
        for (mine, theirs) in [
            (&mut now.exec_condition, &then.exec_condition),
            (&mut now.exec_start_pre, &then.exec_start_pre),
            (&mut now.exec_start, &then.exec_start),
            (&mut now.exec_start_post, &then.exec_start_post),
            (&mut now.exec_reload, &then.exec_reload),
            (&mut now.exec_stop, &then.exec_stop),
            (&mut now.exec_stop_post, &then.exec_stop_post),
        ] {
            for (m, t) in mine.iter_mut().zip(theirs) {
                if m.exit_us == 0 && m.pid == 0 && t.path == m.path {
                    *m = t.clone();
                }
            }
        }
    }

    /// The target that pulled the unit in: the first of its WantedBy=/RequiredBy= that is
    /// a target, the well-known boot targets first.
    pub fn part_of(&self) -> Option<&str> {
        const PREFERRED: [&str; 5] = [
            "multi-user.target",
            "graphical.target",
            "sysinit.target",
            "basic.target",
            "sockets.target",
        ];
        let targets = || {
            self.wanted_by
                .iter()
                .chain(&self.required_by)
                .filter(|t| t.ends_with(".target"))
        };
        targets()
            .find(|t| PREFERRED.contains(&t.as_str()))
            .or_else(|| targets().next())
            .map(String::as_str)
    }

    /// The `.wants/` (or `.requires/`) symlink `systemctl enable` made for it, when the
    /// unit is enabled and a unit file names where it is installed.
    pub fn enablement_links(&self) -> Vec<String> {
        if self.unit_file_state != "enabled" {
            return Vec::new();
        }
        let mut links = Vec::new();
        for (targets, dir) in [(&self.wanted_by, "wants"), (&self.required_by, "requires")] {
            for t in targets {
                let link = format!("/etc/systemd/system/{t}.{dir}/{}", self.id);
                if std::fs::symlink_metadata(&link).is_ok() {
                    links.push(link);
                }
            }
        }
        links
    }
}

/// Everything at one moment: the boot times and every loaded unit.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Snapshot {
    pub boot: BootTimes,
    pub units: Vec<SystemdUnit>,
    /// Whose account it is: None for the system manager's, the uid for a user's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<u32>,
    /// The manager's loaded units' names, when a report asked of a unit that is not
    /// loaded (to name the nearest, as what was meant).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub names: Vec<String>,
}

impl Snapshot {
    /// Fills what systemd forgets on a `daemon-reload` (how each command's last run
    /// ended, which condition was not met) from an account of the same activations taken
    /// earlier (`earlier`, the boot's, recorded when it finished).
    pub fn fill_from(&mut self, earlier: &Snapshot) {
        if self.user != earlier.user {
            return;
        }
        for u in &mut self.units {
            if let Some(e) = earlier.unit(&u.id) {
                u.fill_from(e);
            }
        }
    }

    /// What this account's manager says of a unit the kernel saw: only of its own units
    /// (the system's account says nothing of a user's unit of the same name, nor the
    /// reverse).
    pub fn unit_of(&self, u: &crate::unit::UnitRef) -> Option<&SystemdUnit> {
        if u.user == self.user {
            self.unit(&u.name)
        } else {
            None
        }
    }

    pub fn unit(&self, name: &str) -> Option<&SystemdUnit> {
        self.units.iter().find(|u| u.id == name)
    }

    /// When a unit became active, if it did (µs).
    pub fn active_enter_us(&self, name: &str) -> Option<u64> {
        self.unit(name)
            .map(|u| u.active_enter_us)
            .filter(|&t| t > 0)
    }

    /// systemd-analyze's critical chain of `target` (default.target's id when None): from
    /// the target back, at each unit the After= dependency that became active last (before
    /// boot finished). Returns unit ids, the target first.
    pub fn critical_chain(&self, target: Option<&str>) -> Vec<String> {
        let by_id: HashMap<&str, &SystemdUnit> =
            self.units.iter().map(|u| (u.id.as_str(), u)).collect();
        let finish = if self.boot.finish_us > 0 {
            self.boot.finish_us
        } else {
            u64::MAX
        };
        // Like systemd-analyze: units that never started activating are not considered.
        let activated = |id: &str| {
            by_id
                .get(id)
                .filter(|u| u.inactive_exit_us > 0)
                .map(|u| u.active_enter_us)
                .filter(|&a| a > 0 && a <= finish)
        };
        let Some(start) = target.or(self.boot.default_target.as_deref()) else {
            return Vec::new();
        };
        let mut chain = vec![start.to_owned()];
        let mut current = start;
        while let Some(u) = by_id.get(current) {
            let next = u
                .after
                .iter()
                .filter_map(|d| Some((activated(d)?, d.as_str())))
                // The latest; among equals the first listed, as systemd-analyze's stable sort.
                .fold(None::<(u64, &str)>, |best, (t, d)| match best {
                    Some((bt, _)) if bt >= t => best,
                    _ => Some((t, d)),
                });
            let Some((_, next)) = next else { break };
            if chain.iter().any(|c| c == next) {
                break;
            }
            chain.push(next.to_owned());
            current = next;
        }
        chain
    }
}

/// systemd's object path of a unit: every byte but letters (and digits after the first)
/// as `_xx`.
pub fn unit_object_path(name: &str) -> String {
    let mut path = String::from("/org/freedesktop/systemd1/unit/");
    if name.is_empty() {
        path.push('_');
    }
    for (i, b) in name.bytes().enumerate() {
        if b.is_ascii_alphabetic() || (i > 0 && b.is_ascii_digit()) {
            path.push(b as char);
        } else {
            path.push_str(&format!("_{b:02x}"));
        }
    }
    path
}

#[derive(Debug, Default, DeserializeDict, Type)]
#[zvariant(
    signature = "a{sv}",
    rename_all = "PascalCase",
    crate = "zbus::zvariant"
)]
struct ManagerProps {
    version: Option<String>,
    firmware_timestamp_monotonic: Option<u64>,
    loader_timestamp_monotonic: Option<u64>,
    #[zvariant(rename = "InitRDTimestampMonotonic")]
    initrd_timestamp_monotonic: Option<u64>,
    userspace_timestamp_monotonic: Option<u64>,
    finish_timestamp_monotonic: Option<u64>,
    security_start_timestamp_monotonic: Option<u64>,
}

#[derive(Debug, Default, DeserializeDict, Type)]
#[zvariant(
    signature = "a{sv}",
    rename_all = "PascalCase",
    crate = "zbus::zvariant"
)]
struct UnitProps {
    id: Option<String>,
    load_state: Option<String>,
    active_state: Option<String>,
    sub_state: Option<String>,
    fragment_path: Option<String>,
    unit_file_state: Option<String>,
    after: Option<Vec<String>>,
    wanted_by: Option<Vec<String>>,
    required_by: Option<Vec<String>>,
    inactive_exit_timestamp_monotonic: Option<u64>,
    active_enter_timestamp_monotonic: Option<u64>,
    active_exit_timestamp_monotonic: Option<u64>,
    inactive_enter_timestamp_monotonic: Option<u64>,
    conditions: Option<Vec<ConditionWire>>,
    asserts: Option<Vec<ConditionWire>>,
    start_limit_burst: Option<u32>,
    #[zvariant(rename = "StartLimitIntervalUSec")]
    start_limit_interval_usec: Option<u64>,
    requires: Option<Vec<String>>,
    requisite: Option<Vec<String>>,
    binds_to: Option<Vec<String>>,
    triggered_by: Option<Vec<String>>,
    triggers: Option<Vec<String>>,
}

/// The properties of [`TypedFacts`], of whichever interface has them.
#[derive(Debug, Default, DeserializeDict, Type)]
#[zvariant(
    signature = "a{sv}",
    rename_all = "PascalCase",
    crate = "zbus::zvariant"
)]
struct TypedProps {
    result: Option<String>,
    #[zvariant(rename = "LastTriggerUSecMonotonic")]
    last_trigger_usec_monotonic: Option<u64>,
    #[zvariant(rename = "NextElapseUSecMonotonic")]
    next_elapse_usec_monotonic: Option<u64>,
    accept: Option<bool>,
    #[zvariant(rename = "NAccepted")]
    n_accepted: Option<u32>,
    #[zvariant(rename = "NConnections")]
    n_connections: Option<u32>,
    what: Option<String>,
    #[zvariant(rename = "Where")]
    r#where: Option<String>,
    exec_mount: Option<Vec<ExecWire>>,
}

/// `Conditions` and `Asserts`: type, trigger (`|`), negated (`!`), parameter, state
/// (> 0 met, < 0 not met, 0 not checked).
type ConditionWire = (String, bool, bool, String, i32);

/// The first condition of `list` that was not met, as the unit file writes it.
fn unmet(list: Option<Vec<ConditionWire>>) -> Option<String> {
    list?
        .into_iter()
        .find(|(_, _, _, _, state)| *state < 0)
        .map(|(ty, trigger, negate, param, _)| {
            format!(
                "{ty}={}{}{param}",
                if trigger { "|" } else { "" },
                if negate { "!" } else { "" }
            )
        })
}

fn commands(wire: Option<Vec<ExecWire>>) -> Vec<ExecCommand> {
    wire.unwrap_or_default()
        .into_iter()
        .map(
            |(path, argv, ignore_failure, _, start_us, _, exit_us, pid, code, status)| {
                ExecCommand {
                    path,
                    argv,
                    ignore_failure,
                    pid,
                    code,
                    status,
                    start_us,
                    exit_us,
                }
            },
        )
        .collect()
}

/// `ExecStart`'s signature: path, argv, ignore failure, start and exit timestamps
/// (realtime, monotonic), pid, code, status.
type ExecWire = (String, Vec<String>, bool, u64, u64, u64, u64, u32, i32, i32);

#[derive(Debug, Default, DeserializeDict, Type)]
#[zvariant(
    signature = "a{sv}",
    rename_all = "PascalCase",
    crate = "zbus::zvariant"
)]
struct ServiceProps {
    #[zvariant(rename = "Type")]
    service_type: Option<String>,
    restart: Option<String>,
    result: Option<String>,
    exec_start: Option<Vec<ExecWire>>,
    exec_main_start_timestamp_monotonic: Option<u64>,
    #[zvariant(rename = "ExecMainPID")]
    exec_main_pid: Option<u32>,
    #[zvariant(rename = "NRestarts")]
    n_restarts: Option<u32>,
    remain_after_exit: Option<bool>,
    exec_condition: Option<Vec<ExecWire>>,
    exec_start_pre: Option<Vec<ExecWire>>,
    exec_start_post: Option<Vec<ExecWire>>,
    exec_reload: Option<Vec<ExecWire>>,
    exec_stop: Option<Vec<ExecWire>>,
    exec_stop_post: Option<Vec<ExecWire>>,
    exec_main_code: Option<i32>,
    exec_main_status: Option<i32>,
    #[zvariant(rename = "ControlPID")]
    control_pid: Option<u32>,
    #[zvariant(rename = "TimeoutStartUSec")]
    timeout_start_usec: Option<u64>,
    #[zvariant(rename = "TimeoutStopUSec")]
    timeout_stop_usec: Option<u64>,
    #[zvariant(rename = "RuntimeMaxUSec")]
    runtime_max_usec: Option<u64>,
    #[zvariant(rename = "WatchdogUSec")]
    watchdog_usec: Option<u64>,
    success_exit_status: Option<(Vec<i32>, Vec<i32>)>,
    user: Option<String>,
    group: Option<String>,
    supplementary_groups: Option<Vec<String>>,
    dynamic_user: Option<bool>,
    #[zvariant(rename = "PIDFile")]
    pid_file: Option<String>,
    environment_files: Option<Vec<(String, bool)>>,
    reload_result: Option<String>,
    restart_prevent_exit_status: Option<(Vec<i32>, Vec<i32>)>,
}

/// ListUnits' rows: id, description, load, active, sub, following, path, job id, job type,
/// job path.
type UnitRow = (
    String,
    String,
    String,
    String,
    String,
    String,
    OwnedObjectPath,
    u32,
    String,
    OwnedObjectPath,
);

/// ListJobs' rows: id, unit, job type, state, job path, unit path.
type JobRow = (
    u32,
    String,
    String,
    String,
    OwnedObjectPath,
    OwnedObjectPath,
);

/// pid 1 is systemd (what sd_booted() checks): only then is there anything to ask.
pub fn booted_with_systemd() -> bool {
    std::path::Path::new("/run/systemd/system").is_dir()
}

/// Whether systemd may be asked at all: `--no-systemd`, or the daemon's
/// `ask_systemd = false`, turns it off for the process (the kernel's account alone).
static ASKING: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(true);

/// Turns asking systemd off for the rest of the process: every connection is refused as
/// unreachable, so every output falls back to, and marks, the kernel's account alone.
pub fn stop_asking() {
    ASKING.store(false, std::sync::atomic::Ordering::Relaxed);
}

/// Whether systemd may be asked ([`stop_asking`]).
pub fn asking() -> bool {
    ASKING.load(std::sync::atomic::Ordering::Relaxed)
}

/// The refusal of a connection once asking is off.
fn turned_off() -> SystemdError {
    SystemdError::Unreachable(
        "asking systemd is turned off (--no-systemd, or ask_systemd = false)".into(),
    )
}

/// A connection to systemd.
#[derive(Clone)]
pub struct Systemd {
    conn: zbus::Connection,
    /// How it was made: pid 1's own socket or the system bus.
    pub via: &'static str,
}

/// The daemon's kept connection to pid 1, the one its changes come over
/// ([`watch::follow`]), which its other questions share: early in boot pid 1 takes a new
/// connection only after seconds, while one it has taken is answered at once.
static SHARED: std::sync::Mutex<Option<Systemd>> = std::sync::Mutex::new(None);

impl Systemd {
    /// Connects to pid 1: the daemon's kept connection when there is one; else over its
    /// own socket as root, else (or when that fails) over the system bus.
    pub async fn connect() -> Result<Self, SystemdError> {
        if !asking() {
            return Err(turned_off());
        }
        if let Some(sd) = Self::shared() {
            return Ok(sd);
        }
        Self::connect_waiting(PRIVATE_CONNECT).await
    }

    fn shared() -> Option<Self> {
        SHARED.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Offers this connection to the process's other questions ([`Self::connect`]), or
    /// with None takes it back (it closed).
    fn share(sd: Option<&Self>) {
        *SHARED.lock().unwrap_or_else(|e| e.into_inner()) = sd.cloned();
    }

    /// [`Self::connect`], waiting up to `patience` for pid 1's socket before the bus.
    async fn connect_waiting(patience: Duration) -> Result<Self, SystemdError> {
        if !asking() {
            return Err(turned_off());
        }
        if !booted_with_systemd() {
            return Err(SystemdError::Unreachable(
                "pid 1 is not systemd: no /run/systemd/system".into(),
            ));
        }
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } == 0 {
            // A connection not made within PRIVATE_CONNECT is given up for the bus (and
            // pid 1's socket tried again next time).
            let connect = private::connect(private::PATH, CALL_TIMEOUT);
            match tokio::time::timeout(patience, connect).await {
                Ok(Ok(conn)) => {
                    return Ok(Self {
                        conn,
                        via: private::PATH,
                    });
                }
                // Root is refused its own manager's socket only when something is wrong:
                // said once, at warn.
                Ok(Err(e)) => private_refused(&e.to_string()),
                Err(_) => private_refused(&format!("no connection within {patience:?}")),
            }
        }
        let unreachable = |e: zbus::Error| SystemdError::Unreachable(e.to_string());
        let conn = zbus::connection::Builder::system()
            .map_err(unreachable)?
            .method_timeout(CALL_TIMEOUT)
            .build()
            .await
            .map_err(unreachable)?;
        Ok(Self {
            conn,
            via: "the system bus",
        })
    }

    /// Connects to a service manager over its own socket at `path` (pid 1's is
    /// `/run/systemd/private`, a user manager's `$XDG_RUNTIME_DIR/systemd/private`).
    pub async fn over_socket(path: &str) -> Result<Self, SystemdError> {
        if !asking() {
            return Err(turned_off());
        }
        let conn = private::connect(path, CALL_TIMEOUT)
            .await
            .map_err(|e| SystemdError::Unreachable(format!("{path}: {e}")))?;
        Ok(Self {
            conn,
            via: "a manager's own socket",
        })
    }

    /// Connects to a service manager on the bus at `address` (a D-Bus address such as
    /// `unix:path=/run/user/1000/bus`, where a user's manager is).
    pub async fn over_bus(address: &str) -> Result<Self, SystemdError> {
        if !asking() {
            return Err(turned_off());
        }
        let unreachable = |e: zbus::Error| SystemdError::Unreachable(format!("{address}: {e}"));
        let conn = zbus::connection::Builder::address(address)
            .map_err(unreachable)?
            .method_timeout(CALL_TIMEOUT)
            .build()
            .await
            .map_err(unreachable)?;
        Ok(Self { conn, via: "a bus" })
    }

    /// Connects, giving up after `limit`.
    pub async fn connect_within(limit: Duration) -> Result<Self, SystemdError> {
        match tokio::time::timeout(limit, Self::connect()).await {
            Ok(r) => r,
            Err(_) => Err(SystemdError::Unreachable(format!(
                "no answer within {limit:?}"
            ))),
        }
    }

    async fn call<B, R>(
        &self,
        what: &str,
        path: &str,
        iface: &str,
        method: &str,
        body: &B,
    ) -> Result<R, SystemdError>
    where
        B: Serialize + Type,
        R: for<'d> Deserialize<'d> + Type,
    {
        let err = |source| SystemdError::Call {
            what: what.to_owned(),
            source,
        };
        let reply = self
            .conn
            .call_method(Some(SERVICE), path, Some(iface), method, body)
            .await
            .map_err(err)?;
        reply.body().deserialize().map_err(err)
    }

    async fn get_all<R>(&self, what: &str, path: &str, iface: &str) -> Result<R, SystemdError>
    where
        R: for<'d> Deserialize<'d> + Type,
    {
        self.call(what, path, PROPERTIES, "GetAll", &(iface,)).await
    }

    /// The manager's boot timestamps and default target.
    pub async fn boot_times(&self) -> Result<BootTimes, SystemdError> {
        let m: ManagerProps = self
            .get_all("the manager's timestamps", MANAGER_PATH, MANAGER)
            .await?;
        let default_target: Option<String> = self
            .call(
                "the default target",
                MANAGER_PATH,
                MANAGER,
                "GetDefaultTarget",
                &(),
            )
            .await
            .ok();
        Ok(BootTimes {
            version: m.version.unwrap_or_default(),
            firmware_us: m.firmware_timestamp_monotonic.unwrap_or(0),
            loader_us: m.loader_timestamp_monotonic.unwrap_or(0),
            initrd_us: m.initrd_timestamp_monotonic.unwrap_or(0),
            userspace_us: m.userspace_timestamp_monotonic.unwrap_or(0),
            finish_us: m.finish_timestamp_monotonic.unwrap_or(0),
            security_start_us: m.security_start_timestamp_monotonic.unwrap_or(0),
            default_target,
        })
    }

    async fn unit_at(&self, name: &str, path: &str) -> Result<SystemdUnit, SystemdError> {
        let u: UnitProps = self
            .get_all(&format!("{name}'s properties"), path, UNIT)
            .await?;
        let id = u.id.unwrap_or_else(|| name.to_owned());
        let load_state = u.load_state.unwrap_or_default();
        let service = if id.ends_with(".service") && load_state == "loaded" {
            let s: ServiceProps = self
                .get_all(&format!("{id}'s service properties"), path, SERVICE_IFACE)
                .await?;
            Some(ServiceFacts {
                service_type: s.service_type.unwrap_or_default(),
                restart: s.restart.unwrap_or_default(),
                result: s.result.unwrap_or_default(),
                exec_start: commands(s.exec_start),
                exec_main_start_us: s.exec_main_start_timestamp_monotonic.unwrap_or(0),
                exec_main_pid: s.exec_main_pid.unwrap_or(0),
                n_restarts: s.n_restarts.unwrap_or(0),
                remain_after_exit: s.remain_after_exit.unwrap_or(false),
                exec_condition: commands(s.exec_condition),
                exec_start_pre: commands(s.exec_start_pre),
                exec_start_post: commands(s.exec_start_post),
                exec_reload: commands(s.exec_reload),
                exec_stop: commands(s.exec_stop),
                exec_stop_post: commands(s.exec_stop_post),
                exec_main_code: s.exec_main_code.unwrap_or(0),
                exec_main_status: s.exec_main_status.unwrap_or(0),
                control_pid: s.control_pid.unwrap_or(0),
                timeout_start_us: s.timeout_start_usec.unwrap_or(0),
                timeout_stop_us: s.timeout_stop_usec.unwrap_or(0),
                runtime_max_us: s.runtime_max_usec.unwrap_or(0),
                watchdog_us: s.watchdog_usec.unwrap_or(0),
                success_exit_status: s
                    .success_exit_status
                    .as_ref()
                    .map(|(st, _)| st.clone())
                    .unwrap_or_default(),
                success_signals: s
                    .success_exit_status
                    .map(|(_, sig)| sig)
                    .unwrap_or_default(),
                user: s.user.unwrap_or_default(),
                group: s.group.unwrap_or_default(),
                supplementary_groups: s.supplementary_groups.unwrap_or_default(),
                dynamic_user: s.dynamic_user.unwrap_or(false),
                pid_file: s.pid_file.unwrap_or_default(),
                environment_files: s.environment_files.unwrap_or_default(),
                reload_result: s.reload_result.unwrap_or_default(),
                restart_prevent_exit_status: s
                    .restart_prevent_exit_status
                    .as_ref()
                    .map(|(st, _)| st.clone())
                    .unwrap_or_default(),
                restart_prevent_signals: s
                    .restart_prevent_exit_status
                    .map(|(_, sig)| sig)
                    .unwrap_or_default(),
            })
        } else {
            None
        };
        let typed = match typed_interface(&id).filter(|_| load_state == "loaded") {
            Some(iface) => {
                let t: TypedProps = self
                    .get_all(&format!("{id}'s own properties"), path, iface)
                    .await?;
                Some(TypedFacts {
                    result: t.result.unwrap_or_default(),
                    last_trigger_us: t.last_trigger_usec_monotonic.unwrap_or(0),
                    next_elapse_us: t.next_elapse_usec_monotonic.unwrap_or(0),
                    accept: t.accept.unwrap_or(false),
                    n_accepted: t.n_accepted.unwrap_or(0),
                    n_connections: t.n_connections.unwrap_or(0),
                    what: t.what.unwrap_or_default(),
                    r#where: t.r#where.unwrap_or_default(),
                    exec_mount: commands(t.exec_mount),
                })
            }
            None => None,
        };
        Ok(SystemdUnit {
            id,
            load_state,
            active_state: u.active_state.unwrap_or_default(),
            sub_state: u.sub_state.unwrap_or_default(),
            fragment_path: u.fragment_path.unwrap_or_default(),
            unit_file_state: u.unit_file_state.unwrap_or_default(),
            after: u.after.unwrap_or_default(),
            wanted_by: u.wanted_by.unwrap_or_default(),
            required_by: u.required_by.unwrap_or_default(),
            inactive_exit_us: u.inactive_exit_timestamp_monotonic.unwrap_or(0),
            active_enter_us: u.active_enter_timestamp_monotonic.unwrap_or(0),
            active_exit_us: u.active_exit_timestamp_monotonic.unwrap_or(0),
            inactive_enter_us: u.inactive_enter_timestamp_monotonic.unwrap_or(0),
            service,
            // (Both results read false before anything was tested: what decides is a
            // condition recorded as not met. Asserts are tested after the conditions.)
            assert_failed: unmet(u.conditions.clone()).is_none()
                && unmet(u.asserts.clone()).is_some(),
            condition_failed: unmet(u.conditions).or_else(|| unmet(u.asserts)),
            start_limit_burst: u.start_limit_burst.unwrap_or(0),
            start_limit_interval_us: u.start_limit_interval_usec.unwrap_or(0),
            requires: [u.requires, u.requisite, u.binds_to]
                .into_iter()
                .flatten()
                .flatten()
                .collect(),
            last_job: None,
            dependency_failed: None,
            triggered_by: u.triggered_by.unwrap_or_default(),
            activations: Vec::new(),
            triggers: u.triggers.unwrap_or_default(),
            asked_by: None,
            typed,
        })
    }

    /// One unit (systemd loads it to answer, as `systemctl show` does).
    pub async fn unit(&self, name: &str) -> Result<SystemdUnit, SystemdError> {
        self.unit_at(name, &unit_object_path(name)).await
    }

    /// The jobs the manager has queued or runs: (unit, job type), such as
    /// ("tracer.service", "restart").
    pub async fn jobs(&self) -> Result<Vec<(String, String)>, SystemdError> {
        let rows: Vec<JobRow> = self
            .call("the list of jobs", MANAGER_PATH, MANAGER, "ListJobs", &())
            .await?;
        Ok(rows
            .into_iter()
            .map(|(_, unit, kind, ..)| (unit, kind))
            .collect())
    }

    /// The names of the loaded units.
    pub async fn unit_names(&self) -> Result<Vec<String>, SystemdError> {
        let rows: Vec<UnitRow> = self
            .call("the list of units", MANAGER_PATH, MANAGER, "ListUnits", &())
            .await?;
        Ok(rows.into_iter().map(|(id, ..)| id).collect())
    }

    /// The boot times and every loaded unit.
    pub async fn snapshot(&self) -> Result<Snapshot, SystemdError> {
        let boot = self.boot_times().await?;
        let rows: Vec<UnitRow> = self
            .call("the list of units", MANAGER_PATH, MANAGER, "ListUnits", &())
            .await?;
        let mut units = Vec::with_capacity(rows.len());
        for (id, _, _, _, _, _, path, ..) in rows {
            match self.unit_at(&id, path.as_str()).await {
                Ok(u) => units.push(u),
                // A unit can vanish between the list and the question (a finished scope).
                Err(e) => tracing::debug!("{e}"),
            }
        }
        Ok(Snapshot {
            boot,
            units,
            user: None,
            names: Vec::new(),
        })
    }
}

/// One connection to systemd, made when first needed and kept for the questions after
/// (the daemon's reports used to connect anew for each); made again after a failure.
#[derive(Default)]
pub struct Link {
    held: tokio::sync::Mutex<Option<Systemd>>,
    /// Say on stderr which way a new connection went when it changes (the daemon's link:
    /// its stderr is its log).
    announce: bool,
    said: std::sync::Mutex<Option<&'static str>>,
}

impl Link {
    /// A link that says which way each new connection went, when that changes.
    pub fn announcing() -> Self {
        Self {
            announce: true,
            ..Self::default()
        }
    }

    /// The connection, made within `limit` when there is none.
    pub async fn get(&self, limit: Duration) -> Result<Systemd, SystemdError> {
        let mut held = self.held.lock().await;
        if let Some(sd) = held.as_ref() {
            return Ok(sd.clone());
        }
        let t = std::time::Instant::now();
        let sd = Systemd::connect_within(limit).await?;
        if self.announce {
            let mut said = self.said.lock().unwrap_or_else(|e| e.into_inner());
            say_way(&mut said, "systemd's facts for reports", &sd, t);
        }
        *held = Some(sd.clone());
        Ok(sd)
    }

    /// Drops the connection after a failure: the next question makes a new one.
    pub async fn forget(&self) {
        *self.held.lock().await = None;
    }

    /// `ask` over the connection within `limit`; the connection forgotten when it fails.
    async fn ask<T, F>(&self, limit: Duration, ask: impl FnOnce(Systemd) -> F) -> Option<T>
    where
        F: Future<Output = Result<T, SystemdError>>,
    {
        let r = async {
            let sd = self.get(limit).await?;
            match tokio::time::timeout(limit, ask(sd)).await {
                Ok(r) => r,
                Err(_) => Err(SystemdError::Unreachable(format!(
                    "no complete answer within {limit:?}"
                ))),
            }
        }
        .await;
        match r {
            Ok(t) => Some(t),
            Err(e) => {
                tracing::debug!("{e}");
                self.forget().await;
                None
            }
        }
    }
}

/// systemd's snapshot now, or None (with the reason logged at debug level) when systemd
/// cannot be asked.
pub async fn try_snapshot(limit: Duration) -> Option<Snapshot> {
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        let r = async {
            let sd = Systemd::connect_within(left).await?;
            match tokio::time::timeout(left, sd.snapshot()).await {
                Ok(r) => r,
                Err(_) => Err(SystemdError::Unreachable(format!(
                    "no complete answer within {limit:?}"
                ))),
            }
        }
        .await;
        match r {
            Ok(s) => return Some(s),
            // A call that failed once connected (one of its questions timed out while pid 1
            // was busy, as at the end of a slow boot): asked again on a new connection,
            // while time is left. systemd not there at all is said at once.
            Err(e @ SystemdError::Call { .. })
                if deadline.saturating_duration_since(tokio::time::Instant::now())
                    > SNAPSHOT_RETRY =>
            {
                tracing::debug!("{e}; asking again");
                tokio::time::sleep(SNAPSHOT_RETRY).await;
            }
            Err(e) => {
                tracing::debug!("{e}");
                return None;
            }
        }
    }
}

/// The pause before a snapshot that failed is asked again.
const SNAPSHOT_RETRY: Duration = Duration::from_millis(500);

/// Once boot has finished (systemd's FinishTimestamp is set), takes systemd's account of
/// it (its timestamps, every unit's, the ordering dependencies) for the journal, so that
/// `tracer boot` of this boot can use it later. Quietly gives up when systemd is not on
/// D-Bus (pid 1 is not systemd).
pub async fn account_when_booted(tx: tokio::sync::mpsc::Sender<Snapshot>) {
    if !booted_with_systemd() {
        tracing::info!(
            "pid 1 is not systemd (no /run/systemd/system): systemd's account of the boot is not recorded"
        );
        return;
    }
    // The daemon starts early in boot, before the system bus: whatever fails (no bus yet,
    // a call that timed out while the bus was starting, a unit gone between the list and
    // its properties) is tried again on a new connection, less often as time goes by.
    let mut tries = 0u32;
    let mut said = None;
    loop {
        match account_once(&mut said).await {
            Ok(snapshot) => {
                let _ = tx.send(snapshot).await;
                return;
            }
            Err(e) => {
                tries += 1;
                if tries == 60 {
                    tracing::warn!(
                        "systemd's own account of the boot cannot be recorded yet (still trying every 30 s): {e}"
                    );
                } else {
                    tracing::debug!("systemd's account, try {tries}: {e}");
                }
                let pause = if tries < 60 { 2 } else { 30 };
                tokio::time::sleep(Duration::from_secs(pause)).await;
            }
        }
    }
}

/// pid 1's own socket did not give a connection: said once at warn, then at debug.
fn private_refused(why: &str) {
    static SAID: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
    if SAID.swap(true, std::sync::atomic::Ordering::Relaxed) {
        tracing::debug!("{}: {why}; asking over the system bus", private::PATH);
    } else {
        tracing::warn!("{}: {why}; asking over the system bus", private::PATH);
    }
}

/// Says on stderr which way `sd` reached systemd, and how long connecting took since
/// `since`, when that way is not the one `said` last (whatever the log level, as the
/// ready line is: which way systemd was reached is what an operator looks for when its
/// account is missing).
fn say_way(said: &mut Option<&'static str>, what: &str, sd: &Systemd, since: std::time::Instant) {
    if *said != Some(sd.via) {
        eprintln!(
            "tracer daemon: {what}: asked over {} (connected in {} ms)",
            sd.via,
            since.elapsed().as_millis()
        );
        *said = Some(sd.via);
    }
}

/// Connects, waits until boot has finished, and takes systemd's account; `said` is the way
/// systemd was last said to be reached.
async fn account_once(said: &mut Option<&'static str>) -> Result<Snapshot, SystemdError> {
    let t = std::time::Instant::now();
    let sd = Systemd::connect_within(Duration::from_secs(15)).await?;
    say_way(said, "systemd's account", &sd, t);
    while !sd.boot_times().await?.finished() {
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    sd.snapshot().await
}

/// How long a report waits for systemd's facts before going on without them.
const REPORT_WAIT: Duration = Duration::from_secs(10);

/// What systemd says that a report shows next to the kernel's account: every unit for
/// `units`, the unit (`mylog` is mylog.service) for `why` — a user's unit
/// (`user@1000.service/nginx`) asked of that user's manager, over its own socket; None
/// when systemd cannot be asked, or the report shows nothing of it.
pub async fn facts_for(query: &crate::protocol::Query, link: &Link) -> Option<Snapshot> {
    use crate::protocol::Query;
    match query {
        Query::Units { .. } => {
            link.ask(REPORT_WAIT, |sd| async move { sd.snapshot().await })
                .await
        }
        Query::Why { unit, .. } if !unit.contains('/') => {
            let name = crate::unit::full_unit_name(unit);
            // A unit that is not loaded: the loaded ones' names too, for the nearest.
            let (u, names) = link
                .ask(REPORT_WAIT, |sd| async move {
                    let u = sd.unit(&name).await?;
                    let names = if u.load_state == "loaded" {
                        Vec::new()
                    } else {
                        sd.unit_names().await?
                    };
                    Ok((u, names))
                })
                .await?;
            Some(Snapshot {
                units: vec![u],
                names,
                ..Snapshot::default()
            })
        }
        Query::Why { unit, .. } => {
            let (uid, name) = crate::unit::user_unit_of_key(unit)?;
            let name = crate::unit::full_unit_name(name);
            let u = user_unit(uid, &name).await?;
            Some(Snapshot {
                units: vec![u],
                user: Some(uid),
                ..Snapshot::default()
            })
        }
        Query::Restarts { .. } => None,
    }
}

/// A user's unit as that user's manager describes it, asked over the manager's own socket
/// (`/run/user/UID/systemd/private`; root may connect), on a connection of its own.
async fn user_unit(uid: u32, name: &str) -> Option<SystemdUnit> {
    let path = format!("/run/user/{uid}/systemd/private");
    let asked = async {
        let sd = Systemd::over_socket(&path).await?;
        sd.unit(name).await
    };
    match tokio::time::timeout(REPORT_WAIT, asked).await {
        Ok(Ok(u)) => Some(u),
        Ok(Err(e)) => {
            tracing::debug!("user {uid}'s manager: {e}");
            None
        }
        Err(_) => {
            tracing::debug!("user {uid}'s manager: no answer within {REPORT_WAIT:?}");
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn object_paths_are_escaped_like_systemd() {
        assert_eq!(
            unit_object_path("dbus.service"),
            "/org/freedesktop/systemd1/unit/dbus_2eservice"
        );
        assert_eq!(
            unit_object_path("getty@tty1.service"),
            "/org/freedesktop/systemd1/unit/getty_40tty1_2eservice"
        );
        assert_eq!(
            unit_object_path("1x-y.mount"),
            "/org/freedesktop/systemd1/unit/_31x_2dy_2emount"
        );
    }

    fn unit(id: &str, activating: u64, active: u64, after: &[&str]) -> SystemdUnit {
        SystemdUnit {
            id: id.into(),
            inactive_exit_us: activating,
            active_enter_us: active,
            after: after.iter().map(|s| s.to_string()).collect(),
            ..Default::default()
        }
    }

    #[test]
    fn critical_chain_follows_the_last_activated_dependency() {
        let snap = Snapshot {
            boot: BootTimes {
                finish_us: 10_000,
                default_target: Some("graphical.target".into()),
                ..Default::default()
            },
            units: vec![
                unit(
                    "graphical.target",
                    9_000,
                    9_000,
                    &["multi-user.target", "a.service"],
                ),
                unit(
                    "multi-user.target",
                    8_000,
                    8_000,
                    &["b.service", "c.service", "late.service"],
                ),
                unit("a.service", 100, 500, &[]),
                unit("b.service", 2_000, 7_000, &["basic.target"]),
                unit("c.service", 2_000, 3_000, &["basic.target"]),
                // Active only after boot finished: not part of it.
                unit("late.service", 9_500, 12_000, &[]),
                unit("basic.target", 1_500, 1_500, &["never.service"]),
                // Never started activating.
                unit("never.service", 0, 0, &[]),
            ],
            user: None,
            names: Vec::new(),
        };
        assert_eq!(
            snap.critical_chain(None),
            [
                "graphical.target",
                "multi-user.target",
                "b.service",
                "basic.target"
            ]
        );
        assert_eq!(
            snap.critical_chain(Some("c.service")),
            ["c.service", "basic.target"]
        );
    }

    /// What a daemon-reload made systemd forget comes back from the boot's account, for
    /// the same activation only.
    #[test]
    fn a_reload_s_losses_are_filled_from_the_boot_s_account() {
        let ran = ExecCommand {
            path: "/bin/false".into(),
            pid: 7,
            code: CLD_EXITED,
            status: 1,
            exit_us: 50,
            ..ExecCommand::default()
        };
        let booted = SystemdUnit {
            id: "u.service".into(),
            active_state: "failed".into(),
            inactive_exit_us: 10,
            condition_failed: Some("ConditionPathExists=/x".into()),
            service: Some(ServiceFacts {
                exec_start_post: vec![ran.clone()],
                ..ServiceFacts::default()
            }),
            ..SystemdUnit::default()
        };
        let reloaded = || SystemdUnit {
            condition_failed: None,
            service: Some(ServiceFacts {
                exec_start_post: vec![ExecCommand {
                    path: "/bin/false".into(),
                    ..ExecCommand::default()
                }],
                ..ServiceFacts::default()
            }),
            ..booted.clone()
        };
        let mut now = reloaded();
        now.fill_from(&booted);
        assert_eq!(now, booted);
        let mut later = SystemdUnit {
            inactive_exit_us: 99,
            ..reloaded()
        };
        let before = later.clone();
        later.fill_from(&booted);
        assert_eq!(
            later, before,
            "another activation: nothing taken from the boot's"
        );
    }

    #[test]
    fn part_of_prefers_the_boot_targets() {
        let u = SystemdUnit {
            wanted_by: vec![
                "foo.service".into(),
                "custom.target".into(),
                "multi-user.target".into(),
            ],
            ..Default::default()
        };
        assert_eq!(u.part_of(), Some("multi-user.target"));
        let u = SystemdUnit {
            required_by: vec!["custom.target".into()],
            ..Default::default()
        };
        assert_eq!(u.part_of(), Some("custom.target"));
    }
}
