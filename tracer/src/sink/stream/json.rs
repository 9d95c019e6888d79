//! The stream's JSON lines, written directly: byte for byte what
//! [`crate::report::events::write_json`] writes through serde (a test holds them equal), at a
//! fraction of the cost. Formatting is the daemon's largest cost per event with a client
//! connected: serde's map and flatten layers escape every key and dispatch every field.

use crate::{
    clock::{BootClock, write_rfc3339_utc},
    event::{CgroupRef, Errno, Event, EventKind, signal_name},
};

/// Writes one event as a JSON line.
pub fn write_line(out: &mut Vec<u8>, ev: &Event, clock: &BootClock, cgroup: Option<&str>) {
    out.extend_from_slice(b"{\"time\":\"");
    write_rfc3339_utc(out, clock.wall(ev.ts_ns));
    out.push(b'"');
    num(out, b",\"ts_ns\":", ev.ts_ns);
    num(out, b",\"pid\":", ev.pid);
    num(out, b",\"tgid\":", ev.tgid);
    num(out, b",\"cgroup_id\":", ev.cgroup_id);
    out.extend_from_slice(b",\"comm\":");
    string(out, &ev.comm);
    out.extend_from_slice(b",\"kind\":\"");
    out.extend_from_slice(ev.kind_name().as_bytes());
    out.push(b'"');
    kind_fields(out, &ev.kind);
    out.extend_from_slice(b",\"cgroup\":");
    opt_string(out, cgroup);
    out.extend_from_slice(b"}\n");
}

/// The fields of the event's kind, in the order serde writes them.
#[inline]
fn kind_fields(out: &mut Vec<u8>, kind: &EventKind) {
    match kind {
        EventKind::Exec {
            ppid,
            uid,
            filename,
            argv,
            filename_truncated,
            argv_truncated,
        } => {
            num(out, b",\"ppid\":", *ppid);
            num(out, b",\"uid\":", *uid);
            out.extend_from_slice(b",\"filename\":");
            string(out, filename);
            out.extend_from_slice(b",\"argv\":[");
            for (i, a) in argv.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                string(out, a);
            }
            out.push(b']');
            if *filename_truncated {
                out.extend_from_slice(b",\"filename_truncated\":true");
            }
            if *argv_truncated {
                out.extend_from_slice(b",\"argv_truncated\":true");
            }
        }
        EventKind::ExecFailed {
            ppid,
            uid,
            errno,
            filename,
            filename_truncated,
        } => {
            num(out, b",\"ppid\":", *ppid);
            num(out, b",\"uid\":", *uid);
            errno_fields(out, *errno);
            out.extend_from_slice(b",\"filename\":");
            string(out, filename);
            if *filename_truncated {
                out.extend_from_slice(b",\"filename_truncated\":true");
            }
        }
        EventKind::Exit {
            ppid,
            status,
            age_ns,
        } => {
            num(out, b",\"ppid\":", *ppid);
            num(out, b",\"status\":", status.0);
            out.extend_from_slice(b",\"exit_code\":");
            opt_num(out, status.exit_code());
            out.extend_from_slice(b",\"signal\":");
            opt_num(out, status.signal());
            out.extend_from_slice(b",\"signal_name\":");
            opt_string(out, status.signal().and_then(signal_name));
            out.extend_from_slice(if status.core_dumped() {
                b",\"core_dumped\":true"
            } else {
                b",\"core_dumped\":false"
            });
            out.extend_from_slice(b",\"age_ns\":");
            opt_num(out, *age_ns);
        }
        EventKind::Fork { child_pid } => num(out, b",\"child_pid\":", *child_pid),
        EventKind::CgroupMkdir { cgroup } | EventKind::CgroupRmdir { cgroup } => {
            cgroup_ref(out, cgroup);
        }
        EventKind::CgroupAttach { cgroup, target_pid } => {
            cgroup_ref(out, cgroup);
            num(out, b",\"target_pid\":", *target_pid);
        }
        EventKind::Signal {
            target_pid,
            signal,
            code,
            result,
        } => {
            num(out, b",\"target_pid\":", *target_pid);
            num(out, b",\"signal\":", signal.0);
            out.extend_from_slice(b",\"signal_name\":");
            opt_string(out, signal_name(signal.0));
            num(out, b",\"code\":", *code);
            num(out, b",\"result\":", *result);
        }
        EventKind::OomKill { victim_pid } => num(out, b",\"victim_pid\":", *victim_pid),
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
            num(out, b",\"ppid\":", *ppid);
            num(out, b",\"uid\":", *uid);
            num(out, b",\"gid\":", *gid);
            errno_fields(out, *errno);
            out.extend_from_slice(b",\"syscall\":\"");
            out.extend_from_slice(syscall.name().as_bytes());
            out.extend_from_slice(b"\",\"path\":");
            string(out, path);
            if *path_truncated {
                out.extend_from_slice(b",\"path_truncated\":true");
            }
            if let Some(fd) = fd {
                num(out, b",\"fd\":", *fd);
            }
            num(out, b",\"access_mode\":", *access_mode);
            num(out, b",\"at_flags\":", *at_flags);
            if let Some(f) = file {
                num(out, b",\"file_mode\":", f.file_mode);
                num(out, b",\"file_uid\":", f.file_uid);
                num(out, b",\"file_gid\":", f.file_gid);
                out.extend_from_slice(if f.noexec {
                    b",\"noexec\":true"
                } else {
                    b",\"noexec\":false"
                });
                out.extend_from_slice(b",\"file_name\":");
                string(out, &f.file_name);
            }
        }
    }
}

