//! Recorded event streams: the JSON lines `tracer events --json` writes, read back into
//! [`Event`]s so the model can be run on a recording (fixtures, a VM's capture, a file
//! kept by the early-boot service). A line that does not parse is reported with its
//! number and skipped; the rest is still read.

use std::{
    io::{self, BufRead},
    path::Path,
};

use serde::Deserialize;

use crate::event::{CgroupRef, Errno, Event, EventKind, Signal, WaitStatus};

/// Why a line is not an event.
#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    #[error("line {line}: not a tracer event: {source}")]
    Json {
        line: usize,
        #[source]
        source: serde_json::Error,
    },
    #[error("line {line}: a {kind} event without {field}")]
    Missing {
        line: usize,
        kind: String,
        field: &'static str,
    },
    #[error("line {line}: unknown event kind {kind:?}")]
    UnknownKind { line: usize, kind: String },
}

/// Every field any kind of JSON line carries; which are present depends on `kind`.
#[derive(Deserialize)]
struct Line {
    ts_ns: u64,
    pid: u32,
    tgid: u32,
    cgroup_id: u64,
    comm: String,
    kind: String,
    ppid: Option<u32>,
    uid: Option<u32>,
    filename: Option<String>,
    argv: Option<Vec<String>>,
    #[serde(default)]
    filename_truncated: bool,
    #[serde(default)]
    argv_truncated: bool,
    errno: Option<i32>,
    status: Option<u32>,
    child_pid: Option<u32>,
    cgroup_target_id: Option<u64>,
    level: Option<u16>,
    cgroup_target: Option<String>,
    #[serde(default)]
    path_truncated: bool,
    target_pid: Option<u32>,
    signal: Option<i32>,
    code: Option<i32>,
    result: Option<i32>,
    victim_pid: Option<u32>,
}

/// Parses one JSON line; `line` numbers the errors.
pub fn parse_line(text: &str, line: usize) -> Result<Event, ReplayError> {
    let l: Line =
        serde_json::from_str(text).map_err(|source| ReplayError::Json { line, source })?;
    let missing = |field| ReplayError::Missing {
        line,
        kind: l.kind.clone(),
        field,
    };
    let cgroup = || -> Result<CgroupRef, ReplayError> {
        Ok(CgroupRef {
            id: l
                .cgroup_target_id
                .ok_or_else(|| missing("cgroup_target_id"))?,
            level: l.level.unwrap_or(0),
            path: l
                .cgroup_target
                .clone()
                .ok_or_else(|| missing("cgroup_target"))?,
            path_truncated: l.path_truncated,
        })
    };
    let kind = match l.kind.as_str() {
        "exec" => EventKind::Exec {
            ppid: l.ppid.ok_or_else(|| missing("ppid"))?,
            uid: l.uid.unwrap_or(0),
            filename: l.filename.clone().ok_or_else(|| missing("filename"))?,
            argv: l.argv.clone().unwrap_or_default(),
            filename_truncated: l.filename_truncated,
            argv_truncated: l.argv_truncated,
        },
        "exec-failed" => EventKind::ExecFailed {
            ppid: l.ppid.ok_or_else(|| missing("ppid"))?,
            uid: l.uid.unwrap_or(0),
            errno: Errno(l.errno.ok_or_else(|| missing("errno"))?),
            filename: l.filename.clone().ok_or_else(|| missing("filename"))?,
            filename_truncated: l.filename_truncated,
        },
        "exit" => EventKind::Exit {
            ppid: l.ppid.ok_or_else(|| missing("ppid"))?,
            status: WaitStatus(l.status.ok_or_else(|| missing("status"))?),
        },
        "fork" => EventKind::Fork {
            child_pid: l.child_pid.ok_or_else(|| missing("child_pid"))?,
        },
        "cgroup-mkdir" => EventKind::CgroupMkdir { cgroup: cgroup()? },
        "cgroup-rmdir" => EventKind::CgroupRmdir { cgroup: cgroup()? },
        "cgroup-attach" => EventKind::CgroupAttach {
            cgroup: cgroup()?,
            target_pid: l.target_pid.ok_or_else(|| missing("target_pid"))?,
        },
        "signal" => EventKind::Signal {
            target_pid: l.target_pid.ok_or_else(|| missing("target_pid"))?,
            signal: Signal(l.signal.ok_or_else(|| missing("signal"))?),
            code: l.code.unwrap_or(0),
            result: l.result.unwrap_or(0),
        },
        "oom-kill" => EventKind::OomKill {
            victim_pid: l.victim_pid.ok_or_else(|| missing("victim_pid"))?,
        },
        other => {
            return Err(ReplayError::UnknownKind {
                line,
                kind: other.to_owned(),
            });
        }
    };
    Ok(Event {
        ts_ns: l.ts_ns,
        pid: l.pid,
        tgid: l.tgid,
        cgroup_id: l.cgroup_id,
        comm: l.comm,
        kind,
    })
}

