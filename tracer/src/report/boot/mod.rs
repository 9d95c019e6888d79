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

use std::fmt::Write as _;

use serde::Serialize;

use super::fmt::{min_secs, ms_or_secs, secs};
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
        role: c.role.clone(),
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
        .find(|c| c.role.as_deref() == Some("ExecStart"))
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
        unit: h.unit.name.clone(),
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
            .filter_map(|h| timeline(h, sd.and_then(|s| s.unit(&h.unit.name))))
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

fn base(p: &str) -> &str {
    p.rsplit('/').next().unwrap_or(p)
}

/// The text report.
pub fn text(r: &BootReport, blame: bool) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "Boot {}", r.boot_id);
    if let Some(p) = &r.phases {
        let mut parts = Vec::new();
        if let Some(k) = p.kernel_ns {
            parts.push(format!("{} (kernel)", min_secs(k)));
        }
        if let Some(i) = p.initrd_ns {
            parts.push(format!("{} (initrd)", min_secs(i)));
        }
        match p.userspace_ns {
            Some(u) => {
                parts.push(format!("{} (userspace)", min_secs(u)));
                let total = p.kernel_ns.unwrap_or(0) + p.initrd_ns.unwrap_or(0) + u;
                let _ = writeln!(
                    out,
                    "  systemd {}: Startup finished in {} = {}",
                    p.systemd_version,
                    parts.join(" + "),
                    min_secs(total)
                );
            }
            None => {
                let _ = writeln!(
                    out,
                    "  systemd {}: still booting ({})",
                    p.systemd_version,
                    parts.join(" + ")
                );
            }
        }
        if let (Some(t), Some(after)) = (&p.default_target, p.default_target_after_userspace_ns) {
            let _ = writeln!(out, "  {t} reached after {} in userspace.", min_secs(after));
        }
    } else if let Some(u) = r.userspace_start_ns {
        let _ = writeln!(out, "  kernel (+initrd): {} (until pid 1 started)", secs(u));
    }
    if let Some(a) = r.attached_ns {
        let before = r.units.iter().filter(|u| u.found_at_start).count();
        let after_userspace = r.userspace_start_ns.map_or(String::new(), |u| {
            format!(", {} after pid 1 started", secs(a.saturating_sub(u)))
        });
        let _ = writeln!(
            out,
            "  tracer attached: {}{after_userspace}; {before} units were running by then: reconstructed from /proc, marked (found at start)",
            secs(a)
        );
    }
    if let Some(l) = r.last_active_ns.filter(|_| r.phases.is_none()) {
        let _ = writeln!(
            out,
            "  userspace: the last unit became active at {} (inferred{})",
            secs(l),
            r.userspace_start_ns.map_or(String::new(), |u| format!(
                ", {} after pid 1 started",
                ms_or_secs(l.saturating_sub(u))
            ))
        );
    }
    let failed = r.units.iter().filter(|u| u.failed).count();
    let _ = writeln!(out, "  {} units, {failed} failed\n", r.units.len());
    let rows: Vec<&UnitTimeline> = if blame {
        r.blame()
    } else {
        r.units.iter().collect()
    };
    let _ = writeln!(
        out,
        "  times in seconds since the kernel started; ACTIVE {}\n",
        if r.phases.is_some() {
            "from systemd, ~ where inferred from the events"
        } else {
            "inferred from the events (~)"
        }
    );
    let _ = writeln!(out, "{:>9} {:>10} {:>8}  UNIT", "START", "ACTIVE", "TOOK");
    let mut milestones = r.milestones.iter().peekable();
    for u in rows {
        while !blame && let Some(m) = milestones.next_if(|m| m.at_ns <= u.start_ns) {
            let _ = writeln!(
                out,
                "{:>9} {:>10} {:>8}  ── {} reached",
                "",
                secs(m.at_ns),
                "",
                m.unit
            );
        }
        let active = match (u.active_ns, u.found_at_start) {
            (_, true) => "before".to_owned(),
            (Some(a), false) if u.active_inferred => format!("~{}", secs(a)),
            (Some(a), false) => secs(a),
            (None, false) => "-".to_owned(),
        };
        let took = u.took_ns.map_or("-".to_owned(), ms_or_secs);
        let mut note = String::new();
        if u.found_at_start {
            note.push_str("  (found at start)");
        }
        if let Some(t) = &u.part_of {
            note.push_str(&format!("  (part of {t})"));
        }
        if let Some(c) = &u.cause {
            note.push_str(&format!("  FAILED: {c}"));
        } else if let Some(p) = &u.slowest
            && let (Some(active), Some(t)) = (u.active_ns, u.took_ns)
            && let held = p
                .end_ns
                .unwrap_or(active)
                .min(active)
                .saturating_sub(p.start_ns)
            && held * 2 > t
            && t >= 100_000_000
        {
            note.push_str(&format!(
                "  ← {} {} took {}",
                p.role.as_deref().unwrap_or("process"),
                p.program.as_deref().map(base).unwrap_or("?"),
                ms_or_secs(held)
            ));
        }
        let _ = writeln!(
            out,
            "{:>9} {:>10} {:>8}  {}{note}",
            secs(u.start_ns),
            active,
            took,
            u.unit
        );
        if !blame {
            for p in &u.processes {
                let _ = writeln!(
                    out,
                    "{:>9} {:>10} {:>8}    └ {}{}{}",
                    secs(p.start_ns),
                    "",
                    p.end_ns.map_or("running".to_owned(), |e| ms_or_secs(
                        e.saturating_sub(p.start_ns)
                    )),
                    p.role.as_deref().map_or(String::new(), |r| format!("{r} ")),
                    p.program.as_deref().unwrap_or("(never executed)"),
                    p.status
                        .as_deref()
                        .map_or(String::new(), |st| format!("  {st}"))
                );
            }
        }
    }
    for m in milestones.filter(|_| !blame) {
        let _ = writeln!(
            out,
            "{:>9} {:>10} {:>8}  ── {} reached",
            "",
            secs(m.at_ns),
            "",
            m.unit
        );
    }
    out
}