/// [`Errno`]'s fields, as its `Serialize` writes them.
fn errno_fields(out: &mut Vec<u8>, errno: Errno) {
    num(out, b",\"errno\":", errno.0);
    out.extend_from_slice(b",\"error\":");
    opt_string(out, errno.name());
    out.extend_from_slice(b",\"error_text\":");
    string(out, &errno.text());
}

fn cgroup_ref(out: &mut Vec<u8>, c: &CgroupRef) {
    num(out, b",\"cgroup_target_id\":", c.id);
    num(out, b",\"level\":", c.level);
    out.extend_from_slice(b",\"cgroup_target\":");
    string(out, &c.path);
    if c.path_truncated {
        out.extend_from_slice(b",\"path_truncated\":true");
    }
}

fn num(out: &mut Vec<u8>, key: &[u8], v: impl itoa::Integer) {
    out.extend_from_slice(key);
    out.extend_from_slice(itoa::Buffer::new().format(v).as_bytes());
}

fn opt_num(out: &mut Vec<u8>, v: Option<impl itoa::Integer>) {
    match v {
        Some(v) => out.extend_from_slice(itoa::Buffer::new().format(v).as_bytes()),
        None => out.extend_from_slice(b"null"),
    }
}

fn opt_string(out: &mut Vec<u8>, s: Option<&str>) {
    match s {
        Some(s) => string(out, s),
        None => out.extend_from_slice(b"null"),
    }
}

/// A JSON string as serde_json escapes it: `"` and `\`, the control characters (\b \t \n
/// \f \r by name, the others as \u00XX); everything else as it is.
fn string(out: &mut Vec<u8>, s: &str) {
    out.push(b'"');
    let b = s.as_bytes();
    // Nearly always nothing to escape (a check the compiler vectorizes).
    if !b.iter().fold(false, |any, &c| {
        any | (c < 0x20) | (c == b'"') | (c == b'\\')
    }) {
        out.extend_from_slice(b);
        out.push(b'"');
        return;
    }
    let mut start = 0;
    for (i, &c) in b.iter().enumerate() {
        let esc: &[u8] = match c {
            b'"' => b"\\\"",
            b'\\' => b"\\\\",
            0x08 => b"\\b",
            b'\t' => b"\\t",
            b'\n' => b"\\n",
            0x0c => b"\\f",
            b'\r' => b"\\r",
            0..=0x1f => {
                out.extend_from_slice(&b[start..i]);
                const HEX: &[u8; 16] = b"0123456789abcdef";
                out.extend_from_slice(&[
                    b'\\',
                    b'u',
                    b'0',
                    b'0',
                    HEX[usize::from(c >> 4)],
                    HEX[usize::from(c & 0xf)],
                ]);
                start = i + 1;
                continue;
            }
            _ => continue,
        };
        out.extend_from_slice(&b[start..i]);
        out.extend_from_slice(esc);
        start = i + 1;
    }
    out.extend_from_slice(&b[start..]);
    out.push(b'"');
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::{decode::arb, report::events::write_json};

    fn both(ev: &Event, cgroup: Option<&str>) -> (String, String) {
        let clock = BootClock::new();
        let mut fast = Vec::new();
        write_line(&mut fast, ev, &clock, cgroup);
        let mut serde = Vec::new();
        write_json(&mut serde, ev, &clock, cgroup).unwrap();
        (
            String::from_utf8(fast).unwrap(),
            String::from_utf8(serde).unwrap(),
        )
    }

    #[test]
    fn escapes_like_serde_json() {
        let ev = Event {
            ts_ns: 1,
            pid: 2,
            tgid: 3,
            cgroup_id: 4,
            comm: "a\"b\\c\u{1}\u{8}\t\n\u{c}\r\u{1f}\u{7f}é€😀".into(),
            kind: EventKind::Fork { child_pid: 5 },
        };
        let (fast, serde) = both(&ev, Some("/x\"y"));
        assert_eq!(fast, serde);
    }

    proptest! {
        #[test]
        fn lines_are_what_serde_writes(ev in arb::event(any::<String>().boxed()), cgroup in proptest::option::of(any::<String>())) {
            let (fast, serde) = both(&ev, cgroup.as_deref());
            prop_assert_eq!(fast, serde);
        }
    }
}