/// Reads a recording; bad lines are logged and counted, never fatal.
pub fn read(reader: impl BufRead) -> io::Result<(Vec<Event>, Vec<ReplayError>)> {
    let mut events = Vec::new();
    let mut errors = Vec::new();
    for (i, line) in reader.lines().enumerate() {
        let line = line?;
        if line.trim().is_empty() {
            continue;
        }
        match parse_line(&line, i + 1) {
            Ok(ev) => events.push(ev),
            Err(e) => {
                tracing::warn!("skipped: {e}");
                errors.push(e);
            }
        }
    }
    Ok((events, errors))
}

/// Reads a recording from a file.
pub fn read_file(path: &Path) -> io::Result<(Vec<Event>, Vec<ReplayError>)> {
    let file = std::fs::File::open(path)?;
    read(io::BufReader::new(file))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        clock::BootClock,
        event::{CgroupRef, Errno, Signal, WaitStatus},
        report::events::write_json,
    };

    fn all_kinds() -> Vec<Event> {
        let base = Event {
            ts_ns: 77,
            pid: 5,
            tgid: 5,
            cgroup_id: 9,
            comm: "(true)".into(),
            kind: EventKind::Fork { child_pid: 6 },
        };
        let cg = CgroupRef {
            id: 10,
            level: 2,
            path: "/system.slice/a.service".into(),
            path_truncated: false,
        };
        [
            EventKind::Fork { child_pid: 6 },
            EventKind::Exec {
                ppid: 1,
                uid: 0,
                filename: "/bin/true".into(),
                argv: vec!["/bin/true".into(), "x y".into()],
                filename_truncated: false,
                argv_truncated: true,
            },
            EventKind::ExecFailed {
                ppid: 1,
                uid: 0,
                errno: Errno(13),
                filename: "/a.sh".into(),
                filename_truncated: false,
            },
            EventKind::Exit {
                ppid: 1,
                status: WaitStatus(203 << 8),
            },
            EventKind::CgroupMkdir { cgroup: cg.clone() },
            EventKind::CgroupRmdir { cgroup: cg.clone() },
            EventKind::CgroupAttach {
                cgroup: cg,
                target_pid: 6,
            },
            EventKind::Signal {
                target_pid: 6,
                signal: Signal(15),
                code: 0,
                result: 0,
            },
            EventKind::OomKill { victim_pid: 6 },
        ]
        .into_iter()
        .map(|kind| Event {
            kind,
            ..base.clone()
        })
        .collect()
    }

    #[test]
    fn json_lines_read_back_into_the_same_events() {
        let clock = BootClock::new();
        let mut out = Vec::new();
        for ev in all_kinds() {
            write_json(&mut out, &ev, &clock, Some("/x")).unwrap();
        }
        let (events, errors) = read(&out[..]).unwrap();
        assert!(errors.is_empty(), "{errors:?}");
        assert_eq!(events, all_kinds());
    }

    #[test]
    fn bad_lines_are_reported_and_skipped() {
        let text = "{\"ts_ns\":1,\"pid\":2,\"tgid\":2,\"cgroup_id\":3,\"comm\":\"a\",\"kind\":\"fork\",\"child_pid\":4}\n\
                    not json\n\
                    {\"ts_ns\":1,\"pid\":2,\"tgid\":2,\"cgroup_id\":3,\"comm\":\"a\",\"kind\":\"exit\"}\n\
                    {\"ts_ns\":1,\"pid\":2,\"tgid\":2,\"cgroup_id\":3,\"comm\":\"a\",\"kind\":\"teleport\"}\n\
                    \n\
                    {\"ts_ns\":5,\"pid\":2,\"tgid\":2,\"cgroup_id\":3,\"comm\":\"a\",\"kind\":\"fork\",\"child_pid\":8}\n";
        let (events, errors) = read(text.as_bytes()).unwrap();
        assert_eq!(events.len(), 2);
        assert_eq!(errors.len(), 3);
        assert!(matches!(errors[0], ReplayError::Json { line: 2, .. }));
        assert!(matches!(
            errors[1],
            ReplayError::Missing {
                line: 3,
                field: "ppid",
                ..
            }
        ));
        assert!(matches!(
            errors[2],
            ReplayError::UnknownKind { line: 4, .. }
        ));
    }
}