/// The critical chain as text, the target first: when each link became active (`@`),
/// how long it took to start (`+`), and the process inside that held it up.
pub fn critical_text(r: &BootReport) -> String {
    let mut out = String::new();
    let Some(target) = r.critical_chain.first() else {
        return out;
    };
    let _ = writeln!(
        out,
        "The chain that decided when {} was reached, from systemd's After= dependencies:\n@ when the unit became active (seconds since the kernel started), + how long it took to start,\n← the process inside it that held it up (what only tracer sees).\n",
        target.unit
    );
    let mut parent_active: Option<u64> = None;
    for (depth, link) in r.critical_chain.iter().enumerate() {
        let indent = if depth == 0 {
            String::new()
        } else {
            format!("{}└─", "  ".repeat(depth - 1))
        };
        let mut line = format!("{indent}{}", link.unit);
        if let Some(a) = link.active_ns {
            line.push_str(&format!(" @{}", secs(a)));
        }
        if let Some(t) = link.took_ns {
            line.push_str(&format!(" +{}", ms_or_secs(t)));
        }
        if let (Some(p), Some(t)) = (&link.held_by, link.took_ns) {
            let end = p.end_ns.unwrap_or(p.start_ns + t);
            let held = end.min(p.start_ns + t).saturating_sub(p.start_ns);
            line.push_str(&format!(
                "  ← {}{} {}",
                p.role.as_deref().map_or(String::new(), |r| format!("{r} ")),
                p.program.as_deref().unwrap_or("?"),
                ms_or_secs(held)
            ));
        }
        // systemd keeps only a unit's latest activation: one restarted before boot
        // finished shows that, later than the unit it held up.
        if let (Some(a), Some(p)) = (link.active_ns, parent_active)
            && a > p
        {
            line.push_str("  (started again later: systemd keeps only its latest activation)");
        }
        parent_active = link.active_ns;
        let _ = writeln!(out, "{line}");
    }
    out
}

