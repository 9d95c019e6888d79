//! Ring-buffer record bytes → [`Event`]: a pure function that never panics, whatever the
//! bytes. [`encode`] is its inverse (fixtures, replay, round-trip tests). Both read and
//! write the record structs of `tracer_common` as bytes ([`Plain`]), the structs the kernel
//! programs write: there are no offsets here to drift from theirs.

use tracer_common::{
    ACCESS_FILE_NOEXEC, ACCESS_FILE_SEEN, ACCESS_SYSCALL_ACCESS, ACCESS_SYSCALL_FACCESSAT,
    ACCESS_SYSCALL_FACCESSAT2, AccessFixed, COMM_LEN, CgroupFixed, ExecFixed, ExitFixed, ExitStart,
    FLAG_ARGV_TRUNCATED, FLAG_PATH_TRUNCATED, ForkFixed, HEADER_SIZE, Header, OomFixed, Plain,
    RecordKind, SignalFixed,
};

use crate::event::{
    AccessSyscall, CgroupRef, Errno, Event, EventKind, FileSeen, Signal, WaitStatus,
};

/// Why a record could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("record of {len} bytes is too short: a {what} needs {need}")]
    NotEnoughBytes {
        what: &'static str,
        len: usize,
        need: usize,
    },
    #[error("unknown record kind {0} (is the eBPF object newer than this decoder?)")]
    UnknownKind(u32),
    #[error("{kind:?} record declares {declared} bytes of strings but carries {present}")]
    SizeMismatch {
        kind: RecordKind,
        declared: usize,
        present: usize,
    },
}

/// The struct `T` at byte `at` of the record, and the bytes after it.
fn fixed<'a, T: Plain>(
    buf: &'a [u8],
    at: usize,
    what: &'static str,
) -> Result<(T, &'a [u8]), DecodeError> {
    buf.get(at..)
        .and_then(|b| Some((T::read_from(b)?, b.get(size_of::<T>()..)?)))
        .ok_or(DecodeError::NotEnoughBytes {
            what,
            len: buf.len(),
            need: at + size_of::<T>(),
        })
}

fn text(bytes: &[u8]) -> String {
    // Valid UTF-8 (nearly always) is checked faster than it is repaired.
    match std::str::from_utf8(bytes) {
        Ok(s) => s.to_owned(),
        Err(_) => String::from_utf8_lossy(bytes).into_owned(),
    }
}

/// The `comm` field: NUL-padded.
fn comm(bytes: &[u8]) -> String {
    let end = bytes.iter().position(|&b| b == 0).unwrap_or(bytes.len());
    text(&bytes[..end])
}

/// The NUL-separated argument block as the kernel keeps it (`mm->arg_start..arg_end`).
fn split_argv(bytes: &[u8]) -> Vec<String> {
    let bytes = bytes.strip_suffix(&[0]).unwrap_or(bytes);
    if bytes.is_empty() {
        return Vec::new();
    }
    bytes.split(|&b| b == 0).map(text).collect()
}

/// The strings that follow a fixed part (`rest`), checked against the lengths it declares.
fn strings<const N: usize>(
    rest: &[u8],
    kind: RecordKind,
    lens: [u16; N],
) -> Result<[&[u8]; N], DecodeError> {
    let declared: usize = lens.iter().map(|&n| usize::from(n)).sum();
    if declared > rest.len() {
        return Err(DecodeError::SizeMismatch {
            kind,
            declared,
            present: rest.len(),
        });
    }
    let mut rest = rest;
    Ok(lens.map(|n| {
        // In bounds: the lengths add up to no more than `rest` holds (checked above).
        let (s, after) = rest.split_at(usize::from(n));
        rest = after;
        s
    }))
}

