//! Reports read from the model (live, from the daemon's, or from a replayed recording):
//! each builds its data first, then renders it as text or JSON. The daemon answers its
//! socket's queries through [`answer`]; the command line renders the same reports of a
//! model of its own.

pub mod boot;
pub mod events;
mod fmt;
pub mod restarts;
pub mod term;
pub mod units;
pub mod verdict;
pub mod why;

use std::io::Write;

use crate::{
    model::{Model, facts::Facts},
    protocol::{Query, Reply},
    systemd::Snapshot,
};

/// Why a report could not be made.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    #[error(
        "{unit}: no such unit: systemd has no unit file for it (is it in /etc/systemd/system, and did you run systemctl daemon-reload?){}",
        did_you_mean(closest)
    )]
    NoUnitFile {
        unit: String,
        closest: Option<String>,
    },
    #[error(
        "{unit}: masked: its unit file is a link to /dev/null, so systemd starts it for no one (`systemctl unmask {unit}` undoes it)"
    )]
    Masked { unit: String },
    #[error(
        "{unit}: systemd could not load it (LoadState={state}): its unit file has an error; `systemctl status {unit}` says which line, `systemd-analyze verify` checks the file"
    )]
    NotLoaded { unit: String, state: String },
    #[error(
        "{unit}: no process ran in it {origin}; systemd says {active} ({sub}), unit file {file}"
    )]
    NeverRan {
        unit: String,
        origin: Source,
        active: String,
        sub: String,
        file: String,
    },
    #[error(
        "no events for {unit} {origin}: was it started while tracer watched?{}",
        did_you_mean(closest)
    )]
    NoEvents {
        unit: String,
        origin: Source,
        closest: Option<String>,
    },
    #[error("no events for {unit}")]
    NoRuns { unit: String },
    #[error(transparent)]
    Io(#[from] std::io::Error),
    #[error(transparent)]
    Json(#[from] serde_json::Error),
}

/// The nearest name, as a question.
fn did_you_mean(closest: &Option<String>) -> String {
    closest
        .as_ref()
        .map_or_else(String::new, |c| format!("; did you mean {c}?"))
}

/// Where the model's events came from, as the reports say it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Source {
    /// The daemon's own model.
    Daemon,
    /// A recording replayed.
    Recording,
    /// Traced live by the command itself.
    Tracing,
}

impl std::fmt::Display for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Daemon => "since the daemon started",
            Self::Recording => "in the recording",
            Self::Tracing => "while tracing",
        })
    }
}

/// Writes the report a query asks for; `sd` is what systemd said when it was asked (for
/// `units`, every unit; for `why`, the unit).
pub fn render<F: Facts>(
    out: &mut impl Write,
    query: &Query,
    model: &Model<F>,
    origin: Source,
    sd: Option<&Snapshot>,
) -> Result<(), ReportError> {
    match query {
        Query::Units { json, select } => {
            let r = units::build(model, select, sd);
            if *json {
                units::json(out, &r)
            } else {
                units::text(out, &r)
            }
        }
        Query::Why { unit, json } => {
            let w = why::build(model, unit, origin, sd)?;
            if *json {
                why::json(out, &w)
            } else {
                why::text(out, &w)
            }
        }
        Query::Restarts { unit, json } => {
            restarts::write(out, &restarts::build(model, unit.as_deref())?, *json)
        }
    }
}

/// The daemon's reply to a query, from its model.
pub fn answer<F: Facts>(query: &Query, model: &Model<F>, sd: Option<&Snapshot>) -> Reply {
    let mut out = Vec::new();
    match render(&mut out, query, model, Source::Daemon, sd) {
        Ok(()) => Reply::Output(String::from_utf8_lossy(&out).into_owned()),
        Err(e) => Reply::Error(e.to_string()),
    }
}