fn xml(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// An SVG plot: a row per unit, activating and active spans, process bars inside,
/// failures in red with their cause as the title.
pub fn svg(r: &BootReport) -> String {
    let t0 = r.units.iter().map(|u| u.start_ns).min().unwrap_or(0);
    let t1 = r
        .units
        .iter()
        .flat_map(|u| {
            [
                u.active_ns,
                u.processes.iter().filter_map(|p| p.end_ns).max(),
            ]
        })
        .flatten()
        .max()
        .unwrap_or(t0)
        .max(t0 + 1_000_000_000);
    let (left, row, width) = (260.0, 18.0, 1200.0);
    let px = |ns: u64| left + (ns.saturating_sub(t0) as f64 / (t1 - t0) as f64) * width;
    // The targets' names, one line each above the rows, so that close ones stay legible.
    let top = 24.0 + 14.0 * r.milestones.len() as f64;
    let height = top + 16.0 + row * r.units.len() as f64;
    let mut o = String::new();
    let _ = writeln!(
        o,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{}" height="{height}" font-family="sans-serif" font-size="11">"#,
        left + width + 20.0
    );
    let _ = writeln!(o, r#"<rect width="100%" height="100%" fill="white"/>"#);
    // A grid line every 1, 2, 5, 10, ... s: at most about 25 of them.
    let span_s = (t1 - t0) as f64 / 1e9;
    let step_s = [1u64, 2, 5, 10, 20, 30, 60, 120, 300, 600]
        .into_iter()
        .find(|&st| span_s / st as f64 <= 25.0)
        .unwrap_or(1200);
    let step = step_s * 1_000_000_000;
    let mut tick = t0.div_ceil(step) * step;
    while tick <= t1 {
        let x = px(tick);
        let _ = writeln!(
            o,
            r##"<line x1="{x:.1}" y1="20" x2="{x:.1}" y2="{height}" stroke="#ddd"/><text x="{x:.1}" y="14" text-anchor="middle">{}s</text>"##,
            tick / 1_000_000_000
        );
        tick += step;
    }
    for (i, m) in r.milestones.iter().enumerate() {
        let x = px(m.at_ns);
        let label_y = 34.0 + 14.0 * i as f64;
        let _ = writeln!(
            o,
            r##"<g class="milestone"><title>{} reached at {}</title><line x1="{x:.1}" y1="{:.1}" x2="{x:.1}" y2="{height}" stroke="#2e7d32" stroke-dasharray="4 3"/><text x="{:.1}" y="{:.1}" fill="#2e7d32">{} {}</text></g>"##,
            xml(&m.unit),
            secs(m.at_ns),
            label_y - 10.0,
            x + 3.0,
            label_y,
            xml(&m.unit),
            secs(m.at_ns)
        );
    }
    for (i, u) in r.units.iter().enumerate() {
        let y = top + row * i as f64;
        let end = u.active_ns.unwrap_or(u.start_ns);
        // Active: from then until its last process ended (or the plot's end).
        if let Some(a) = u.active_ns.filter(|_| !u.failed) {
            let until = u
                .processes
                .iter()
                .map(|p| p.end_ns.unwrap_or(t1))
                .max()
                .unwrap_or(a)
                .max(a);
            if until > a {
                let _ = writeln!(
                    o,
                    r##"<rect class="active" x="{:.1}" y="{y:.1}" width="{:.1}" height="{:.1}" fill="#e3f2fd"/>"##,
                    px(a),
                    (px(until) - px(a)).max(1.0),
                    row - 4.0
                );
            }
        }
        let title = match (&u.cause, u.took_ns) {
            (Some(c), _) => format!("{}: FAILED: {c}", u.unit),
            (None, Some(t)) => format!("{}: active after {}", u.unit, ms_or_secs(t)),
            (None, None) => u.unit.clone(),
        };
        let fill = if u.failed { "#e53935" } else { "#90caf9" };
        let _ = writeln!(
            o,
            r#"<g class="unit"><title>{}</title><text x="{:.1}" y="{:.1}" text-anchor="end">{}</text><rect x="{:.1}" y="{y:.1}" width="{:.1}" height="{:.1}" fill="{fill}"/>"#,
            xml(&title),
            left - 6.0,
            y + 11.0,
            xml(&u.unit),
            px(u.start_ns),
            (px(end) - px(u.start_ns)).max(1.0),
            row - 4.0
        );
        for p in &u.processes {
            let e = p.end_ns.unwrap_or(t1);
            let _ = writeln!(
                o,
                r##"<rect x="{:.1}" y="{:.1}" width="{:.1}" height="4" fill="#37474f"><title>{}</title></rect>"##,
                px(p.start_ns),
                y + row - 8.0,
                (px(e) - px(p.start_ns)).max(1.0),
                xml(&format!(
                    "{} {} ({})",
                    p.role.as_deref().unwrap_or("process"),
                    p.program.as_deref().unwrap_or("?"),
                    p.status.as_deref().unwrap_or("running")
                ))
            );
        }
        let _ = writeln!(o, "</g>");
    }
    let _ = writeln!(o, "</svg>");
    o
}

/// The SVG in a self-contained HTML page.
pub fn html(r: &BootReport) -> String {
    format!(
        "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>tracer boot {}</title></head><body>\n{}</body></html>\n",
        xml(&r.boot_id),
        svg(r)
    )
}

/// How a unit changed from an earlier boot.
#[derive(Clone, Debug, Serialize, PartialEq)]
#[serde(tag = "change", rename_all = "kebab-case")]
pub enum Change {
    Slower {
        unit: String,
        before_ns: u64,
        after_ns: u64,
    },
    Faster {
        unit: String,
        before_ns: u64,
        after_ns: u64,
    },
    NewFailure {
        unit: String,
        cause: Option<String>,
    },
    Fixed {
        unit: String,
    },
    Appeared {
        unit: String,
    },
    Vanished {
        unit: String,
    },
}

/// Differences from `before` to `after`: start durations that changed by more than both
/// `min_ratio` (e.g. 0.5 = 50%) and `min_ns`, failures that are new or gone, units that
/// appeared or vanished. Units found running at start are left out (their start was not
/// seen).
pub fn compare(
    before: &BootReport,
    after: &BootReport,
    min_ratio: f64,
    min_ns: u64,
) -> Vec<Change> {
    let seen = |r: &BootReport| -> std::collections::BTreeMap<String, UnitTimeline> {
        r.units
            .iter()
            .filter(|u| !u.found_at_start)
            .map(|u| (u.unit.clone(), u.clone()))
            .collect()
    };
    let (b, a) = (seen(before), seen(after));
    let mut changes = Vec::new();
    for (name, u) in &a {
        let Some(old) = b.get(name) else {
            changes.push(Change::Appeared { unit: name.clone() });
            continue;
        };
        match (old.failed, u.failed) {
            (false, true) => changes.push(Change::NewFailure {
                unit: name.clone(),
                cause: u.cause.clone(),
            }),
            (true, false) => changes.push(Change::Fixed { unit: name.clone() }),
            _ => {}
        }
        if let (Some(x), Some(y)) = (old.took_ns, u.took_ns) {
            let diff = y.abs_diff(x);
            if diff > min_ns && diff as f64 > min_ratio * x.max(1) as f64 {
                let (unit, before_ns, after_ns) = (name.clone(), x, y);
                changes.push(if y > x {
                    Change::Slower {
                        unit,
                        before_ns,
                        after_ns,
                    }
                } else {
                    Change::Faster {
                        unit,
                        before_ns,
                        after_ns,
                    }
                });
            }
        }
    }
    for name in b.keys().filter(|n| !a.contains_key(*n)) {
        changes.push(Change::Vanished { unit: name.clone() });
    }
    changes
}

/// The comparison as text.
pub fn compare_text(before: &BootReport, after: &BootReport, changes: &[Change]) -> String {
    let mut out = format!(
        "Boot {} compared with boot {}\n",
        after.boot_id, before.boot_id
    );
    if changes.is_empty() {
        out.push_str("  no unit got slower or faster beyond the threshold, no new failures\n");
    }
    for c in changes {
        let line = match c {
            Change::Slower {
                unit,
                before_ns,
                after_ns,
            } => {
                format!(
                    "  slower      {unit}: {} → {}",
                    ms_or_secs(*before_ns),
                    ms_or_secs(*after_ns)
                )
            }
            Change::Faster {
                unit,
                before_ns,
                after_ns,
            } => {
                format!(
                    "  faster      {unit}: {} → {}",
                    ms_or_secs(*before_ns),
                    ms_or_secs(*after_ns)
                )
            }
            Change::NewFailure { unit, cause } => format!(
                "  new failure {unit}: {}",
                cause.as_deref().unwrap_or("failed")
            ),
            Change::Fixed { unit } => format!("  fixed       {unit}: failed before, not now"),
            Change::Appeared { unit } => format!("  appeared    {unit}"),
            Change::Vanished { unit } => format!("  vanished    {unit}"),
        };
        out.push_str(&line);
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unit(name: &str, took_ms: u64, failed: bool) -> UnitTimeline {
        UnitTimeline {
            unit: name.into(),
            start_ns: 0,
            first_fork_ns: None,
            main_fork_ns: None,
            main_started_ns: None,
            main_exec_ns: None,
            active_ns: Some(took_ms * 1_000_000),
            active_inferred: true,
            took_ns: Some(took_ms * 1_000_000),
            slowest: None,
            failed,
            failed_ns: None,
            cause: failed.then(|| "exit 1".into()),
            found_at_start: false,
            processes: Vec::new(),
            part_of: None,
            systemd_activating_ns: None,
            systemd_main_start_ns: None,
        }
    }

    fn report(units: Vec<UnitTimeline>) -> BootReport {
        BootReport {
            boot_id: "b".into(),
            userspace_start_ns: None,
            attached_ns: None,
            last_active_ns: None,
            units,
            phases: None,
            milestones: Vec::new(),
            critical_chain: Vec::new(),
        }
    }

    #[test]
    fn compare_finds_what_changed_beyond_the_threshold() {
        let before = report(vec![
            unit("a.service", 100, false),
            unit("b.service", 2000, false),
            unit("c.service", 50, false),
            unit("gone.service", 10, false),
        ]);
        let after = report(vec![
            unit("a.service", 130, false), // +30%: within the threshold
            unit("b.service", 4500, false),
            unit("c.service", 60, true),
            unit("new.service", 10, false),
        ]);
        let changes = compare(&before, &after, 0.5, 200_000_000);
        assert_eq!(
            changes,
            vec![
                Change::Slower {
                    unit: "b.service".into(),
                    before_ns: 2_000_000_000,
                    after_ns: 4_500_000_000
                },
                Change::NewFailure {
                    unit: "c.service".into(),
                    cause: Some("exit 1".into())
                },
                Change::Appeared {
                    unit: "new.service".into()
                },
                Change::Vanished {
                    unit: "gone.service".into()
                },
            ]
        );
        assert!(compare(&before, &before, 0.5, 200_000_000).is_empty());
    }
}