/// Decodes one record.
pub fn decode(buf: &[u8]) -> Result<Event, DecodeError> {
    let (hdr, _) = fixed::<Header>(buf, 0, "header")?;
    let kind = RecordKind::from_u32(hdr.kind).ok_or(DecodeError::UnknownKind(hdr.kind))?;
    let flag = |f: u32| hdr.flags & f != 0;
    let kind = match kind {
        RecordKind::Exec | RecordKind::ExecFailed => {
            let (f, rest) = fixed::<ExecFixed>(buf, HEADER_SIZE, "exec record")?;
            let [filename, argv] = strings(rest, kind, [f.filename_len, f.argv_len])?;
            let filename = text(filename);
            let filename_truncated = flag(FLAG_PATH_TRUNCATED);
            if kind == RecordKind::Exec {
                EventKind::Exec {
                    ppid: f.ppid,
                    uid: f.uid,
                    filename,
                    argv: split_argv(argv),
                    filename_truncated,
                    argv_truncated: flag(FLAG_ARGV_TRUNCATED),
                }
            } else {
                EventKind::ExecFailed {
                    ppid: f.ppid,
                    uid: f.uid,
                    errno: Errno(f.ret.saturating_neg()),
                    filename,
                    filename_truncated,
                }
            }
        }
        RecordKind::Exit => {
            let (f, rest) = fixed::<ExitFixed>(buf, HEADER_SIZE, "exit record")?;
            // Journals written before the start was recorded end here: age unknown.
            let start = ExitStart::read_from(rest);
            EventKind::Exit {
                ppid: f.ppid,
                status: WaitStatus(f.status),
                age_ns: start.map(|s| hdr.ts_ns.saturating_sub(s.start_ns)),
            }
        }
        RecordKind::Fork => {
            let (f, _) = fixed::<ForkFixed>(buf, HEADER_SIZE, "fork record")?;
            EventKind::Fork {
                child_pid: f.child_pid,
            }
        }
        RecordKind::CgroupMkdir | RecordKind::CgroupRmdir | RecordKind::CgroupAttach => {
            let (f, rest) = fixed::<CgroupFixed>(buf, HEADER_SIZE, "cgroup record")?;
            let [path] = strings(rest, kind, [f.path_len])?;
            let cgroup = CgroupRef {
                id: f.id,
                level: f.level,
                path: text(path),
                path_truncated: flag(FLAG_PATH_TRUNCATED),
            };
            match kind {
                RecordKind::CgroupMkdir => EventKind::CgroupMkdir { cgroup },
                RecordKind::CgroupRmdir => EventKind::CgroupRmdir { cgroup },
                _ => EventKind::CgroupAttach {
                    cgroup,
                    target_pid: f.target_pid,
                },
            }
        }
        RecordKind::Signal => {
            let (f, _) = fixed::<SignalFixed>(buf, HEADER_SIZE, "signal record")?;
            EventKind::Signal {
                target_pid: f.target_pid,
                signal: Signal(f.sig as i32),
                code: f.code,
                result: f.result,
            }
        }
        RecordKind::OomKill => {
            let (f, _) = fixed::<OomFixed>(buf, HEADER_SIZE, "oom-kill record")?;
            EventKind::OomKill {
                victim_pid: f.victim_pid,
            }
        }
        RecordKind::AccessFailed => {
            let (f, rest) = fixed::<AccessFixed>(buf, HEADER_SIZE, "access record")?;
            let [path, name] = strings(rest, kind, [f.path_len, f.name_len])?;
            EventKind::AccessFailed {
                ppid: f.ppid,
                uid: f.uid,
                gid: f.gid,
                errno: Errno(f.ret.saturating_neg()),
                syscall: match f.syscall {
                    ACCESS_SYSCALL_ACCESS => AccessSyscall::Access,
                    ACCESS_SYSCALL_FACCESSAT => AccessSyscall::Faccessat,
                    _ => AccessSyscall::Faccessat2,
                },
                path: text(path),
                path_truncated: flag(FLAG_PATH_TRUNCATED),
                fd: (f.fd >= 0).then_some(f.fd),
                access_mode: f.mode,
                at_flags: f.flags,
                file: (f.file_flags & ACCESS_FILE_SEEN != 0).then(|| FileSeen {
                    file_mode: f.file_mode,
                    file_uid: f.file_uid,
                    file_gid: f.file_gid,
                    noexec: f.file_flags & ACCESS_FILE_NOEXEC != 0,
                    file_name: text(name),
                }),
            }
        }
    };
    Ok(Event {
        ts_ns: hdr.ts_ns,
        pid: hdr.pid,
        tgid: hdr.tgid,
        cgroup_id: hdr.cgroup_id,
        comm: comm(&hdr.comm),
        kind,
    })
}

