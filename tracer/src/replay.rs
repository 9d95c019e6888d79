//! Recorded event streams: the JSON lines `tracer events --json` writes, read back into
//! [`Event`]s so the model can be run on a recording (fixtures, a VM's capture, a file
//! kept by the early-boot service). A line that does not parse is reported with its
//! number and skipped; the rest is still read.

use std::{
    io::{self, BufRead},
    path::Path,
};

use serde::Deserialize;

use crate::event::{
    AccessSyscall, CgroupRef, Errno, Event, EventKind, FileSeen, Kind, Signal, WaitStatus,
};

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

/// What every line carries, whatever its kind (`Event`'s own fields). The kind's fields are
/// read in a second pass over the line, into the kind's [`body`] struct: that way the keys
/// may come in any order (`kind` after the kind's own) without buffering any values.
#[derive(Deserialize)]
struct Head {
    ts_ns: u64,
    pid: u32,
    tgid: u32,
    cgroup_id: u64,
    comm: String,
    kind: String,
}

/// The fields each kind's line carries, as event.rs serializes its [`EventKind`] variant:
/// flattened parts inline, renamed fields under their JSON names. A field without which
/// there is no event is an `Option`, so that a line without it is a
/// [`ReplayError::Missing`] naming it; the others have defaults (a recording may leave
/// them out). Fields a writer adds for people (`time`, `cgroup`, `error_text`,
/// `signal_name`, ...) are not read back.
mod body {
    use serde::Deserialize;

    #[derive(Deserialize)]
    pub(super) struct Exec {
        pub ppid: Option<u32>,
        pub uid: Option<u32>,
        pub filename: Option<String>,
        pub argv: Option<Vec<String>>,
        #[serde(default)]
        pub filename_truncated: bool,
        #[serde(default)]
        pub argv_truncated: bool,
    }

    #[derive(Deserialize)]
    pub(super) struct ExecFailed {
        pub ppid: Option<u32>,
        pub uid: Option<u32>,
        /// [`crate::event::Errno`]: `errno` (and `error`, `error_text`, derived from it).
        pub errno: Option<i32>,
        pub filename: Option<String>,
        #[serde(default)]
        pub filename_truncated: bool,
    }

    #[derive(Deserialize)]
    pub(super) struct Exit {
        pub ppid: Option<u32>,
        /// [`crate::event::WaitStatus`]: `status` (and the fields derived from it).
        pub status: Option<u32>,
        /// Absent (or null) in recordings made before exits carried it.
        #[serde(default)]
        pub age_ns: Option<u64>,
    }

    #[derive(Deserialize)]
    pub(super) struct Fork {
        pub child_pid: Option<u32>,
    }

    /// [`crate::event::CgroupRef`], and for `cgroup-attach` the task moved.
    #[derive(Deserialize)]
    pub(super) struct Cgroup {
        pub cgroup_target_id: Option<u64>,
        pub level: Option<u16>,
        pub cgroup_target: Option<String>,
        #[serde(default)]
        pub path_truncated: bool,
        pub target_pid: Option<u32>,
    }

    #[derive(Deserialize)]
    pub(super) struct Signal {
        pub target_pid: Option<u32>,
        /// [`crate::event::Signal`]: `signal` (and `signal_name`).
        pub signal: Option<i32>,
        pub code: Option<i32>,
        pub result: Option<i32>,
    }

    #[derive(Deserialize)]
    pub(super) struct OomKill {
        pub victim_pid: Option<u32>,
    }

    #[derive(Deserialize)]
    pub(super) struct AccessFailed {
        pub ppid: Option<u32>,
        pub uid: Option<u32>,
        pub gid: Option<u32>,
        pub errno: Option<i32>,
        pub syscall: Option<String>,
        #[serde(default)]
        pub path: String,
        #[serde(default)]
        pub path_truncated: bool,
        pub fd: Option<i32>,
        pub access_mode: Option<u32>,
        #[serde(default)]
        pub at_flags: u32,
        /// [`crate::event::FileSeen`], present together or not at all.
        pub file_mode: Option<u32>,
        #[serde(default)]
        pub file_uid: u32,
        #[serde(default)]
        pub file_gid: u32,
        #[serde(default)]
        pub noexec: bool,
        #[serde(default)]
        pub file_name: String,
    }
}

