//! Events as `tracer events` prints them: `-o short` (columns), `-o cat` (the detail
//! alone) and `-o json` (JSON lines through serde; the daemon's stream writes the same
//! lines faster with [`crate::sink::stream::json`]).

use std::io::{self, Write};

use serde::Serialize;

use super::term::printable;
use crate::{
    clock::{BootClock, local_time_of_day, rfc3339_utc},
    event::{Event, EventKind},
};

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Output {
    Short,
    Json,
    Cat,
}

/// The column header of the text output.
pub const TEXT_HEADER: &str = "TIME            KIND          PID     PPID    COMM             CGROUP                           DETAIL";

/// Writes one line of text output.
pub fn write_text(
    out: &mut impl Write,
    ev: &Event,
    clock: &BootClock,
    cgroup: Option<&str>,
) -> io::Result<()> {
    write_short(out, ev, clock, cgroup, false)
}

/// Writes one event as `-o short` (columns) or `-o cat` (the detail alone).
fn write_short(
    out: &mut impl Write,
    ev: &Event,
    clock: &BootClock,
    cgroup: Option<&str>,
    cat: bool,
) -> io::Result<()> {
    let time = local_time_of_day(clock.wall(ev.ts_ns));
    let unknown;
    let cgroup = match cgroup {
        Some(c) => c,
        None => {
            unknown = format!("cgroup:{}", ev.cgroup_id);
            &unknown
        }
    };
    let (pid, ppid, cgroup, detail): (u32, Option<u32>, &str, String) = match &ev.kind {
        EventKind::Exec {
            ppid,
            filename,
            argv,
            filename_truncated,
            argv_truncated,
            ..
        } => {
            let mut d = filename.clone();
            if *filename_truncated {
                d.push('…');
            }
            if !argv.is_empty() {
                d.push_str("  ");
                d.push_str(&shell_words(argv));
                if *argv_truncated {
                    d.push('…');
                }
            }
            (ev.tgid, Some(*ppid), cgroup, d)
        }
        EventKind::ExecFailed {
            ppid,
            errno,
            filename,
            ..
        } => (ev.tgid, Some(*ppid), cgroup, format!("{errno}  {filename}")),
        EventKind::Exit {
            ppid,
            status,
            age_ns,
        } => {
            let mut d = status.to_string();
            // As exitsnoop's AGE: seconds from fork to exit (absent from old recordings).
            if let Some(age) = age_ns {
                d.push_str(&format!("  age {:.3}s", *age as f64 / 1e9));
            }
            (ev.tgid, Some(*ppid), cgroup, d)
        }
        EventKind::Fork { child_pid } => (*child_pid, Some(ev.tgid), cgroup, "new process".into()),
        EventKind::CgroupMkdir { cgroup: c } => {
            (ev.tgid, None, c.path.as_str(), format!("mkdir id={}", c.id))
        }
        EventKind::CgroupRmdir { cgroup: c } => {
            (ev.tgid, None, c.path.as_str(), format!("rmdir id={}", c.id))
        }
        EventKind::CgroupAttach {
            cgroup: c,
            target_pid,
        } => (
            ev.tgid,
            None,
            c.path.as_str(),
            format!("attach pid {target_pid} id={}", c.id),
        ),
        EventKind::Signal {
            target_pid, signal, ..
        } => (
            *target_pid,
            None,
            cgroup,
            format!("{signal} sent by {} ({})", ev.tgid, ev.comm),
        ),
        EventKind::OomKill { victim_pid } => (
            *victim_pid,
            None,
            cgroup,
            "chosen by the OOM killer".to_owned(),
        ),
        EventKind::AccessFailed {
            ppid,
            errno,
            syscall,
            path,
            fd,
            file,
            ..
        } => {
            let target = match fd {
                Some(fd) if path.is_empty() => format!("fd {fd}"),
                _ => path.clone(),
            };
            let mut d = format!("{errno}  {}({target}, X_OK)", syscall.name());
            if let Some(f) = file {
                d.push_str(&format!(
                    ": {} mode {:04o} {}:{}",
                    f.file_name,
                    f.perm(),
                    f.file_uid,
                    f.file_gid
                ));
                if f.noexec {
                    d.push_str(" on a noexec mount");
                }
            }
            (ev.tgid, Some(*ppid), cgroup, d)
        }
    };
    let detail = printable(&detail);
    if cat {
        return writeln!(out, "{detail}");
    }
    let ppid = ppid.map_or_else(|| "-".to_owned(), |p| p.to_string());
    writeln!(
        out,
        "{time:<15} {kind:<13} {pid:<7} {ppid:<7} {comm:<16} {cgroup:<32} {detail}",
        kind = ev.kind_name(),
        comm = printable(&ev.comm),
        cgroup = printable(cgroup),
    )
}

/// Writes one event in the chosen format.
pub fn write_event(
    out: &mut impl Write,
    ev: &Event,
    clock: &BootClock,
    cgroup: Option<&str>,
    output: Output,
) -> io::Result<()> {
    match output {
        Output::Json => write_json(out, ev, clock, cgroup),
        Output::Short => write_short(out, ev, clock, cgroup, false),
        Output::Cat => write_short(out, ev, clock, cgroup, true),
    }
}

