//! Ring-buffer record bytes → [`Event`]: a pure function that never panics, whatever the
//! bytes. [`encode`] is its inverse (fixtures, replay, round-trip tests).

use tracer_common::{
    CGROUP_FIXED_SIZE, EXEC_FIXED_SIZE, EXIT_FIXED_SIZE, FLAG_ARGV_TRUNCATED, FLAG_PATH_TRUNCATED,
    FORK_FIXED_SIZE, HEADER_SIZE, OOM_FIXED_SIZE, RecordKind, SIGNAL_FIXED_SIZE,
};

use crate::event::{CgroupRef, Errno, Event, EventKind, Signal, WaitStatus};

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

/// Little-endian field reads on a slice already checked to be long enough.
struct Reader<'a>(&'a [u8]);

impl Reader<'_> {
    fn u16(&self, off: usize) -> u16 {
        u16::from_le_bytes([self.0[off], self.0[off + 1]])
    }
    fn u32(&self, off: usize) -> u32 {
        let b = &self.0[off..off + 4];
        u32::from_le_bytes([b[0], b[1], b[2], b[3]])
    }
    fn u64(&self, off: usize) -> u64 {
        let mut a = [0u8; 8];
        a.copy_from_slice(&self.0[off..off + 8]);
        u64::from_le_bytes(a)
    }
}

