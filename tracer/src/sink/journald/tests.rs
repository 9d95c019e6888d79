//! The journal's wire format, the rate, and entries made from a model, sent to a real
//! datagram socket standing in for journald.

use std::{
    os::unix::net::UnixDatagram,
    path::PathBuf,
    time::{Duration, Instant},
};

use super::{wire::Entry, *};
use crate::{
    event::{CgroupRef, Errno, EventKind, WaitStatus},
    model::{
        ModelConfig,
        facts::{FileInfo, RecordedFacts, parse_unit_file},
    },
    testing::Fed,
};

fn field<'a>(fields: &'a [(String, Vec<u8>)], name: &str) -> Vec<&'a str> {
    fields
        .iter()
        .filter(|(n, _)| n == name)
        .map(|(_, v)| std::str::from_utf8(v).unwrap())
        .collect()
}

#[test]
fn plain_values_are_key_equals_value_lines() {
    let mut e = Entry::default();
    e.add("MESSAGE", "hello").add("PRIORITY", "3");
    assert_eq!(e.encode(), b"MESSAGE=hello\nPRIORITY=3\n");
}

#[test]
fn a_value_with_a_newline_takes_the_length_prefixed_form() {
    let mut e = Entry::default();
    e.add("TRACER_PATH", "/a\nMESSAGE_ID=forged")
        .add("PRIORITY", "3");
    let mut expected = b"TRACER_PATH\n".to_vec();
    expected.extend_from_slice(&20u64.to_le_bytes());
    expected.extend_from_slice(b"/a\nMESSAGE_ID=forged\n");
    expected.extend_from_slice(b"PRIORITY=3\n");
    assert_eq!(e.encode(), expected);
    // Read back as journald reads it: two fields, no forged one.
    let fields = wire::parse(&e.encode()).unwrap();
    assert_eq!(fields.len(), 2);
    assert_eq!(field(&fields, "TRACER_PATH"), ["/a\nMESSAGE_ID=forged"]);
    assert!(field(&fields, "MESSAGE_ID").is_empty());
    // A NUL is binary too; an empty value is plain.
    let mut e = Entry::default();
    e.add("TRACER_COMM", b"a\0b").add("TRACER_FIX", "");
    let mut expected = b"TRACER_COMM\n".to_vec();
    expected.extend_from_slice(&3u64.to_le_bytes());
    expected.extend_from_slice(b"a\0b\nTRACER_FIX=\n");
    assert_eq!(e.encode(), expected);
}

#[test]
fn only_names_journald_takes_from_a_client() {
    for ok in ["MESSAGE", "TRACER_ERRNO", "OBJECT_SYSTEMD_UNIT", "A1"] {
        assert!(wire::valid_name(ok), "{ok}");
    }
    for bad in ["", "_PID", "1A", "message", "A-B", "A=B", &"A".repeat(65)] {
        assert!(!wire::valid_name(bad), "{bad}");
    }
    for (_, name) in CAUSE_FIELDS {
        assert!(wire::valid_name(name), "{name}");
    }
}

#[test]
fn cut_or_broken_datagrams_are_errors() {
    assert!(wire::parse(b"MESSAGE").is_err());
    let mut short = b"A\n".to_vec();
    short.extend_from_slice(&10u64.to_le_bytes());
    short.extend_from_slice(b"abc\n");
    assert_eq!(wire::parse(&short), Err(wire::ParseError::Truncated(0)));
}

fn cfg(burst: u32, refill_secs: f64) -> JournaldConfig {
    JournaldConfig {
        burst,
        refill_secs,
        // Nothing listens there: sends are counted as unavailable.
        socket: "/nonexistent/tracer-test/socket".into(),
        ..JournaldConfig::default()
    }
}

fn finding(unit: &str) -> Finding {
    Finding {
        unit: unit.into(),
        kind: Kind::Failure,
        priority: LOG_ERR,
        message: format!("{unit}: failed"),
        fields: Entry::default(),
    }
}