/// Encodes an event as the kernel programs write it. Strings longer than the record format
/// allows (u16 lengths) are cut; comm is cut to 15 bytes.
pub fn encode(ev: &Event) -> Vec<u8> {
    let flag = |set: bool, f: u32| if set { f } else { 0 };
    match &ev.kind {
        EventKind::Exec {
            ppid,
            uid,
            filename,
            argv,
            filename_truncated,
            argv_truncated,
        } => {
            let mut block = Vec::new();
            for a in argv {
                block.extend_from_slice(a.as_bytes());
                block.push(0);
            }
            let (filename, filename_len) = cut(filename.as_bytes());
            let (argv, argv_len) = cut(&block);
            let flags = flag(*filename_truncated, FLAG_PATH_TRUNCATED)
                | flag(*argv_truncated, FLAG_ARGV_TRUNCATED);
            let fixed = ExecFixed {
                ppid: *ppid,
                uid: *uid,
                ret: 0,
                filename_len,
                argv_len,
            };
            record(
                &header(ev, RecordKind::Exec, flags),
                &fixed,
                &[filename, argv],
            )
        }
        EventKind::ExecFailed {
            ppid,
            uid,
            errno,
            filename,
            filename_truncated,
        } => {
            let (filename, filename_len) = cut(filename.as_bytes());
            let flags = flag(*filename_truncated, FLAG_PATH_TRUNCATED);
            let fixed = ExecFixed {
                ppid: *ppid,
                uid: *uid,
                ret: errno.0.saturating_neg(),
                filename_len,
                argv_len: 0,
            };
            record(
                &header(ev, RecordKind::ExecFailed, flags),
                &fixed,
                &[filename],
            )
        }
        EventKind::Exit {
            ppid,
            status,
            age_ns,
        } => {
            let fixed = ExitFixed {
                ppid: *ppid,
                status: status.0,
            };
            let hdr = header(ev, RecordKind::Exit, 0);
            match age_ns {
                Some(age) => {
                    let start = ExitStart {
                        start_ns: ev.ts_ns.saturating_sub(*age),
                    };
                    record(&hdr, &fixed, &[start.as_bytes()])
                }
                None => record(&hdr, &fixed, &[]),
            }
        }
        EventKind::Fork { child_pid } => {
            let fixed = ForkFixed {
                child_pid: *child_pid,
                reserved: 0,
            };
            record(&header(ev, RecordKind::Fork, 0), &fixed, &[])
        }
        EventKind::CgroupMkdir { cgroup } => cgroup_record(ev, RecordKind::CgroupMkdir, cgroup, 0),
        EventKind::CgroupRmdir { cgroup } => cgroup_record(ev, RecordKind::CgroupRmdir, cgroup, 0),
        EventKind::CgroupAttach { cgroup, target_pid } => {
            cgroup_record(ev, RecordKind::CgroupAttach, cgroup, *target_pid)
        }
        EventKind::Signal {
            target_pid,
            signal,
            code,
            result,
        } => {
            let fixed = SignalFixed {
                target_pid: *target_pid,
                sig: signal.0 as u32,
                code: *code,
                result: *result,
            };
            record(&header(ev, RecordKind::Signal, 0), &fixed, &[])
        }
        EventKind::OomKill { victim_pid } => {
            let fixed = OomFixed {
                victim_pid: *victim_pid,
                reserved: 0,
            };
            record(&header(ev, RecordKind::OomKill, 0), &fixed, &[])
        }
        EventKind::AccessFailed {
            ppid,
            uid,
            gid,
            errno,
            syscall,
            path,
            path_truncated,
            fd,
            access_mode,
            at_flags,
            file,
        } => {
            let (path, path_len) = cut(path.as_bytes());
            let (name, name_len) = cut(file.as_ref().map_or(&[][..], |f| f.file_name.as_bytes()));
            let fixed = AccessFixed {
                ppid: *ppid,
                uid: *uid,
                gid: *gid,
                ret: errno.0.saturating_neg(),
                fd: fd.unwrap_or(-1),
                mode: *access_mode,
                flags: *at_flags,
                file_mode: file.as_ref().map_or(0, |f| f.file_mode),
                file_uid: file.as_ref().map_or(0, |f| f.file_uid),
                file_gid: file.as_ref().map_or(0, |f| f.file_gid),
                syscall: match syscall {
                    AccessSyscall::Access => ACCESS_SYSCALL_ACCESS,
                    AccessSyscall::Faccessat => ACCESS_SYSCALL_FACCESSAT,
                    AccessSyscall::Faccessat2 => ACCESS_SYSCALL_FACCESSAT2,
                },
                file_flags: file.as_ref().map_or(0, |f| {
                    ACCESS_FILE_SEEN | if f.noexec { ACCESS_FILE_NOEXEC } else { 0 }
                }),
                path_len,
                name_len,
            };
            let flags = flag(*path_truncated, FLAG_PATH_TRUNCATED);
            record(
                &header(ev, RecordKind::AccessFailed, flags),
                &fixed,
                &[path, name],
            )
        }
    }
}

