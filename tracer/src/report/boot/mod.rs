//! The boot-order timeline: from a recorded boot replayed through the unit model, what
//! started when, what ran inside each unit and for how long, what failed and why.
//!
//! systemd's own account (read over D-Bus when boot finished and kept in the journal, or
//! asked live for the current boot) gives each unit's ActiveEnterTimestamp, the target
//! milestones, the boot's phases and the After= dependencies of the critical chain.
//! Without it a unit's "active" moment is inferred from its type and the events, and
//! marked as inferred: Type=simple and exec when its main program was executed, oneshot
//! when its main process exited, forking when ExecStart's process exited, anything else
//! (notify, dbus) at the main exec as a lower bound.

mod compare;
mod plot;
mod text;

use serde::Serialize;

pub use self::{
    compare::{Change, compare, compare_text},
    plot::{html, svg},
    text::{critical_text, text},
};
use crate::{
    model::{Model, Run, UnitHistory, facts::Facts},
    procfs::ProcInfo,
    systemd::{Snapshot, SystemdUnit},
    unit::UnitKind,
};

/// One process a unit ran during its first activation of the boot.
#[derive(Clone, Debug, Serialize)]
pub struct ProcessSpan {
    pub pid: u32,
    pub program: Option<String>,
    pub role: Option<String>,
    pub start_ns: u64,
    pub end_ns: Option<u64>,
    pub status: Option<String>,
}

/// One unit on the boot timeline.
#[derive(Clone, Debug, Serialize)]
pub struct UnitTimeline {
    pub unit: String,
    /// Its cgroup appeared (or, found at start, its first process started).
    pub start_ns: u64,
    /// Its first process was forked (ExecStartPre's, or the main one).
    pub first_fork_ns: Option<u64>,
    /// Its main process was forked.
    pub main_fork_ns: Option<u64>,
    /// Its main process began in the unit: moved into the unit's cgroup by pid 1 (systemd
    /// ≤ 254), else forked into it.
    pub main_started_ns: Option<u64>,
    /// Its main program was executed.
    pub main_exec_ns: Option<u64>,
    /// It became active (see the module doc), or failed.
    pub active_ns: Option<u64>,
    pub active_inferred: bool,
    /// From start to active.
    pub took_ns: Option<u64>,
    /// The process that took longest before the unit became active.
    pub slowest: Option<ProcessSpan>,
    pub failed: bool,
    /// When it failed (its failing process exited).
    pub failed_ns: Option<u64>,
    pub cause: Option<String>,
    pub found_at_start: bool,
    pub processes: Vec<ProcessSpan>,
    /// The target that pulled it in (systemd's WantedBy=/RequiredBy=).
    pub part_of: Option<String>,
    /// systemd's InactiveExitTimestamp (it began activating), when known.
    pub systemd_activating_ns: Option<u64>,
    /// systemd's ExecMainStartTimestamp, when known.
    pub systemd_main_start_ns: Option<u64>,
}

/// A target reached (systemd's ActiveEnterTimestamp).
#[derive(Clone, Debug, Serialize)]
pub struct Milestone {
    pub unit: String,
    pub at_ns: u64,
}

/// One link of the critical chain.
#[derive(Clone, Debug, Serialize)]
pub struct ChainLink {
    pub unit: String,
    pub activating_ns: Option<u64>,
    pub active_ns: Option<u64>,
    /// From activating to active.
    pub took_ns: Option<u64>,
    /// The process that held the unit's start up longest (what only tracer can see).
    pub held_by: Option<ProcessSpan>,
}

/// The boot's phases, as systemd-analyze time tells them.
#[derive(Clone, Debug, Serialize)]
pub struct Phases {
    pub systemd_version: String,
    /// The kernel's part (until the initrd or pid 1 started), when known.
    pub kernel_ns: Option<u64>,
    /// The initrd's part, when there was one.
    pub initrd_ns: Option<u64>,
    /// From pid 1's start until the boot's last job was done, once finished.
    pub userspace_ns: Option<u64>,
    pub default_target: Option<String>,
    /// When the default target was reached (since the kernel started).
    pub default_target_reached_ns: Option<u64>,
    /// ... and how long after pid 1 started.
    pub default_target_after_userspace_ns: Option<u64>,
}

