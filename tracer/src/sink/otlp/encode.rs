//! Events and findings as OTLP log records. Attribute names follow OpenTelemetry's
//! semantic conventions where one exists (`process.pid`, `process.parent_pid`,
//! `process.executable.name`, `process.executable.path`, `process.command_args`,
//! `process.user.id`, `process.exit.code`); the rest are `tracer.*`. Every string is
//! bounded ([`VALUE_MAX`]), and so is the argument list ([`ARGV_MAX`]).

use std::time::SystemTime;

use super::proto::{
    AnyValue, ArrayValue, KeyValue, LogRecord, SEVERITY_ERROR, SEVERITY_INFO, SEVERITY_WARN, Value,
};
use crate::{
    clock::BootClock,
    enrich::Enriched,
    event::{EventKind, signal_name},
    report::{
        events::{Output, write_event},
        term::printable,
    },
    sink::journald::Finding,
};

/// The most bytes of one string value (longer ones are cut at a character boundary and
/// end in `…`).
pub const VALUE_MAX: usize = 4096;
/// The most arguments of an exec that are exported (`tracer.argv_truncated` says so).
pub const ARGV_MAX: usize = 64;

pub fn unix_nanos(t: SystemTime) -> u64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

pub fn kv(key: &str, value: AnyValue) -> KeyValue {
    KeyValue {
        key: key.to_owned(),
        value: Some(value),
    }
}

/// A string value, bounded.
fn text(s: &str) -> AnyValue {
    if s.len() <= VALUE_MAX {
        return AnyValue::string(s);
    }
    let mut end = VALUE_MAX - '…'.len_utf8();
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    AnyValue::string(format!("{}…", &s[..end]))
}

/// A record's attributes as they are added.
#[derive(Default)]
struct Attrs(Vec<KeyValue>);

impl Attrs {
    fn str(&mut self, key: &str, v: &str) {
        self.0.push(kv(key, text(v)));
    }

    fn int(&mut self, key: &str, v: impl Into<i64>) {
        self.0.push(kv(key, AnyValue::int(v.into())));
    }

    fn bool(&mut self, key: &str, v: bool) {
        self.0.push(kv(
            key,
            AnyValue {
                value: Some(Value::Bool(v)),
            },
        ));
    }

    fn errno(&mut self, errno: crate::event::Errno) {
        self.str("tracer.errno", errno.name().unwrap_or("unknown"));
        self.int("tracer.errno_number", errno.0);
    }

    fn signal(&mut self, sig: i32) {
        self.str("tracer.signal", signal_name(sig).unwrap_or("unknown"));
        self.int("tracer.signal_number", sig);
    }
}