#[test]
fn findings_made_for_otlp_alone_are_not_journaled() {
    let off = JournaldConfig {
        enabled: false,
        ..cfg(3, 10.0)
    };
    assert!(Findings::new(&off, "b00", 60.0).is_none());
    let mut f = Findings::unjournaled(&cfg(3, 10.0), "b00", 60.0);
    f.emit(finding("flaky.service"), Instant::now());
    assert_eq!(f.counts, Counts::default(), "nothing sent, nothing counted");
}

#[test]
fn a_unit_gets_its_burst_then_its_rate_and_others_are_not_held_back() {
    let mut f = Findings::new(&cfg(3, 10.0), "b00", 60.0).unwrap();
    let t = Instant::now();
    for _ in 0..10 {
        f.emit(finding("flaky.service"), t);
    }
    assert_eq!(f.counts.rate_limited, 7);
    // Nothing listens: the three let through are counted as unavailable, once each.
    assert_eq!(f.counts.unavailable, 3);
    f.emit(finding("other.service"), t);
    assert_eq!(f.counts.unavailable, 4, "another unit has its own bucket");
    // One more every 10 s; what was held back is said with it.
    assert_eq!(f.admit("flaky.service", t + Duration::from_secs(5)), None);
    assert_eq!(
        f.admit("flaky.service", t + Duration::from_secs(11)),
        Some(8)
    );
    assert_eq!(f.admit("flaky.service", t + Duration::from_secs(11)), None);
    assert_eq!(
        f.admit("flaky.service", t + Duration::from_secs(22)),
        Some(1)
    );
    assert!(
        Findings::new(
            &JournaldConfig {
                enabled: false,
                ..cfg(1, 1.0)
            },
            "b",
            60.0
        )
        .is_none()
    );
}

#[test]
fn the_table_of_rates_is_bounded() {
    let mut f = Findings::new(&cfg(1, 3600.0), "b00", 60.0).unwrap();
    let t = Instant::now();
    for i in 0..3 * UNITS {
        f.admit(
            &format!("u{i}.service"),
            t + Duration::from_millis(i as u64),
        );
    }
    assert_eq!(f.rates.len(), UNITS);
    assert!(f.rates.contains_key(&format!("u{}.service", 3 * UNITS - 1)));
    assert!(!f.rates.contains_key("u0.service"), "the longest idle goes");
}

use crate::testing::event_at as ev;

fn cgroup(id: u64, path: &str) -> CgroupRef {
    CgroupRef {
        id,
        level: 2,
        path: path.into(),
        path_truncated: false,
    }
}

/// a.service whose ExecStart= (`program`, mode 0644) the kernel refuses, `runs` times in
/// a row; the model's changes.
fn refused(program: &str, runs: u64) -> (Fed<RecordedFacts>, Vec<Change>) {
    let mut facts = RecordedFacts::default();
    facts.units.insert(
        "a.service".into(),
        parse_unit_file(
            "/etc/systemd/system/a.service",
            &[format!(
                "[Service]\nExecStart={program}\nRestart=on-failure\n"
            )],
        ),
    );
    facts.files.insert(
        program.into(),
        FileInfo {
            mode: 0o644,
            uid: 0,
            gid: 0,
            is_dir: false,
            noexec_mount: None,
            interpreter: None,
            acl: None,
            dirs: Vec::new(),
        },
    );
    facts.user_names.insert(0, "root".into());
    facts.group_names.insert(0, "root".into());
    let mut m = Fed::new(Model::new(facts, ModelConfig::default()));
    m.announce_changes();
    m.know_cgroup(1, "/init.scope");
    let mut changes = Vec::new();
    for i in 0..runs {
        let (t, id, pid) = (i * 1_000_000_000, 100 + i, 500 + i as u32);
        let cg = cgroup(id, "/system.slice/a.service");
        m.apply(&ev(
            t,
            1,
            1,
            "systemd",
            EventKind::CgroupMkdir { cgroup: cg.clone() },
        ));
        m.apply(&ev(
            t + 1_000_000,
            1,
            1,
            "systemd",
            EventKind::Fork { child_pid: pid },
        ));
        m.apply(&ev(
            t + 2_000_000,
            pid,
            id,
            "(a)",
            EventKind::ExecFailed {
                ppid: 1,
                uid: 0,
                errno: Errno(libc::EACCES),
                filename: program.into(),
                filename_truncated: false,
            },
        ));
        m.apply(&ev(
            t + 3_000_000,
            pid,
            id,
            "(a)",
            EventKind::Exit {
                age_ns: None,
                ppid: 1,
                status: WaitStatus(203 << 8),
            },
        ));
        m.apply(&ev(
            t + 4_000_000,
            1,
            1,
            "systemd",
            EventKind::CgroupRmdir { cgroup: cg },
        ));
        changes.extend(m.take_changes());
    }
    (m, changes)
}