/// The header the kernel writes for `ev`; comm is cut to leave its terminating NUL.
fn header(ev: &Event, kind: RecordKind, flags: u32) -> Header {
    let mut comm = [0u8; COMM_LEN];
    let n = ev.comm.len().min(COMM_LEN - 1);
    comm[..n].copy_from_slice(&ev.comm.as_bytes()[..n]);
    Header {
        kind: kind as u32,
        flags,
        ts_ns: ev.ts_ns,
        pid: ev.pid,
        tgid: ev.tgid,
        cgroup_id: ev.cgroup_id,
        comm,
    }
}

fn cgroup_record(ev: &Event, kind: RecordKind, cgroup: &CgroupRef, target_pid: u32) -> Vec<u8> {
    let (path, path_len) = cut(cgroup.path.as_bytes());
    let flags = if cgroup.path_truncated {
        FLAG_PATH_TRUNCATED
    } else {
        0
    };
    let fixed = CgroupFixed {
        id: cgroup.id,
        target_pid,
        level: cgroup.level,
        path_len,
    };
    record(&header(ev, kind, flags), &fixed, &[path])
}

/// At most as many bytes of `s` as a record's u16 length can declare, and their length.
fn cut(s: &[u8]) -> (&[u8], u16) {
    let n = u16::try_from(s.len()).unwrap_or(u16::MAX);
    (&s[..usize::from(n)], n)
}

/// A record: the header, the kind's fixed part, the strings back to back.
fn record<T: Plain>(hdr: &Header, fixed: &T, strings: &[&[u8]]) -> Vec<u8> {
    let len = HEADER_SIZE + size_of::<T>() + strings.iter().map(|s| s.len()).sum::<usize>();
    let mut out = Vec::with_capacity(len);
    out.extend_from_slice(hdr.as_bytes());
    out.extend_from_slice(fixed.as_bytes());
    for s in strings {
        out.extend_from_slice(s);
    }
    out
}

/// Arbitrary events, for property tests.
#[cfg(test)]
pub(crate) mod arb {
    use proptest::prelude::*;

    use crate::event::{
        AccessSyscall, CgroupRef, Errno, Event, EventKind, FileSeen, Signal, WaitStatus,
    };

    /// Strings as paths and arguments usually are.
    pub(crate) fn plain_string() -> BoxedStrategy<String> {
        proptest::string::string_regex("[a-zA-Z0-9/._ -]{0,40}")
            .unwrap()
            .boxed()
    }

    fn cgroup(s: BoxedStrategy<String>) -> impl Strategy<Value = CgroupRef> {
        (any::<u64>(), any::<u16>(), s, any::<bool>()).prop_map(
            |(id, level, path, path_truncated)| CgroupRef {
                id,
                level,
                path,
                path_truncated,
            },
        )
    }