/// Arguments joined with spaces, quoted where a shell would need it.
fn shell_words(argv: &[String]) -> String {
    let quote = |a: &String| {
        if !a.is_empty()
            && a.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_./=:,@%+".contains(&b))
        {
            a.clone()
        } else {
            format!("'{}'", a.replace('\'', r"'\''"))
        }
    };
    argv.iter().map(quote).collect::<Vec<_>>().join(" ")
}

/// One JSON line: the event's fields plus its wall-clock time and resolved cgroup path.
#[derive(Serialize)]
struct JsonLine<'a> {
    time: String,
    #[serde(flatten)]
    event: &'a Event,
    cgroup: Option<&'a str>,
}

/// Writes one event as a JSON line.
pub fn write_json(
    out: &mut impl Write,
    ev: &Event,
    clock: &BootClock,
    cgroup: Option<&str>,
) -> io::Result<()> {
    let line = JsonLine {
        time: rfc3339_utc(clock.wall(ev.ts_ns)),
        event: ev,
        cgroup,
    };
    serde_json::to_writer(&mut *out, &line)?;
    out.write_all(b"\n")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{exec, exit, failed_exec};

    fn text_line(ev: &Event, clock: &BootClock, cgroup: Option<&str>) -> String {
        let mut out = Vec::new();
        write_text(&mut out, ev, clock, cgroup).unwrap();
        String::from_utf8(out)
            .unwrap()
            .trim_end_matches('\n')
            .to_owned()
    }

    fn json_line(ev: &Event, clock: &BootClock, cgroup: Option<&str>) -> String {
        let mut out = Vec::new();
        write_json(&mut out, ev, clock, cgroup).unwrap();
        let line = String::from_utf8(out).unwrap();
        assert_eq!(line.matches('\n').count(), 1, "one line: {line}");
        line
    }

    #[test]
    fn text_lines_say_what_happened() {
        let clock = BootClock::new();
        let line = text_line(&exec(), &clock, Some("/system.slice/mylog.service"));
        assert!(line.contains(" exec "), "{line}");
        assert!(line.contains("/system.slice/mylog.service"), "{line}");
        assert!(
            line.ends_with("/usr/local/bin/mylog.sh  /bin/sh /usr/local/bin/mylog.sh 'a b'"),
            "{line}"
        );
        let line = text_line(&failed_exec(), &clock, None);
        assert!(
            line.ends_with("EACCES (Permission denied)  /usr/local/bin/mylog.sh"),
            "{line}"
        );
        assert!(line.contains("cgroup:5"), "{line}");
        assert!(
            text_line(&exit(3 << 8), &clock, None).ends_with("exit 3"),
            "an exit from a recording without its age says none"
        );
        let mut aged = exit(9);
        if let EventKind::Exit { age_ns, .. } = &mut aged.kind {
            *age_ns = Some(302_500_000);
        }
        let line = text_line(&aged, &clock, None);
        assert!(line.ends_with("killed by SIGKILL  age 0.302s"), "{line}");
        assert_eq!(
            serde_json::from_str::<serde_json::Value>(&json_line(&aged, &clock, None)).unwrap()["age_ns"],
            302_500_000
        );
        assert!(text_line(&exit(9), &clock, None).ends_with("killed by SIGKILL"));
        assert!(
            text_line(&exit(11 | 0x80), &clock, None).ends_with("killed by SIGSEGV (core dumped)")
        );
    }

    #[test]
    fn json_lines_carry_time_and_cgroup() {
        let clock = BootClock::new();
        let v: serde_json::Value =
            serde_json::from_str(&json_line(&failed_exec(), &clock, Some("/a.slice"))).unwrap();
        assert_eq!(v["kind"], "exec-failed");
        assert_eq!(v["error"], "EACCES");
        assert_eq!(v["cgroup"], "/a.slice");
        assert_eq!(v["pid"], 100);
        assert!(v["time"].as_str().unwrap().ends_with('Z'));
    }

    /// comm, argv, filenames and cgroup paths are anyone's to choose: their control
    /// characters reach the terminal escaped, one event one line.
    #[test]
    fn recorded_strings_cannot_drive_the_terminal() {
        let mut ev = exec();
        ev.comm = "x\x1b]0;owned\x07".into();
        if let EventKind::Exec { filename, argv, .. } = &mut ev.kind {
            *filename = "/tmp/\x1b[2Jrun".into();
            argv.push("a\nforged line".into());
        }
        let clock = BootClock::new();
        for output in [Output::Short, Output::Cat] {
            let mut out = Vec::new();
            write_event(&mut out, &ev, &clock, Some("/evil\x1b[1A.scope"), output).unwrap();
            let line = String::from_utf8(out).unwrap();
            assert!(!line.contains('\x1b') && !line.contains('\x07'), "{line:?}");
            assert_eq!(line.matches('\n').count(), 1, "{line:?}");
            assert!(line.contains("\\x1b[2Jrun"), "{line}");
        }
        // JSON keeps the strings as they are (its encoder escapes them).
        let v: serde_json::Value = serde_json::from_str(&json_line(&ev, &clock, None)).unwrap();
        assert_eq!(v["comm"], "x\x1b]0;owned\x07");
    }

    #[test]
    fn cat_output_is_the_detail_alone() {
        let mut out = Vec::new();
        write_event(
            &mut out,
            &failed_exec(),
            &BootClock::new(),
            None,
            Output::Cat,
        )
        .unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "EACCES (Permission denied)  /usr/local/bin/mylog.sh\n"
        );
    }
}
