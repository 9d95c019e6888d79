//! `tracer restarts [UNIT]`: each run of each restarted unit (or of UNIT): when, how it
//! started, how it ended.

use std::io::Write;

use serde::Serialize;

use super::{ReportError, fmt::secs, term::printable};
use crate::model::{Model, Run, StartKind, UnitHistory, cause::Cause, facts::Facts};

/// A unit's runs, as the JSON report gives them.
#[derive(Serialize)]
struct UnitRuns<'a> {
    unit: std::borrow::Cow<'a, str>,
    restarts: usize,
    crash_loop: bool,
    runs: Vec<RunRow<'a>>,
}

#[derive(Serialize)]
struct RunRow<'a> {
    run: usize,
    start: &'a StartKind,
    started_ns: u64,
    ended_ns: Option<u64>,
    main_pid: Option<u32>,
    /// The main process's wait status, raw ...
    status: Option<u32>,
    /// ... and in words.
    outcome: Option<String>,
    failed: bool,
    cause: Option<&'a Cause>,
}

impl<'a> UnitRuns<'a> {
    fn of(h: &'a UnitHistory) -> Self {
        let run = |r: &'a Run| RunRow {
            run: r.number,
            start: &r.start,
            started_ns: r.started_ns,
            ended_ns: r.ended_ns,
            main_pid: r.main_pid,
            status: r.outcome.as_ref().map(|o| o.status.0),
            outcome: r.outcome.as_ref().map(|o| o.status.to_string()),
            failed: r.failed(),
            cause: r.outcome.as_ref().and_then(|o| o.cause.as_ref()),
        };
        Self {
            unit: h.unit.key(),
            restarts: h.restarts(),
            crash_loop: h.crash_loop,
            runs: h.runs.iter().map(run).collect(),
        }
    }
}

fn start_text(s: &StartKind) -> String {
    match s {
        StartKind::First => "first".into(),
        StartKind::AutomaticRestart => "auto-restart".into(),
        StartKind::Manual { by_pid, command } | StartKind::ManualStart { by_pid, command } => {
            format!("{command} ({by_pid})")
        }
        StartKind::Again => "started again".into(),
        StartKind::FoundAtStart => "found running".into(),
    }
}

/// The units the report is of: UNIT, or every unit that ran more than once.
pub fn build<'a, F: Facts>(
    model: &'a Model<F>,
    unit: Option<&str>,
) -> Result<Vec<&'a UnitHistory>, ReportError> {
    Ok(match unit {
        Some(u) => vec![
            model
                .unit(u)
                .ok_or_else(|| ReportError::NoRuns { unit: u.to_owned() })?,
        ],
        None => model.units().filter(|h| h.runs.len() > 1).collect(),
    })
}

/// The `tracer restarts` report, as JSON or as a table of runs.
pub fn write(out: &mut impl Write, units: &[&UnitHistory], json: bool) -> Result<(), ReportError> {
    if json {
        let v = serde_json::to_value(units.iter().map(|h| UnitRuns::of(h)).collect::<Vec<_>>())?;
        writeln!(out, "{}", serde_json::to_string_pretty(&v)?)?;
        return Ok(());
    }
    writeln!(
        out,
        "{:<32} {:>3} {:>10} {:>10} {:>9} {:<24} {:<24} CAUSE",
        "UNIT", "RUN", "START", "END", "DURATION", "HOW", "OUTCOME"
    )?;
    for h in units {
        for r in &h.runs {
            let end = r.ended_ns.map_or_else(|| "-".to_owned(), secs);
            let dur = r
                .ended_ns
                .map_or_else(|| "-".to_owned(), |e| secs(e.saturating_sub(r.started_ns)));
            let outcome = r.outcome.as_ref().map_or_else(
                || {
                    if r.is_open() {
                        "running".into()
                    } else {
                        "-".into()
                    }
                },
                |o| o.status.to_string(),
            );
            let cause = r
                .outcome
                .as_ref()
                .and_then(|o| o.cause.as_ref())
                .map_or_else(|| "-".to_owned(), |c| printable(&c.summary()).into_owned());
            writeln!(
                out,
                "{:<32} {:>3} {:>10} {:>10} {:>9} {:<24} {:<24} {cause}",
                printable(&h.unit.display_name()),
                r.number,
                secs(r.started_ns),
                end,
                dur,
                printable(&start_text(&r.start)),
                outcome
            )?;
        }
    }
    Ok(())
}
