//! `tracer units`: each unit seen, its runs, restarts, state and last cause, with
//! systemd's own state beside it when systemd could be asked.

use std::io::Write;

use serde::Serialize;

use super::{ReportError, term::printable};
use crate::{
    model::{Model, UnitHistory, UnitState, cause::Cause, facts::Facts},
    protocol::UnitSelect,
    systemd::{Snapshot, SystemdUnit},
    unit::UnitKind,
};

/// One unit's line of the report.
#[derive(Serialize)]
pub struct UnitRow<'a> {
    pub unit: std::borrow::Cow<'a, str>,
    #[serde(skip)]
    pub display_name: String,
    pub kind: UnitKind,
    pub user: Option<u32>,
    pub runs: usize,
    pub restarts: usize,
    pub state: UnitState,
    pub crash_loop: bool,
    /// How the latest run that ended, ended.
    pub last_exit: Option<String>,
    /// The cause of the latest failed run.
    pub last_cause: Option<&'a Cause>,
    /// What systemd says of the unit (None: not asked, or it does not know the unit).
    pub systemd: Option<&'a SystemdUnit>,
}

/// The report: its rows, and whether systemd was asked at all.
pub struct UnitsReport<'a> {
    pub rows: Vec<UnitRow<'a>>,
    pub systemd_asked: bool,
}

impl UnitSelect {
    fn matches(&self, h: &UnitHistory) -> bool {
        (self.types.is_empty() || self.types.iter().any(|t| t == h.unit.kind.name()))
            && (self.states.is_empty() || self.states.iter().any(|s| s == h.state().name()))
    }
}

/// The units of a model that `select` picks, with systemd's facts where given.
pub fn build<'a, F: Facts>(
    model: &'a Model<F>,
    select: &UnitSelect,
    sd: Option<&'a Snapshot>,
) -> UnitsReport<'a> {
    let rows = model
        .units()
        .filter(|h| select.matches(h))
        .map(|h| UnitRow {
            unit: h.unit.key(),
            display_name: h.unit.display_name(),
            kind: h.unit.kind,
            user: h.unit.user,
            runs: h.runs.len(),
            restarts: h.restarts(),
            state: h.state(),
            crash_loop: h.crash_loop,
            last_exit: h
                .runs
                .iter()
                .rev()
                .find_map(|r| r.outcome.as_ref())
                .map(|o| o.status.to_string()),
            last_cause: h
                .last_failure()
                .and_then(|r| r.outcome.as_ref())
                .and_then(|o| o.cause.as_ref()),
            systemd: sd.and_then(|s| s.unit_of(&h.unit)),
        })
        .collect();
    UnitsReport {
        rows,
        systemd_asked: sd.is_some(),
    }
}

/// As JSON: an array of the rows, each object's keys (and those of the objects in it) in
/// alphabetical order.
pub fn json(out: &mut impl Write, r: &UnitsReport) -> Result<(), ReportError> {
    let rows = serde_json::to_value(&r.rows)?;
    writeln!(out, "{}", serde_json::to_string_pretty(&rows)?)?;
    Ok(())
}

/// As columns, systemd's state and unit-file state among them when it was asked.
pub fn text(out: &mut impl Write, r: &UnitsReport) -> Result<(), ReportError> {
    writeln!(
        out,
        "{:<40} {:>4} {:>8} {:<9}{} {:<28} CAUSE",
        "UNIT",
        "RUNS",
        "RESTARTS",
        "STATE",
        if r.systemd_asked {
            format!(" {:<18} {:<9}", "SYSTEMD", "FILE")
        } else {
            String::new()
        },
        "LAST EXIT"
    )?;
    for row in &r.rows {
        let mut cause = row
            .last_cause
            .map_or_else(|| "-".to_owned(), |c| printable(&c.summary()).into_owned());
        if row.crash_loop {
            cause.push_str(" [crash loop]");
        }
        let systemd = match (r.systemd_asked, row.systemd) {
            (false, _) => String::new(),
            (true, None) => format!(" {:<18} {:<9}", "-", "-"),
            (true, Some(u)) => format!(
                " {:<18} {:<9}",
                printable(&format!("{}/{}", u.active_state, u.sub_state)),
                if u.unit_file_state.is_empty() {
                    "-"
                } else {
                    &u.unit_file_state
                }
            ),
        };
        writeln!(
            out,
            "{:<40} {:>4} {:>8} {:<9}{systemd} {:<28} {cause}",
            printable(&row.display_name),
            row.runs,
            row.restarts,
            row.state,
            row.last_exit.as_deref().unwrap_or("-"),
        )?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        event::{CgroupRef, Event, EventKind},
        model::{ModelConfig, facts::RecordedFacts},
        testing::Fed,
    };

    /// A unit named (systemd escapes it so) with an ESC sequence, made by anyone with a
    /// delegated cgroup: its name reaches the terminal escaped.
    #[test]
    fn a_unit_name_cannot_drive_the_terminal() {
        let mut m = Fed::new(Model::new(RecordedFacts::default(), ModelConfig::default()));
        let path = r"/user.slice/user-1000.slice/user@1000.service/app.slice/a\x1b]0;owned\x07\x0aforged.service";
        m.apply(&Event {
            ts_ns: 1,
            pid: 1,
            tgid: 1,
            cgroup_id: 1,
            comm: "systemd".into(),
            kind: EventKind::CgroupMkdir {
                cgroup: CgroupRef {
                    id: 70,
                    level: 6,
                    path: path.into(),
                    path_truncated: false,
                },
            },
        });
        let mut out = Vec::new();
        text(&mut out, &build(&m.model, &UnitSelect::default(), None)).unwrap();
        let out = String::from_utf8(out).unwrap();
        assert!(!out.contains('\x1b') && !out.contains('\x07'), "{out:?}");
        assert_eq!(out.lines().count(), 2, "the header and one row: {out}");
        assert!(
            out.contains(r"a\x1b]0;owned\x07\x0aforged.service"),
            "{out}"
        );
    }
}