/// The whole report.
#[derive(Clone, Debug, Serialize)]
pub struct BootReport {
    pub boot_id: String,
    /// When pid 1 started (the end of the kernel's and initrd's part), if known.
    pub userspace_start_ns: Option<u64>,
    /// The first event recorded: the tracer was attached by then.
    pub attached_ns: Option<u64>,
    /// The last unit to become active.
    pub last_active_ns: Option<u64>,
    pub units: Vec<UnitTimeline>,
    /// systemd's phases, when its account was available.
    pub phases: Option<Phases>,
    /// The boot targets reached, in order.
    pub milestones: Vec<Milestone>,
    /// The chain that decided when the default target was reached (from the target back).
    pub critical_chain: Vec<ChainLink>,
}

const US: u64 = 1_000;

/// systemd's `*TimestampMonotonic` (µs, 0 = unset) in ns.
fn ts(us: u64) -> Option<u64> {
    (us > 0).then(|| us * US)
}

fn span(r: &Run, pid: u32) -> Option<ProcessSpan> {
    let c = r.command(pid)?;
    Some(ProcessSpan {
        pid: c.pid,
        program: c.program.clone(),
        role: c.role.map(|r| r.name().to_owned()),
        start_ns: c.exec_ns.unwrap_or(c.started_ns),
        end_ns: c.exited_ns,
        status: c.status.map(|s| s.to_string()),
    })
}

fn timeline(h: &UnitHistory, sd: Option<&SystemdUnit>) -> Option<UnitTimeline> {
    let r = h.runs.first()?;
    let main = r.main_pid.and_then(|p| r.command(p));
    let main_exec_ns = main.and_then(|c| c.exec_ns);
    let ty = h
        .file
        .as_ref()
        .and_then(|f| f.service_type.clone())
        .unwrap_or_else(|| "simple".into());
    let failed = r.failed();
    let exec_start_exit = r
        .commands
        .iter()
        .find(|c| c.role == Some(crate::model::Role::ExecStart))
        .and_then(|c| c.exited_ns);
    let failed_ns = r
        .outcome
        .as_ref()
        .filter(|_| failed)
        .and_then(|o| r.command(o.pid)?.exited_ns)
        .or(if failed { r.ended_ns } else { None });
    // systemd's own moment, when it belongs to this run (a later restart moves it).
    // systemd keeps the latest activation's stamps: a restart's come after its new cgroup
    // appeared. (The end of this run is no bound: systemd may remove the emptied cgroup
    // of a RemainAfterExit unit before it handles the exit that makes it active.)
    let next_start = h.runs.get(1).map(|n| n.started_ns);
    let in_run = |at: u64| at + 1_000_000_000 >= r.started_ns && next_start.is_none_or(|n| at < n);
    let systemd_active = sd
        .and_then(|u| ts(u.active_enter_us))
        .filter(|&a| in_run(a));
    let (active_ns, inferred) = match ty.as_str() {
        _ if systemd_active.is_some() && !failed => (systemd_active, false),
        "oneshot" if !failed => (main.and_then(|c| c.exited_ns), true),
        "forking" if !failed => (exec_start_exit, true),
        "oneshot" | "forking" => (failed_ns, false),
        // A simple service that got as far as its main program was active from then on,
        // even if it failed later; one that never did failed while starting.
        _ => match main_exec_ns {
            Some(at) => (Some(at), true),
            None => (failed_ns, false),
        },
    };
    let processes: Vec<ProcessSpan> = r.commands.iter().filter_map(|c| span(r, c.pid)).collect();
    // The process that held the start up longest: the part of its life before the unit
    // became active.
    let before_active = |p: &ProcessSpan| {
        let end = match (p.end_ns, active_ns) {
            (Some(e), Some(a)) => e.min(a),
            (e, a) => e.or(a).unwrap_or(p.start_ns),
        };
        end.saturating_sub(p.start_ns)
    };
    let slowest = processes
        .iter()
        .filter(|p| active_ns.is_none_or(|a| p.start_ns < a))
        .max_by_key(|p| before_active(p))
        .cloned();
    Some(UnitTimeline {
        unit: h.unit.key().into_owned(),
        start_ns: r.started_ns,
        first_fork_ns: r.commands.iter().map(|c| c.started_ns).min(),
        main_fork_ns: main.map(|c| c.started_ns),
        main_started_ns: main.map(|c| c.moved_ns.unwrap_or(c.started_ns)),
        main_exec_ns,
        active_ns,
        active_inferred: inferred,
        // Found running at start: when it became active is not known.
        took_ns: active_ns
            .filter(|_| !matches!(r.start, crate::model::StartKind::FoundAtStart))
            .map(|a| a.saturating_sub(r.started_ns)),
        slowest,
        failed,
        failed_ns,
        cause: r
            .outcome
            .as_ref()
            .and_then(|o| o.cause.as_ref())
            .filter(|_| failed)
            .map(|c| c.summary()),
        found_at_start: matches!(r.start, crate::model::StartKind::FoundAtStart),
        processes,
        part_of: sd.and_then(|u| u.part_of()).map(str::to_owned),
        systemd_activating_ns: sd
            .and_then(|u| ts(u.inactive_exit_us))
            .filter(|&a| in_run(a)),
        systemd_main_start_ns: sd
            .and_then(|u| ts(u.service.as_ref()?.exec_main_start_us))
            .filter(|&a| in_run(a)),
    })
}

