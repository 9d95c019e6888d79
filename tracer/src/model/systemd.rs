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

/// A command's role: by position among the run's top-level commands when that fits (a
/// start runs ExecCondition=, ExecStartPre=, ExecStart=, ExecStartPost= in order), else by
/// which of the unit file's lists names the program.
pub(super) fn role_of(file: Option<&UnitFile>, program: &str, index: usize) -> Option<Role> {
    let file = file?;
    let same = |p: &String| p == program || base(p) == base(program);
    let lists = [
        (Role::ExecCondition, &file.exec_condition),
        (Role::ExecStartPre, &file.exec_start_pre),
        (Role::ExecStart, &file.exec_start),
        (Role::ExecStartPost, &file.exec_start_post),
        (Role::ExecReload, &file.exec_reload),
        (Role::ExecStop, &file.exec_stop),
        (Role::ExecStopPost, &file.exec_stop_post),
    ];
    let in_order = lists[..4]
        .iter()
        .flat_map(|(role, list)| list.iter().map(move |p| (*role, p)));
    if let Some((role, p)) = in_order.clone().nth(index)
        && same(p)
    {
        return Some(role);
    }
    // ExecStart first: the same program in two lists is most often the main one.
    [2, 1, 0, 3, 4, 5, 6]
        .into_iter()
        .map(|i| lists[i])
        .find(|(_, list)| list.iter().any(same))
        .map(|(role, _)| role)
}

fn base(path: &str) -> &str {
    path.rsplit('/').next().unwrap_or(path)
}