    fn kind(s: BoxedStrategy<String>) -> impl Strategy<Value = EventKind> {
        prop_oneof![
            (
                any::<u32>(),
                any::<u32>(),
                s.clone(),
                proptest::collection::vec(s.clone(), 1..6),
                any::<bool>(),
                any::<bool>()
            )
                .prop_map(|(ppid, uid, filename, argv, ft, at)| EventKind::Exec {
                    ppid,
                    uid,
                    filename,
                    argv,
                    filename_truncated: ft,
                    argv_truncated: at,
                }),
            (
                any::<u32>(),
                any::<u32>(),
                1..4096i32,
                s.clone(),
                any::<bool>()
            )
                .prop_map(|(ppid, uid, e, filename, ft)| EventKind::ExecFailed {
                    ppid,
                    uid,
                    errno: Errno(e),
                    filename,
                    filename_truncated: ft,
                }),
            (any::<u32>(), any::<u32>(), any::<Option<u64>>()).prop_map(|(ppid, s, age_ns)| {
                EventKind::Exit {
                    ppid,
                    status: WaitStatus(s),
                    age_ns,
                }
            }),
            any::<u32>().prop_map(|child_pid| EventKind::Fork { child_pid }),
            cgroup(s.clone()).prop_map(|cgroup| EventKind::CgroupMkdir { cgroup }),
            cgroup(s.clone()).prop_map(|cgroup| EventKind::CgroupRmdir { cgroup }),
            (cgroup(s.clone()), any::<u32>())
                .prop_map(|(cgroup, target_pid)| EventKind::CgroupAttach { cgroup, target_pid }),
            (any::<u32>(), 1..64i32, any::<i32>(), any::<i32>()).prop_map(
                |(target_pid, sig, code, result)| EventKind::Signal {
                    target_pid,
                    signal: Signal(sig),
                    code,
                    result,
                }
            ),
            any::<u32>().prop_map(|victim_pid| EventKind::OomKill { victim_pid }),
            (
                (any::<u32>(), any::<u32>(), any::<u32>(), 1..4096i32),
                (
                    0..3u8,
                    s.clone(),
                    any::<bool>(),
                    proptest::option::of(0..4096i32)
                ),
                (any::<u32>(), any::<u32>()),
                proptest::option::of((any::<u32>(), any::<u32>(), any::<u32>(), any::<bool>(), s)),
            )
                .prop_map(
                    |((ppid, uid, gid, e), (sc, path, pt, fd), (mode, flags), file)| {
                        EventKind::AccessFailed {
                            ppid,
                            uid,
                            gid,
                            errno: Errno(e),
                            syscall: [
                                AccessSyscall::Access,
                                AccessSyscall::Faccessat,
                                AccessSyscall::Faccessat2,
                            ][usize::from(sc)],
                            path,
                            path_truncated: pt,
                            fd,
                            access_mode: mode,
                            at_flags: flags,
                            file: file.map(|(m, u, g, noexec, name)| FileSeen {
                                file_mode: m,
                                file_uid: u,
                                file_gid: g,
                                noexec,
                                file_name: name,
                            }),
                        }
                    }
                ),
        ]
    }

