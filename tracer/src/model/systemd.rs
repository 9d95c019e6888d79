//! What systemd's ways imply for the model: the roles of a unit's commands, service
//! types, the executor systemd ≥ 255 runs first, which cgroups hold a unit's run.

use serde::Serialize;

use super::{facts::UnitFile, procs::Proc};
use crate::unit::{UnitKind, UnitRef};

/// What a command of a unit is there for: the unit-file setting it comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum Role {
    ExecCondition,
    ExecStartPre,
    ExecStart,
    ExecStartPost,
    ExecReload,
    ExecStop,
    ExecStopPost,
}

impl Role {
    /// The setting's name, `ExecStart`.
    pub fn name(self) -> &'static str {
        match self {
            Self::ExecCondition => "ExecCondition",
            Self::ExecStartPre => "ExecStartPre",
            Self::ExecStart => "ExecStart",
            Self::ExecStartPost => "ExecStartPost",
            Self::ExecReload => "ExecReload",
            Self::ExecStop => "ExecStop",
            Self::ExecStopPost => "ExecStopPost",
        }
    }
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.pad(self.name())
    }
}

/// A service's `Type=`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ServiceType {
    Simple,
    Exec,
    Forking,
    Oneshot,
    Dbus,
    Notify,
    NotifyReload,
    Idle,
}

impl ServiceType {
    /// The type `Type=NAME` (or systemd's `Type` property) names.
    pub fn from_name(name: &str) -> Option<Self> {
        Some(match name {
            "simple" => Self::Simple,
            "exec" => Self::Exec,
            "forking" => Self::Forking,
            "oneshot" => Self::Oneshot,
            "dbus" => Self::Dbus,
            "notify" => Self::Notify,
            "notify-reload" => Self::NotifyReload,
            "idle" => Self::Idle,
            _ => return None,
        })
    }

    /// The type a unit file sets (None: no file, or no or an unknown `Type=`).
    pub fn of(file: Option<&UnitFile>) -> Option<Self> {
        Self::from_name(file?.service_type.as_deref()?)
    }
}

/// Whether a unit file sets `Type=forking`: its main process is the daemon ExecStart's
/// process leaves behind, not that process.
pub(super) fn forking(file: Option<&UnitFile>) -> bool {
    ServiceType::of(file) == Some(ServiceType::Forking)
}

/// A command of a unit (ExecStart and friends), not a helper one of them forked: its
/// parent is the service manager, pid 1 or a user's (a `systemd` with a parent of its
/// own).
pub(super) fn is_top_level(ppid: u32, parent: Option<&Proc>) -> bool {
    ppid == 1 || parent.is_some_and(|p| p.comm == "systemd" && p.ppid != 0)
}

/// Whether the processes of a cgroup are that unit's run: not for a slice, nor for pid 1's
/// own init.scope, whose children are on their way into a unit (systemd ≤ 254 forks
/// there, then moves them).
pub(super) fn runs_in_its_cgroup(u: &UnitRef) -> bool {
    u.kind != UnitKind::Slice && u.cgroup != "/init.scope"
}

/// The executor of systemd ≥ 255, exec'd from a file descriptor before the real program.
pub(super) fn is_executor(filename: &str, argv: &[String]) -> bool {
    argv.first()
        .is_some_and(|a| a.ends_with("/systemd-executor") || a == "systemd-executor")
        || (filename.starts_with("/proc/self/fd/") || filename.starts_with("/dev/fd/"))
            && argv.first().is_some_and(|a| a.contains("systemd-executor"))
}

/// ExecStartPre or ExecStart: by position among the run's top-level commands when that
/// fits, else by which list names the program.
pub(super) fn role_of(file: Option<&UnitFile>, program: &str, index: usize) -> Option<Role> {
    let file = file?;
    let same = |p: &String| p == program || base(p) == base(program);
    let pre = file.exec_start_pre.len();
    if index < pre && same(&file.exec_start_pre[index]) {
        return Some(Role::ExecStartPre);
    }
    if file
        .exec_start
        .get(index.wrapping_sub(pre))
        .is_some_and(same)
    {
        return Some(Role::ExecStart);
    }
    if file.exec_start.iter().any(same) {
        Some(Role::ExecStart)
    } else if file.exec_start_pre.iter().any(same) {
        Some(Role::ExecStartPre)
    } else {
        None
    }
}

fn base(path: &str) -> &str {
    path.rsplit('/').next().unwrap_or(path)
}