/// Parses one JSON line; `line` numbers the errors.
pub fn parse_line(text: &str, line: usize) -> Result<Event, ReplayError> {
    let json = |source| ReplayError::Json { line, source };
    let head: Head = serde_json::from_str(text).map_err(json)?;
    let Some(kind) = Kind::from_name(&head.kind) else {
        return Err(ReplayError::UnknownKind {
            line,
            kind: head.kind,
        });
    };
    let missing = |field| ReplayError::Missing {
        line,
        kind: head.kind.clone(),
        field,
    };
    // `req!(b.field)`: the field's value, or the error that the line lacks it (by the name
    // it has in the line, which is the body struct's field name).
    macro_rules! req {
        ($b:ident . $field:ident) => {
            $b.$field.ok_or_else(|| missing(stringify!($field)))?
        };
    }
    let kind = match kind {
        Kind::Exec => {
            let b: body::Exec = serde_json::from_str(text).map_err(json)?;
            EventKind::Exec {
                ppid: req!(b.ppid),
                uid: b.uid.unwrap_or(0),
                filename: req!(b.filename),
                argv: b.argv.unwrap_or_default(),
                filename_truncated: b.filename_truncated,
                argv_truncated: b.argv_truncated,
            }
        }
        Kind::ExecFailed => {
            let b: body::ExecFailed = serde_json::from_str(text).map_err(json)?;
            EventKind::ExecFailed {
                ppid: req!(b.ppid),
                uid: b.uid.unwrap_or(0),
                errno: Errno(req!(b.errno)),
                filename: req!(b.filename),
                filename_truncated: b.filename_truncated,
            }
        }
        Kind::Exit => {
            let b: body::Exit = serde_json::from_str(text).map_err(json)?;
            EventKind::Exit {
                ppid: req!(b.ppid),
                status: WaitStatus(req!(b.status)),
                age_ns: b.age_ns,
            }
        }
        Kind::Fork => {
            let b: body::Fork = serde_json::from_str(text).map_err(json)?;
            EventKind::Fork {
                child_pid: req!(b.child_pid),
            }
        }
        Kind::CgroupMkdir | Kind::CgroupRmdir | Kind::CgroupAttach => {
            let b: body::Cgroup = serde_json::from_str(text).map_err(json)?;
            let cgroup = CgroupRef {
                id: req!(b.cgroup_target_id),
                level: b.level.unwrap_or(0),
                path: req!(b.cgroup_target),
                path_truncated: b.path_truncated,
            };
            match kind {
                Kind::CgroupMkdir => EventKind::CgroupMkdir { cgroup },
                Kind::CgroupRmdir => EventKind::CgroupRmdir { cgroup },
                _ => EventKind::CgroupAttach {
                    cgroup,
                    target_pid: req!(b.target_pid),
                },
            }
        }
        Kind::Signal => {
            let b: body::Signal = serde_json::from_str(text).map_err(json)?;
            EventKind::Signal {
                target_pid: req!(b.target_pid),
                signal: Signal(req!(b.signal)),
                code: b.code.unwrap_or(0),
                result: b.result.unwrap_or(0),
            }
        }
        Kind::OomKill => {
            let b: body::OomKill = serde_json::from_str(text).map_err(json)?;
            EventKind::OomKill {
                victim_pid: req!(b.victim_pid),
            }
        }
        Kind::AccessFailed => {
            let b: body::AccessFailed = serde_json::from_str(text).map_err(json)?;
            EventKind::AccessFailed {
                ppid: req!(b.ppid),
                uid: b.uid.unwrap_or(0),
                gid: b.gid.unwrap_or(0),
                errno: Errno(req!(b.errno)),
                syscall: match req!(b.syscall).as_str() {
                    "access" => AccessSyscall::Access,
                    "faccessat" => AccessSyscall::Faccessat,
                    _ => AccessSyscall::Faccessat2,
                },
                path: b.path,
                path_truncated: b.path_truncated,
                fd: b.fd,
                access_mode: req!(b.access_mode),
                at_flags: b.at_flags,
                file: b.file_mode.map(|file_mode| FileSeen {
                    file_mode,
                    file_uid: b.file_uid,
                    file_gid: b.file_gid,
                    noexec: b.noexec,
                    file_name: b.file_name,
                }),
            }
        }
    };
    Ok(Event {
        ts_ns: head.ts_ns,
        pid: head.pid,
        tgid: head.tgid,
        cgroup_id: head.cgroup_id,
        comm: head.comm,
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
    use proptest::prelude::*;

    use super::*;
    use crate::{
        clock::BootClock,
        decode::arb,
        event::{CgroupRef, Errno, Signal, WaitStatus},
        report::events::write_json,
        sink::stream::json::write_line,
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
                age_ns: None,
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

    #[test]
    fn a_line_without_a_field_names_it() {
        let head = ["ts_ns", "pid", "tgid", "cgroup_id", "comm", "kind"];
        for ev in all_kinds() {
            let v = serde_json::to_value(&ev).unwrap();
            for key in v.as_object().unwrap().keys() {
                let mut m = v.clone();
                m.as_object_mut().unwrap().remove(key);
                match parse_line(&m.to_string(), 1) {
                    // A field with a default, or one derived from another.
                    Ok(_) => {}
                    Err(ReplayError::Missing { field, kind, .. }) => {
                        assert_eq!(field, key);
                        assert_eq!(kind, ev.kind_name());
                    }
                    Err(ReplayError::Json { .. }) => assert!(head.contains(&key.as_str()), "{key}"),
                    Err(e) => panic!("{key}: {e}"),
                }
            }
        }
    }

    proptest! {
        /// The daemon's stream lines read back into the events written.
        #[test]
        fn stream_lines_read_back(ev in arb::event(any::<String>().boxed()), cgroup in proptest::option::of(any::<String>())) {
            let mut out = Vec::new();
            write_line(&mut out, &ev, &BootClock::new(), cgroup.as_deref());
            let text = std::str::from_utf8(&out).unwrap();
            prop_assert_eq!(parse_line(text.trim_end_matches('\n'), 1).unwrap(), ev);
        }

        /// What event.rs serializes reads back into the event, with its keys in any order
        /// (a `serde_json::Value` writes them sorted, `kind` after some of the kind's own).
        #[test]
        fn serde_lines_read_back(ev in arb::event(any::<String>().boxed())) {
            let text = serde_json::to_string(&ev).unwrap();
            prop_assert_eq!(parse_line(&text, 1).unwrap(), ev.clone());
            let sorted = serde_json::to_value(&ev).unwrap().to_string();
            prop_assert_eq!(parse_line(&sorted, 1).unwrap(), ev);
        }
    }
}