/// A datagram socket in a temporary directory, standing in for journald's.
struct FakeJournal {
    socket: UnixDatagram,
    dir: PathBuf,
}

impl FakeJournal {
    fn new(name: &str) -> Self {
        let dir =
            std::env::temp_dir().join(format!("tracer-journald-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let socket = UnixDatagram::bind(dir.join("socket")).unwrap();
        socket
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        Self { socket, dir }
    }

    fn cfg(&self) -> JournaldConfig {
        JournaldConfig {
            socket: self.dir.join("socket"),
            ..JournaldConfig::default()
        }
    }

    fn receive(&self) -> Vec<(String, Vec<u8>)> {
        wire::parse(&wire::receive(&self.socket).unwrap()).unwrap()
    }

    /// The next entry, if one is waiting.
    fn try_receive(&self) -> Option<Vec<(String, Vec<u8>)>> {
        self.socket.set_nonblocking(true).unwrap();
        let got = wire::receive(&self.socket);
        self.socket.set_nonblocking(false).unwrap();
        got.ok().map(|d| wire::parse(&d).unwrap())
    }
}

impl Drop for FakeJournal {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Everything the findings sink does with the changes, as the daemon does it: each
/// change noted as it comes, what is due made an entry and sent; time goes on by
/// [`SETTLE`] between changes.
fn journal_all(f: &mut Findings, m: &Model<RecordedFacts>, changes: &[Change]) {
    let mut t = Instant::now();
    for c in changes {
        f.note(c, t);
        emit_due(f, m, t);
        t += SETTLE;
    }
    emit_due(f, m, t);
}

fn emit_due(f: &mut Findings, m: &Model<RecordedFacts>, t: Instant) {
    for p in f.due(t) {
        if let Some(e) = f.entry(&p, m, None) {
            f.emit(e, t);
        }
    }
}

#[test]
fn a_refused_exec_is_journaled_with_its_cause_fix_and_fields() {
    let journal = FakeJournal::new("refused");
    let (m, changes) = refused("/usr/local/bin/mylog.sh", 1);
    let mut f = Findings::new(&journal.cfg(), "0123456789abcdef0123456789abcdef", 60.0).unwrap();
    // A failure waits for the lookups and systemd's verdict.
    let t = Instant::now();
    for c in &changes {
        f.note(c, t);
    }
    assert!(f.due(t).is_empty());
    assert_eq!(f.due(t + SETTLE).len(), 1);
    journal_all(&mut f, &m, &changes);
    let fields = journal.receive();
    assert_eq!(
        field(&fields, "MESSAGE"),
        [
            "a.service: ExecStart=/usr/local/bin/mylog.sh could not be executed: EACCES (Permission denied) — the file is mode 0644 root:root and not executable; fix: make it executable: chmod +x /usr/local/bin/mylog.sh"
        ]
    );
    for (name, value) in [
        ("PRIORITY", "3"),
        ("MESSAGE_ID", Kind::Failure.message_id()),
        ("SYSLOG_IDENTIFIER", "tracer"),
        ("OBJECT_SYSTEMD_UNIT", "a.service"),
        ("TRACER_KIND", "failure"),
        ("TRACER_UNIT", "a.service"),
        ("TRACER_RUN", "1"),
        ("TRACER_BOOT_ID", "0123456789abcdef0123456789abcdef"),
        ("TRACER_CAUSE", "exec-failed"),
        ("TRACER_COMMAND", "ExecStart"),
        ("TRACER_PATH", "/usr/local/bin/mylog.sh"),
        ("TRACER_ERRNO", "13"),
        ("TRACER_ERROR", "EACCES"),
        ("TRACER_MODE", "0644"),
        ("TRACER_PID", "500"),
        (
            "TRACER_FIX",
            "make it executable: chmod +x /usr/local/bin/mylog.sh",
        ),
    ] {
        assert_eq!(field(&fields, name), [value], "{name}: {fields:?}");
    }
    // The evidence, one line each, in the binary form.
    let evidence = field(&fields, "TRACER_EVIDENCE");
    assert!(
        evidence[0]
            .contains("\nExecStart=/usr/local/bin/mylog.sh (from /etc/systemd/system/a.service)"),
        "{evidence:?}"
    );
    assert!(journal.try_receive().is_none(), "one entry");
    assert_eq!(f.counts.sent, 1);
}

#[test]
fn a_path_with_a_newline_cannot_add_a_field() {
    let journal = FakeJournal::new("hostile");
    let (m, changes) = refused(
        "/tmp/x\nMESSAGE_ID=00000000000000000000000000000000\nPRIORITY=0",
        1,
    );
    let mut f = Findings::new(&journal.cfg(), "b00", 60.0).unwrap();
    journal_all(&mut f, &m, &changes);
    let fields = journal.receive();
    assert_eq!(field(&fields, "MESSAGE_ID"), [Kind::Failure.message_id()]);
    assert_eq!(field(&fields, "PRIORITY"), ["3"]);
    assert_eq!(
        field(&fields, "TRACER_PATH"),
        ["/tmp/x\nMESSAGE_ID=00000000000000000000000000000000\nPRIORITY=0"]
    );
    // The message is for people: its control characters are shown escaped.
    let message = field(&fields, "MESSAGE")[0];
    assert!(
        message.contains("/tmp/x\\x0aMESSAGE_ID=") && !message.contains('\n'),
        "{message}"
    );
}

#[test]
fn a_crash_loop_restarts_and_the_rate_are_journaled_and_counted() {
    let journal = FakeJournal::new("loop");
    let (m, changes) = refused("/usr/bin/a", 8);
    let mut f = Findings::new(&journal.cfg(), "b00", 60.0).unwrap();
    journal_all(&mut f, &m, &changes);
    let mut kinds = Vec::new();
    while let Some(e) = journal.try_receive() {
        kinds.push(field(&e, "TRACER_KIND")[0].to_owned());
    }
    // 8 failures and a crash loop, 7 restarts: of each, the first 5 journaled (restarts
    // have their own rate: they do not crowd out the crash loop).
    assert_eq!(
        kinds,
        [
            "failure",
            "restart",
            "failure",
            "restart",
            "failure",
            "crash-loop",
            "restart",
            "failure",
            "restart",
            "restart"
        ],
        "{kinds:?}"
    );
    assert_eq!(f.counts.sent, 10);
    assert_eq!(f.counts.rate_limited, 6);
    // The restart says after what.
    let (m2, changes2) = refused("/usr/bin/a", 3);
    let roomy = JournaldConfig {
        burst: 10,
        ..journal.cfg()
    };
    let mut f2 = Findings::new(&roomy, "b00", 60.0).unwrap();
    journal_all(&mut f2, &m2, &changes2);
    let all: Vec<_> = std::iter::from_fn(|| journal.try_receive()).collect();
    let restart = all
        .iter()
        .find(|e| field(e, "TRACER_KIND") == ["restart"])
        .unwrap();
    assert_eq!(
        field(restart, "MESSAGE"),
        [
            "a.service: run 2 started: restarted by systemd (Restart=) after run 1 failed: EACCES /usr/bin/a (mode 0644)"
        ]
    );
    assert_eq!(field(restart, "PRIORITY"), ["5"]);
    let crash = all
        .iter()
        .find(|e| field(e, "TRACER_KIND") == ["crash-loop"])
        .unwrap();
    assert_eq!(field(crash, "MESSAGE_ID"), [Kind::CrashLoop.message_id()]);
    assert!(
        field(crash, "MESSAGE")[0].starts_with("a.service: in a crash loop: 3 failed runs"),
        "{crash:?}"
    );
    assert_eq!(field(crash, "TRACER_FAILED_RUNS"), ["3"]);
}

#[test]
fn an_entry_too_large_for_a_datagram_goes_in_a_sealed_memfd() {
    let journal = FakeJournal::new("memfd");
    let w = wire::Writer::new(&journal.dir.join("socket")).unwrap();
    let big = "x".repeat(12 << 20);
    let mut e = Entry::default();
    e.add("MESSAGE", "large").add("TRACER_EVIDENCE", &big);
    w.send(&e).unwrap();
    let fields = journal.receive();
    assert_eq!(field(&fields, "MESSAGE"), ["large"]);
    assert_eq!(field(&fields, "TRACER_EVIDENCE")[0].len(), 12 << 20);
}

#[test]
fn a_missing_journal_is_counted_and_said_once_never_an_error() {
    let mut f = Findings::new(&cfg(100, 1.0), "b00", 60.0).unwrap();
    let t = Instant::now();
    for i in 0..3 {
        f.emit(finding(&format!("u{i}.service")), t);
    }
    assert_eq!(f.counts.unavailable, 3);
    assert_eq!(f.counts.sent, 0);
    assert!(f.said_unavailable);
}

#[test]
fn the_catalog_explains_every_kind_once() {
    let catalog = include_str!("../../../dist/tracer.catalog");
    for kind in Kind::ALL {
        let header = format!("-- {}\n", kind.message_id());
        assert_eq!(catalog.matches(&header).count(), 1, "{kind:?}");
        let entry = &catalog[catalog.find(&header).unwrap() + header.len()..];
        assert!(entry.starts_with("Subject: "), "{kind:?}");
        assert!(entry.contains("\nDefined-By: tracer\n"), "{kind:?}");
    }
    assert_eq!(catalog.matches("\n-- ").count(), Kind::ALL.len());
    // Ids are 128 bits, as journald takes them.
    for kind in Kind::ALL {
        let id = kind.message_id();
        assert!(
            id.len() == 32
                && id
                    .bytes()
                    .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
        );
    }
}

#[test]
fn what_the_rate_held_back_is_said_in_the_next_entry() {
    let journal = FakeJournal::new("suppressed");
    let mut f = Findings::new(
        &JournaldConfig {
            burst: 1,
            refill_secs: 10.0,
            ..journal.cfg()
        },
        "b00",
        60.0,
    )
    .unwrap();
    let t = Instant::now();
    for _ in 0..4 {
        f.emit(finding("flaky.service"), t);
    }
    f.emit(finding("flaky.service"), t + Duration::from_secs(10));
    let first = journal.receive();
    assert!(field(&first, "TRACER_SUPPRESSED").is_empty());
    let next = journal.receive();
    assert_eq!(field(&next, "TRACER_SUPPRESSED"), ["3"]);
    assert_eq!(
        field(&next, "MESSAGE"),
        [
            "flaky.service: failed (3 earlier findings of this unit were not journaled: more than 1 at once, then one per 10 s)"
        ]
    );
    assert!(journal.try_receive().is_none());
    assert_eq!((f.counts.sent, f.counts.rate_limited), (2, 3));
}