    /// Any event, its strings drawn from `s`.
    pub(crate) fn event(s: BoxedStrategy<String>) -> impl Strategy<Value = Event> {
        (
            any::<u64>(),
            any::<u32>(),
            any::<u32>(),
            any::<u64>(),
            "[a-z()0-9-]{0,15}",
            kind(s),
        )
            .prop_map(|(ts_ns, pid, tgid, cgroup_id, comm, mut kind)| {
                // A process is no older than the clock.
                if let EventKind::Exit {
                    age_ns: Some(age), ..
                } = &mut kind
                {
                    *age = (*age).min(ts_ns);
                }
                Event {
                    ts_ns,
                    pid,
                    tgid,
                    cgroup_id,
                    comm,
                    kind,
                }
            })
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn exit_event() -> Event {
        Event {
            ts_ns: 123,
            pid: 42,
            tgid: 42,
            cgroup_id: 9,
            comm: "sh".into(),
            kind: EventKind::Exit {
                age_ns: None,
                ppid: 1,
                status: WaitStatus(3 << 8),
            },
        }
    }

    #[test]
    fn short_records_are_errors() {
        assert!(matches!(
            decode(&[]),
            Err(DecodeError::NotEnoughBytes { need: 48, .. })
        ));
        let full = encode(&exit_event());
        for len in 0..full.len() {
            assert!(
                matches!(
                    decode(&full[..len]),
                    Err(DecodeError::NotEnoughBytes { .. })
                ),
                "a {len}-byte prefix must not decode"
            );
        }
        assert_eq!(decode(&full), Ok(exit_event()));
    }

    /// Exit records carry the process's start since issue 16; the journals written before
    /// hold records that end after the wait status, and still decode (age unknown).
    #[test]
    fn exit_records_with_and_without_the_start() {
        let mut ev = exit_event();
        ev.ts_ns = 5_000_000_000;
        let old = encode(&ev);
        assert_eq!(old.len(), HEADER_SIZE + size_of::<ExitFixed>());
        assert_eq!(decode(&old), Ok(ev.clone()));
        let mut new = old.clone();
        new.extend_from_slice(
            ExitStart {
                start_ns: 4_700_000_000,
            }
            .as_bytes(),
        );
        let aged = decode(&new).unwrap();
        assert!(
            matches!(
                aged.kind,
                EventKind::Exit {
                    age_ns: Some(300_000_000),
                    ..
                }
            ),
            "{aged:?}"
        );
        assert_eq!(encode(&aged), new, "encoded as the kernel writes it");
        // A start after the record's own time (a clock that cannot be) is age 0, no wrap.
        new[HEADER_SIZE + size_of::<ExitFixed>()..]
            .copy_from_slice(&6_000_000_000u64.to_ne_bytes());
        assert!(matches!(
            decode(&new).unwrap().kind,
            EventKind::Exit {
                age_ns: Some(0),
                ..
            }
        ));
    }

    #[test]
    fn unknown_kinds_are_errors() {
        let mut rec = encode(&exit_event());
        rec[..4].copy_from_slice(&99u32.to_ne_bytes());
        assert_eq!(decode(&rec), Err(DecodeError::UnknownKind(99)));
        rec[..4].copy_from_slice(&0u32.to_ne_bytes());
        assert_eq!(decode(&rec), Err(DecodeError::UnknownKind(0)));
    }

    #[test]
    fn oversized_lengths_are_errors() {
        let ev = Event {
            kind: EventKind::Exec {
                ppid: 1,
                uid: 0,
                filename: "/bin/true".into(),
                argv: vec!["true".into()],
                filename_truncated: false,
                argv_truncated: false,
            },
            ..exit_event()
        };
        let mut rec = encode(&ev);
        // filename_len claims far more than the record holds
        let at = HEADER_SIZE + std::mem::offset_of!(ExecFixed, filename_len);
        rec[at..at + 2].copy_from_slice(&u16::MAX.to_ne_bytes());
        assert!(matches!(
            decode(&rec),
            Err(DecodeError::SizeMismatch {
                kind: RecordKind::Exec,
                ..
            })
        ));
    }

    #[test]
    fn argv_block_splits_on_nul() {
        assert_eq!(split_argv(b"ls\0-l\0/tmp\0"), vec!["ls", "-l", "/tmp"]);
        assert_eq!(split_argv(b"ls\0-"), vec!["ls", "-"]);
        assert_eq!(split_argv(b"a\0\0b\0"), vec!["a", "", "b"]);
        assert!(split_argv(b"").is_empty());
    }

    proptest! {
        #[test]
        fn round_trip(ev in arb::event(arb::plain_string())) {
            // An argv element that is empty at the end cannot be told from the block's end.
            prop_assume!(!matches!(&ev.kind, EventKind::Exec { argv, .. } if argv.last().is_some_and(|a| a.is_empty())));
            prop_assert_eq!(decode(&encode(&ev)), Ok(ev));
        }

        #[test]
        fn never_panics_on_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
            let _ = decode(&bytes);
        }

        #[test]
        fn never_panics_on_corrupted_records(ev in arb::event(arb::plain_string()), at in any::<usize>(), byte in any::<u8>(), cut in any::<usize>()) {
            let mut rec = encode(&ev);
            let i = at % rec.len();
            rec[i] = byte;
            rec.truncate(cut % (rec.len() + 1));
            let _ = decode(&rec);
        }
    }
}