/// An event as a log record: INFO, WARN for a failure (a failed exec or access check, an
/// exit that is not 0); its time the kernel's, made wall-clock time by `clock`.
pub fn event(e: &Enriched, clock: &BootClock, observed: u64) -> LogRecord {
    let ev = &e.ev;
    let mut a = Attrs::default();
    a.str("tracer.kind", ev.kind_name());
    a.int("process.pid", ev.tgid);
    if ev.pid != ev.tgid {
        a.int("thread.id", ev.pid);
    }
    a.str("process.executable.name", &ev.comm);
    if let Some(u) = &e.unit {
        a.str("tracer.unit", &u.key());
    }
    if let Some(c) = e.path() {
        a.str("tracer.cgroup", c);
    }
    match &ev.kind {
        EventKind::Exec {
            ppid,
            uid,
            filename,
            argv,
            filename_truncated,
            argv_truncated,
        } => {
            a.int("process.parent_pid", *ppid);
            a.int("process.user.id", *uid);
            a.str("process.executable.path", filename);
            let values = argv.iter().take(ARGV_MAX).map(|s| text(s)).collect();
            a.0.push(kv(
                "process.command_args",
                AnyValue {
                    value: Some(Value::Array(ArrayValue { values })),
                },
            ));
            if *argv_truncated || argv.len() > ARGV_MAX {
                a.bool("tracer.argv_truncated", true);
            }
            if *filename_truncated {
                a.bool("tracer.filename_truncated", true);
            }
        }
        EventKind::ExecFailed {
            ppid,
            uid,
            errno,
            filename,
            filename_truncated,
        } => {
            a.int("process.parent_pid", *ppid);
            a.int("process.user.id", *uid);
            a.str("process.executable.path", filename);
            a.errno(*errno);
            if *filename_truncated {
                a.bool("tracer.filename_truncated", true);
            }
        }
        EventKind::Exit {
            ppid,
            status,
            age_ns,
        } => {
            a.int("process.parent_pid", *ppid);
            if let Some(age) = age_ns {
                a.int(
                    "tracer.process.age_ns",
                    i64::try_from(*age).unwrap_or(i64::MAX),
                );
            }
            if let Some(code) = status.exit_code() {
                a.int("process.exit.code", code);
            }
            if let Some(sig) = status.signal() {
                a.signal(sig);
                a.bool("tracer.core_dumped", status.core_dumped());
            }
        }
        EventKind::Fork { child_pid } => a.int("tracer.child_pid", *child_pid),
        EventKind::CgroupMkdir { cgroup }
        | EventKind::CgroupRmdir { cgroup }
        | EventKind::CgroupAttach { cgroup, .. } => {
            a.int("tracer.cgroup_target_id", cgroup.id as i64);
            if let EventKind::CgroupAttach { target_pid, .. } = &ev.kind {
                a.int("tracer.target_pid", *target_pid);
            }
        }
        EventKind::Signal {
            target_pid,
            signal,
            code,
            ..
        } => {
            a.int("tracer.target_pid", *target_pid);
            a.signal(signal.0);
            a.int("tracer.signal_code", *code);
        }
        EventKind::OomKill { victim_pid } => a.int("tracer.victim_pid", *victim_pid),
        EventKind::AccessFailed {
            ppid,
            uid,
            gid,
            errno,
            syscall,
            path,
            file,
            ..
        } => {
            a.int("process.parent_pid", *ppid);
            a.int("process.user.id", *uid);
            a.int("process.group.id", *gid);
            a.errno(*errno);
            a.str("tracer.syscall", syscall.name());
            if !path.is_empty() {
                a.str("tracer.path", path);
            }
            if let Some(f) = file {
                a.str("tracer.file_name", &f.file_name);
                a.str("tracer.file_mode", &format!("{:04o}", f.perm()));
                a.int("tracer.file_uid", f.file_uid);
                a.int("tracer.file_gid", f.file_gid);
                a.bool("tracer.noexec", f.noexec);
            }
        }
    }
    let mut detail = Vec::new();
    let _ = write_event(&mut detail, ev, clock, e.path(), Output::Cat);
    let body = format!(
        "{} {} ({}): {}",
        ev.kind_name(),
        printable(&ev.comm),
        ev.subject_pid(),
        String::from_utf8_lossy(&detail).trim_end()
    );
    let (severity_number, severity_text) = if ev.is_failure() {
        (SEVERITY_WARN, "WARN")
    } else {
        (SEVERITY_INFO, "INFO")
    };
    LogRecord {
        time_unix_nano: unix_nanos(clock.wall(ev.ts_ns)),
        observed_time_unix_nano: observed,
        severity_number,
        severity_text: severity_text.into(),
        body: Some(text(&body)),
        attributes: a.0,
        dropped_attributes_count: 0,
        event_name: format!("tracer.event.{}", ev.kind_name()),
    }
}

/// A finding as a log record: the systemd journal entry's MESSAGE as the body, its
/// priority as the severity, and its fields as attributes (`TRACER_CAUSE` →
/// `tracer.cause`, `MESSAGE_ID` → `tracer.message_id`, `OBJECT_SYSTEMD_UNIT` →
/// `tracer.systemd_unit`).
pub fn finding(f: &Finding, at: u64, observed: u64) -> LogRecord {
    let mut a = Attrs::default();
    for (name, value) in f.fields.fields() {
        let key = match *name {
            "SYSLOG_IDENTIFIER" => continue,
            "MESSAGE_ID" => "tracer.message_id".to_owned(),
            "OBJECT_SYSTEMD_UNIT" => "tracer.systemd_unit".to_owned(),
            "OBJECT_SYSTEMD_USER_UNIT" => "tracer.systemd_user_unit".to_owned(),
            "OBJECT_UID" => "tracer.systemd_user_uid".to_owned(),
            n => match n.strip_prefix("TRACER_") {
                Some(rest) => format!("tracer.{}", rest.to_ascii_lowercase()),
                None => format!("tracer.{}", n.to_ascii_lowercase()),
            },
        };
        a.str(&key, &String::from_utf8_lossy(value));
    }
    // syslog priorities: 3 err, 4 warning, else notice and info.
    let (severity_number, severity_text) = match f.priority {
        0..=3 => (SEVERITY_ERROR, "ERROR"),
        4 => (SEVERITY_WARN, "WARN"),
        _ => (SEVERITY_INFO, "INFO"),
    };
    LogRecord {
        time_unix_nano: at,
        observed_time_unix_nano: observed,
        severity_number,
        severity_text: severity_text.into(),
        body: Some(text(&printable(&f.message))),
        attributes: a.0,
        dropped_attributes_count: 0,
        event_name: format!("tracer.finding.{}", f.kind.name()),
    }
}