/// The targets a boot report marks.
const MILESTONES: [&str; 5] = [
    "sysinit.target",
    "basic.target",
    "network.target",
    "multi-user.target",
    "graphical.target",
];

fn phases(sd: &Snapshot) -> Phases {
    let b = &sd.boot;
    let default_target_reached_ns = b
        .default_target
        .as_deref()
        .and_then(|t| ts(sd.unit(t)?.active_enter_us));
    Phases {
        systemd_version: b.version.clone(),
        kernel_ns: b.kernel_done_us().and_then(ts),
        initrd_ns: (b.initrd_us > 0 && b.userspace_us > b.initrd_us)
            .then(|| (b.userspace_us - b.initrd_us) * US),
        userspace_ns: (b.finish_us > 0).then(|| b.finish_us.saturating_sub(b.userspace_us) * US),
        default_target: b.default_target.clone(),
        default_target_reached_ns,
        default_target_after_userspace_ns: default_target_reached_ns
            .map(|r| r.saturating_sub(b.userspace_us * US)),
    }
}

impl BootReport {
    /// The report of a replayed boot.
    pub fn build<F: Facts>(
        boot_id: &str,
        model: &Model<F>,
        found: &[ProcInfo],
        attached_ns: Option<u64>,
        sd: Option<&Snapshot>,
    ) -> Self {
        let mut units: Vec<UnitTimeline> = model
            .units()
            .filter(|h| {
                matches!(
                    h.unit.kind,
                    UnitKind::Service | UnitKind::Socket | UnitKind::Mount | UnitKind::Swap
                )
            })
            .filter_map(|h| timeline(h, sd.and_then(|s| s.unit_of(&h.unit))))
            .collect();
        units.sort_by_key(|u| (u.start_ns, u.unit.clone()));
        let mut milestones: Vec<Milestone> = sd
            .map(|s| {
                MILESTONES
                    .iter()
                    .chain(s.boot.default_target.as_deref().as_slice())
                    .filter_map(|t| {
                        Some(Milestone {
                            unit: (*t).to_owned(),
                            at_ns: ts(s.unit(t)?.active_enter_us)?,
                        })
                    })
                    .collect()
            })
            .unwrap_or_default();
        milestones.sort_by_key(|m| m.at_ns);
        milestones.dedup_by(|a, b| a.unit == b.unit);
        let critical_chain = sd
            .map(|s| {
                s.critical_chain(None)
                    .into_iter()
                    .map(|name| {
                        let u = s.unit(&name);
                        let activating_ns = u.and_then(|u| ts(u.inactive_exit_us));
                        let active_ns = u.and_then(|u| ts(u.active_enter_us));
                        ChainLink {
                            took_ns: activating_ns
                                .zip(active_ns)
                                .map(|(a, b)| b.saturating_sub(a))
                                .filter(|&t| t > 0),
                            held_by: units
                                .iter()
                                .find(|t| t.unit == name)
                                .and_then(|t| t.slowest.clone()),
                            unit: name,
                            activating_ns,
                            active_ns,
                        }
                    })
                    .collect()
            })
            .unwrap_or_default();
        let userspace_start_ns = sd
            .and_then(|s| ts(s.boot.userspace_us))
            .or_else(|| found.iter().find(|p| p.pid == 1).map(|p| p.start_ns));
        Self {
            boot_id: boot_id.to_owned(),
            userspace_start_ns,
            attached_ns,
            last_active_ns: units.iter().filter_map(|u| u.active_ns).max(),
            units,
            phases: sd.map(phases),
            milestones,
            critical_chain,
        }
    }

    /// Units by how long they took to become active, slowest first.
    pub fn blame(&self) -> Vec<&UnitTimeline> {
        let mut v: Vec<&UnitTimeline> = self.units.iter().filter(|u| u.took_ns.is_some()).collect();
        v.sort_by_key(|u| std::cmp::Reverse(u.took_ns));
        v
    }
}
