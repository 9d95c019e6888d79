//! The boot report and its critical chain as text.

use std::fmt::Write as _;

use crate::report::term::printable;

use super::{BootReport, Milestone, Phases, UnitTimeline};
use crate::report::fmt::{min_secs, ms_or_secs, secs};

fn base(p: &str) -> &str {
    p.rsplit('/').next().unwrap_or(p)
}

/// The text report: a summary of the boot, then a row per unit (slowest first for
/// `blame`).
pub fn text(r: &BootReport, blame: bool) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "Boot {}", r.boot_id);
    summary(&mut out, r);
    table(&mut out, r, blame);
    out
}

/// How long the boot took (systemd's phases, else what the events tell), when tracer
/// attached, how many units there were and how many failed.
fn summary(out: &mut String, r: &BootReport) {
    if let Some(p) = &r.phases {
        phases(out, p);
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
}

/// systemd's phases, as systemd-analyze time prints them.
fn phases(out: &mut String, p: &Phases) {
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
}

/// The table of units: in boot order with each one's processes under it and the
/// targets reached between them, or for `blame` the units alone, slowest first.
fn table(out: &mut String, r: &BootReport, blame: bool) {
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
            milestone_row(out, m);
        }
        unit_row(out, u);
        if !blame {
            process_rows(out, u);
        }
    }
    for m in milestones.filter(|_| !blame) {
        milestone_row(out, m);
    }
}

/// A target reached.
fn milestone_row(out: &mut String, m: &Milestone) {
    let _ = writeln!(
        out,
        "{:>9} {:>10} {:>8}  ── {} reached",
        "",
        secs(m.at_ns),
        "",
        printable(&m.unit)
    );
}

/// A unit: when it started, became active and how long that took, and a note.
fn unit_row(out: &mut String, u: &UnitTimeline) {
    let active = match (u.active_ns, u.found_at_start) {
        (_, true) => "before".to_owned(),
        (Some(a), false) if u.active_inferred => format!("~{}", secs(a)),
        (Some(a), false) => secs(a),
        (None, false) => "-".to_owned(),
    };
    let took = u.took_ns.map_or("-".to_owned(), ms_or_secs);
    let _ = writeln!(
        out,
        "{:>9} {:>10} {:>8}  {}{}",
        secs(u.start_ns),
        active,
        took,
        printable(&u.unit),
        printable(&note(u))
    );
}

/// What a unit's row adds after its name: found at start, the target that pulled it in,
/// why it failed or else the process that held its start up (when that was most of a
/// start of at least 100ms).
fn note(u: &UnitTimeline) -> String {
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
    note
}

/// The processes a unit ran, under its row: when each started, how long it ran, what
/// it was and how it ended.
fn process_rows(out: &mut String, u: &UnitTimeline) {
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
            printable(p.program.as_deref().unwrap_or("(never executed)")),
            p.status
                .as_deref()
                .map_or(String::new(), |st| format!("  {st}"))
        );
    }
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
        printable(&target.unit)
    );
    let mut parent_active: Option<u64> = None;
    for (depth, link) in r.critical_chain.iter().enumerate() {
        let indent = if depth == 0 {
            String::new()
        } else {
            format!("{}└─", "  ".repeat(depth - 1))
        };
        let mut line = format!("{indent}{}", printable(&link.unit));
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
                printable(p.program.as_deref().unwrap_or("?")),
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
