//! What changed from one boot to another, and that as text.

use crate::report::term::printable;
use serde::Serialize;

use super::{BootReport, UnitTimeline};
use crate::report::fmt::ms_or_secs;

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
        // (One line per change, whatever the names hold.)
        out.push_str(&printable(&line));
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