fn need(buf: &[u8], what: &'static str, need: usize) -> Result<(), DecodeError> {
    if buf.len() < need {
        Err(DecodeError::NotEnoughBytes {
            what,
            len: buf.len(),
            need,
        })
    } else {
        Ok(())
    }
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

/// The strings that follow a fixed part, checked against the lengths it declares.
fn strings<const N: usize>(
    buf: &[u8],
    kind: RecordKind,
    body: usize,
    lens: [usize; N],
) -> Result<[&[u8]; N], DecodeError> {
    let declared: usize = lens.iter().sum();
    let present = buf.len() - body;
    if declared > present {
        return Err(DecodeError::SizeMismatch {
            kind,
            declared,
            present,
        });
    }
    let mut off = body;
    Ok(lens.map(|n| {
        let s = &buf[off..off + n];
        off += n;
        s
    }))
}

/// Decodes one record.
pub fn decode(buf: &[u8]) -> Result<Event, DecodeError> {
    need(buf, "header", HEADER_SIZE)?;
    let r = Reader(buf);
    let raw_kind = r.u32(0);
    let kind = RecordKind::from_u32(raw_kind).ok_or(DecodeError::UnknownKind(raw_kind))?;
    let flags = r.u32(4);
    let h = HEADER_SIZE;
    let kind = match kind {
        RecordKind::Exec | RecordKind::ExecFailed => {
            need(buf, "exec record", h + EXEC_FIXED_SIZE)?;
            let ppid = r.u32(h);
            let uid = r.u32(h + 4);
            let ret = r.u32(h + 8) as i32;
            let lens = [r.u16(h + 12) as usize, r.u16(h + 14) as usize];
            let s = strings(buf, kind, h + EXEC_FIXED_SIZE, lens)?;
            let filename = text(s[0]);
            let filename_truncated = flags & FLAG_PATH_TRUNCATED != 0;
            if kind == RecordKind::Exec {
                EventKind::Exec {
                    ppid,
                    uid,
                    filename,
                    argv: split_argv(s[1]),
                    filename_truncated,
                    argv_truncated: flags & FLAG_ARGV_TRUNCATED != 0,
                }
            } else {
                EventKind::ExecFailed {
                    ppid,
                    uid,
                    errno: Errno(ret.saturating_neg()),
                    filename,
                    filename_truncated,
                }
            }
        }
        RecordKind::Exit => {
            need(buf, "exit record", h + EXIT_FIXED_SIZE)?;
            EventKind::Exit {
                ppid: r.u32(h),
                status: WaitStatus(r.u32(h + 4)),
            }
        }
        RecordKind::Fork => {
            need(buf, "fork record", h + FORK_FIXED_SIZE)?;
            EventKind::Fork {
                child_pid: r.u32(h),
            }
        }
        RecordKind::CgroupMkdir | RecordKind::CgroupRmdir | RecordKind::CgroupAttach => {
            need(buf, "cgroup record", h + CGROUP_FIXED_SIZE)?;
            let lens = [r.u16(h + 14) as usize];
            let s = strings(buf, kind, h + CGROUP_FIXED_SIZE, lens)?;
            let cgroup = CgroupRef {
                id: r.u64(h),
                level: r.u16(h + 12),
                path: text(s[0]),
                path_truncated: flags & FLAG_PATH_TRUNCATED != 0,
            };
            match kind {
                RecordKind::CgroupMkdir => EventKind::CgroupMkdir { cgroup },
                RecordKind::CgroupRmdir => EventKind::CgroupRmdir { cgroup },
                _ => EventKind::CgroupAttach {
                    cgroup,
                    target_pid: r.u32(h + 8),
                },
            }
        }
        RecordKind::Signal => {
            need(buf, "signal record", h + SIGNAL_FIXED_SIZE)?;
            EventKind::Signal {
                target_pid: r.u32(h),
                signal: Signal(r.u32(h + 4) as i32),
                code: r.u32(h + 8) as i32,
                result: r.u32(h + 12) as i32,
            }
        }
        RecordKind::OomKill => {
            need(buf, "oom-kill record", h + OOM_FIXED_SIZE)?;
            EventKind::OomKill {
                victim_pid: r.u32(h),
            }
        }
    };
    Ok(Event {
        ts_ns: r.u64(8),
        pid: r.u32(16),
        tgid: r.u32(20),
        cgroup_id: r.u64(24),
        comm: comm(&buf[32..48]),
        kind,
    })
}

/// Encodes an event as the kernel programs write it. Strings longer than the record format
/// allows (u16 lengths) are cut; comm is cut to 15 bytes.
pub fn encode(ev: &Event) -> Vec<u8> {
    let mut out = Vec::with_capacity(128);
    let (kind, mut flags) = match &ev.kind {
        EventKind::Exec { .. } => (RecordKind::Exec, 0),
        EventKind::ExecFailed { .. } => (RecordKind::ExecFailed, 0),
        EventKind::Exit { .. } => (RecordKind::Exit, 0),
        EventKind::Fork { .. } => (RecordKind::Fork, 0),
        EventKind::CgroupMkdir { .. } => (RecordKind::CgroupMkdir, 0),
        EventKind::CgroupRmdir { .. } => (RecordKind::CgroupRmdir, 0),
        EventKind::CgroupAttach { .. } => (RecordKind::CgroupAttach, 0),
        EventKind::Signal { .. } => (RecordKind::Signal, 0),
        EventKind::OomKill { .. } => (RecordKind::OomKill, 0),
    };
    match &ev.kind {
        EventKind::Exec {
            filename_truncated,
            argv_truncated,
            ..
        } => {
            flags |= if *filename_truncated {
                FLAG_PATH_TRUNCATED
            } else {
                0
            };
            flags |= if *argv_truncated {
                FLAG_ARGV_TRUNCATED
            } else {
                0
            };
        }
        EventKind::ExecFailed {
            filename_truncated: true,
            ..
        } => flags |= FLAG_PATH_TRUNCATED,
        EventKind::CgroupMkdir { cgroup }
        | EventKind::CgroupRmdir { cgroup }
        | EventKind::CgroupAttach { cgroup, .. }
            if cgroup.path_truncated =>
        {
            flags |= FLAG_PATH_TRUNCATED
        }
        _ => {}
    }
    out.extend_from_slice(&(kind as u32).to_le_bytes());
    out.extend_from_slice(&flags.to_le_bytes());
    out.extend_from_slice(&ev.ts_ns.to_le_bytes());
    out.extend_from_slice(&ev.pid.to_le_bytes());
    out.extend_from_slice(&ev.tgid.to_le_bytes());
    out.extend_from_slice(&ev.cgroup_id.to_le_bytes());
    let mut comm = [0u8; 16];
    let n = ev.comm.len().min(15);
    comm[..n].copy_from_slice(&ev.comm.as_bytes()[..n]);
    out.extend_from_slice(&comm);

    let cut = |s: &[u8]| s[..s.len().min(u16::MAX as usize)].to_vec();
    match &ev.kind {
        EventKind::Exec {
            ppid,
            uid,
            filename,
            argv,
            ..
        } => {
            let filename = cut(filename.as_bytes());
            let mut block = Vec::new();
            for a in argv {
                block.extend_from_slice(a.as_bytes());
                block.push(0);
            }
            let block = cut(&block);
            exec_fixed(&mut out, *ppid, *uid, 0, &filename, &block);
        }
        EventKind::ExecFailed {
            ppid,
            uid,
            errno,
            filename,
            ..
        } => {
            let filename = cut(filename.as_bytes());
            exec_fixed(
                &mut out,
                *ppid,
                *uid,
                errno.0.saturating_neg(),
                &filename,
                &[],
            );
        }
        EventKind::Exit { ppid, status } => {
            out.extend_from_slice(&ppid.to_le_bytes());
            out.extend_from_slice(&status.0.to_le_bytes());
        }
        EventKind::Fork { child_pid } => {
            out.extend_from_slice(&child_pid.to_le_bytes());
            out.extend_from_slice(&0u32.to_le_bytes());
        }
        EventKind::CgroupMkdir { cgroup } | EventKind::CgroupRmdir { cgroup } => {
            cgroup_fixed(&mut out, cgroup, 0, &cut(cgroup.path.as_bytes()));
        }
        EventKind::CgroupAttach { cgroup, target_pid } => {
            cgroup_fixed(&mut out, cgroup, *target_pid, &cut(cgroup.path.as_bytes()));
        }
        EventKind::Signal {
            target_pid,
            signal,
            code,
            result,
        } => {
            for v in [*target_pid, signal.0 as u32, *code as u32, *result as u32] {
                out.extend_from_slice(&v.to_le_bytes());
            }
        }
        EventKind::OomKill { victim_pid } => {
            out.extend_from_slice(&victim_pid.to_le_bytes());
            out.extend_from_slice(&0u32.to_le_bytes());
        }
    }
    out
}

fn exec_fixed(out: &mut Vec<u8>, ppid: u32, uid: u32, ret: i32, filename: &[u8], argv: &[u8]) {
    out.extend_from_slice(&ppid.to_le_bytes());
    out.extend_from_slice(&uid.to_le_bytes());
    out.extend_from_slice(&ret.to_le_bytes());
    out.extend_from_slice(&(filename.len() as u16).to_le_bytes());
    out.extend_from_slice(&(argv.len() as u16).to_le_bytes());
    out.extend_from_slice(filename);
    out.extend_from_slice(argv);
}

fn cgroup_fixed(out: &mut Vec<u8>, cgroup: &CgroupRef, target_pid: u32, path: &[u8]) {
    out.extend_from_slice(&cgroup.id.to_le_bytes());
    out.extend_from_slice(&target_pid.to_le_bytes());
    out.extend_from_slice(&cgroup.level.to_le_bytes());
    out.extend_from_slice(&(path.len() as u16).to_le_bytes());
    out.extend_from_slice(path);
}

/// Arbitrary events, for property tests.
#[cfg(test)]
pub(crate) mod arb {
    use proptest::prelude::*;

    use crate::event::{CgroupRef, Errno, Event, EventKind, Signal, WaitStatus};

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
            (any::<u32>(), any::<u32>()).prop_map(|(ppid, s)| EventKind::Exit {
                ppid,
                status: WaitStatus(s)
            }),
            any::<u32>().prop_map(|child_pid| EventKind::Fork { child_pid }),
            cgroup(s.clone()).prop_map(|cgroup| EventKind::CgroupMkdir { cgroup }),
            cgroup(s.clone()).prop_map(|cgroup| EventKind::CgroupRmdir { cgroup }),
            (cgroup(s), any::<u32>())
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
            .prop_map(|(ts_ns, pid, tgid, cgroup_id, comm, kind)| Event {
                ts_ns,
                pid,
                tgid,
                cgroup_id,
                comm,
                kind,
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

    #[test]
    fn unknown_kinds_are_errors() {
        let mut rec = encode(&exit_event());
        rec[..4].copy_from_slice(&99u32.to_le_bytes());
        assert_eq!(decode(&rec), Err(DecodeError::UnknownKind(99)));
        rec[..4].copy_from_slice(&0u32.to_le_bytes());
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
        rec[HEADER_SIZE + 12..HEADER_SIZE + 14].copy_from_slice(&u16::MAX.to_le_bytes());
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
