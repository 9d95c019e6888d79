//! Writing and reading back whole boots, damage, restarts, the cap.

use std::{
    fs,
    path::{Path, PathBuf},
    sync::{Arc, Mutex},
    time::Duration,
};

use super::*;
use crate::{decode::encode, event::EventKind};

fn tmp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("tracer-journal-{}-{name}", std::process::id()));
    let _ = fs::remove_dir_all(&d);
    fs::create_dir_all(&d).unwrap();
    d
}

fn event(i: u32) -> Event {
    Event {
        ts_ns: u64::from(i) * 1000,
        pid: i,
        tgid: i,
        cgroup_id: 7,
        comm: format!("p{i}"),
        kind: EventKind::Fork { child_pid: i + 1 },
    }
}

fn write_boot(root: &Path, boot: &str, n: u32, limits: JournalLimits) {
    let mut w = Writer::open(root, boot, limits).unwrap();
    w.append_cgroup(7, "/system.slice/a.service").unwrap();
    for i in 0..n {
        w.append_record(&encode(&event(i))).unwrap();
    }
    w.sync().unwrap();
}

fn events_of(root: &Path, boot: &str) -> (Vec<Event>, Vec<Damage>) {
    let b = find_boot(root, boot).unwrap();
    let mut evs = Vec::new();
    let damage = read_boot(&b, |i| {
        if let Item::Event(e) = i {
            evs.push(e)
        }
    })
    .unwrap();
    (evs, damage)
}

#[test]
fn writes_and_reads_back_a_boot() {
    let root = tmp("roundtrip");
    write_boot(&root, "b1", 100, JournalLimits::default());
    let (evs, damage) = events_of(&root, "b1");
    assert!(damage.is_empty());
    assert_eq!(evs, (0..100).map(event).collect::<Vec<_>>());
    let b = find_boot(&root, "0").unwrap();
    assert_eq!(b.boot_id, "b1");
    assert!(matches!(
        find_boot(&root, "-1"),
        Err(JournalError::NoSuchBoot(_))
    ));
    fs::remove_dir_all(root).unwrap();
}

#[test]
fn flipped_bytes_and_a_torn_tail_lose_only_what_they_hit() {
    let root = tmp("damage");
    write_boot(&root, "b1", 200, JournalLimits::default());
    let seg = segments_of(&root.join("b1")).unwrap().remove(0);
    let mut data = fs::read(&seg).unwrap();
    // Flip bytes in the middle of some record, and cut the last one in half.
    let mid = data.len() / 2;
    data[mid] ^= 0xff;
    data[mid + 1] ^= 0x55;
    data.truncate(data.len() - 20);
    fs::write(&seg, &data).unwrap();
    let (evs, damage) = events_of(&root, "b1");
    assert_eq!(damage.len(), 2, "{damage:?}");
    assert!(damage[0].offset > 0);
    assert!(damage[1].what.contains("tail"), "{}", damage[1]);
    // One or two records lost to the flipped bytes, one to the cut; order is kept.
    assert!((196..=198).contains(&evs.len()), "{}", evs.len());
    assert!(evs.windows(2).all(|w| w[0].pid < w[1].pid));
    assert_eq!(evs[0], event(0));
    fs::remove_dir_all(root).unwrap();
}

#[test]
fn a_restarted_daemon_continues_the_boot_in_a_new_segment() {
    let root = tmp("continue");
    write_boot(&root, "b1", 10, JournalLimits::default());
    write_boot(&root, "b1", 10, JournalLimits::default());
    let b = find_boot(&root, "b1").unwrap();
    assert_eq!(b.segments, 2);
    assert_eq!(events_of(&root, "b1").0.len(), 20);
    fs::remove_dir_all(root).unwrap();
}

#[test]
fn segments_rotate_and_the_cap_removes_the_oldest_boot_first() {
    let root = tmp("cap");
    let limits = JournalLimits {
        max_bytes: 40_000,
        segment_bytes: 8_000,
        flush_interval_ms: 0,
    };
    // 1000 records of 65 bytes: each boot alone is over the cap.
    write_boot(&root, "old", 1000, limits.clone());
    std::thread::sleep(Duration::from_millis(5));
    write_boot(&root, "new", 1000, limits.clone());
    let boots = list_boots(&root).unwrap();
    let total: u64 = boots.iter().map(|b| b.bytes).sum();
    assert!(total <= limits.max_bytes + limits.segment_bytes, "{total}");
    assert_eq!(boots.last().unwrap().boot_id, "new");
    assert!(
        boots.iter().all(|b| b.boot_id != "old"),
        "the oldest boot went first"
    );
    let (evs, damage) = events_of(&root, "new");
    assert!(damage.is_empty());
    assert!(
        !evs.is_empty() && evs.len() < 1000,
        "oldest segments of the boot dropped: {}",
        evs.len()
    );
    fs::remove_dir_all(root).unwrap();
}

#[test]
fn not_a_journal_is_a_clear_error() {
    let root = tmp("bad");
    fs::create_dir_all(root.join("b1")).unwrap();
    fs::write(
        root.join("b1").join(segment_name(1)),
        b"hello, this is not it at all!!!!!!",
    )
    .unwrap();
    let b = find_boot(&root, "b1").unwrap();
    assert!(matches!(
        read_boot(&b, |_| {}),
        Err(JournalError::NotAJournal { .. })
    ));
    fs::remove_dir_all(root).unwrap();
}

/// What a rotation on a full disk leaves (a 0-byte segment) and a segment of a format
/// version this tracer does not know are damage: the rest of the boot is still read.
#[test]
fn a_bad_segment_is_skipped_as_damage() {
    let root = tmp("badseg");
    let limits = JournalLimits {
        segment_bytes: 2_000,
        ..JournalLimits::default()
    };
    write_boot(&root, "b1", 400, limits);
    let segs = segments_of(&root.join("b1")).unwrap();
    assert!(segs.len() >= 4, "{} segments", segs.len());
    let all = events_of(&root, "b1").0;
    let in_segment = |seg: &Path| {
        let mut n = 0;
        read_segment(
            seg,
            |i| n += usize::from(matches!(i, Item::Event(_))),
            &mut Vec::new(),
        )
        .unwrap();
        n
    };
    let lost = in_segment(&segs[1]) + in_segment(&segs[2]);
    fs::write(&segs[1], b"").unwrap();
    let mut future = fs::read(&segs[2]).unwrap();
    future[8..12].copy_from_slice(&99u32.to_le_bytes());
    fs::write(&segs[2], future).unwrap();

    let (evs, damage) = events_of(&root, "b1");
    assert_eq!(evs.len(), all.len() - lost);
    assert_eq!(evs.first(), all.first());
    assert_eq!(evs.last(), all.last());
    assert_eq!(damage.len(), 2, "{damage:?}");
    assert_eq!(damage[0].segment, segs[1]);
    assert_eq!(damage[1].segment, segs[2]);
    assert!(damage[1].what.contains("99"), "{}", damage[1]);
    assert_eq!(list_boots(&root).unwrap().len(), 1);
    fs::remove_dir_all(root).unwrap();
}

/// Every user's command lines are in the journal: only root may read it, whatever the
/// umask, and a journal written with looser modes is tightened when the daemon opens it.
#[test]
fn the_journal_is_root_s_alone() {
    use std::os::unix::fs::PermissionsExt;
    let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o777;
    let root = tmp("modes");
    fs::create_dir_all(root.join("old")).unwrap();
    fs::write(root.join("old").join(segment_name(1)), b"x").unwrap();
    for (p, m) in [
        (root.clone(), 0o755),
        (root.join("old"), 0o755),
        (root.join("old").join(segment_name(1)), 0o644),
    ] {
        fs::set_permissions(p, fs::Permissions::from_mode(m)).unwrap();
    }
    write_boot(&root, "b1", 3, JournalLimits::default());
    assert_eq!(mode(&root), 0o700);
    assert_eq!(mode(&root.join("b1")), 0o700);
    for seg in segments_of(&root.join("b1")).unwrap() {
        assert_eq!(mode(&seg), 0o600, "{}", seg.display());
    }
    assert_eq!(mode(&root.join("old")), 0o700);
    assert_eq!(mode(&root.join("old").join(segment_name(1))), 0o600);
    fs::remove_dir_all(root).unwrap();
}

/// What the tracing macros say while the returned guard lives (this thread only).
fn capture_logs() -> (Arc<Mutex<Vec<u8>>>, tracing::subscriber::DefaultGuard) {
    #[derive(Clone)]
    struct Buf(Arc<Mutex<Vec<u8>>>);
    impl io::Write for Buf {
        fn write(&mut self, b: &[u8]) -> io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }
    let buf = Buf(Default::default());
    let logs = buf.0.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_ansi(false)
        .with_max_level(tracing::Level::INFO)
        .with_writer(move || buf.clone())
        .finish();
    (logs, tracing::subscriber::set_default(subscriber))
}

fn lines_with(logs: &Mutex<Vec<u8>>, what: &str) -> Vec<String> {
    String::from_utf8_lossy(&logs.lock().unwrap())
        .lines()
        .filter(|l| l.contains(what))
        .map(str::to_owned)
        .collect()
}

/// Puts directories where the segments `from..from + n` of `dir` would go: names a
/// writer cannot take (and that root, too, cannot open as files).
fn block_names(dir: &Path, from: u64, n: u64) {
    for i in from..from + n {
        fs::create_dir_all(dir.join(segment_name(i))).unwrap();
    }
}

fn unblock_names(dir: &Path, from: u64, n: u64) {
    for i in from..from + n {
        fs::remove_dir(dir.join(segment_name(i))).unwrap();
    }
}

/// A failing operation is counted under its name, for `tracer_journal_errors_total{op}`;
/// it is said once when it starts failing and once when it works again, not per frame.
#[test]
fn failures_are_counted_by_operation_and_said_once_per_burst() {
    let root = tmp("counted");
    let limits = JournalLimits {
        segment_bytes: 2_000,
        ..JournalLimits::default()
    };
    let (logs, _guard) = capture_logs();
    let (clock, advance) = test_clock();
    let mut w = Writer::open_with_clock(&root, "b1", limits, clock).unwrap();
    assert_eq!(w.errors(), JournalErrors::default());
    assert!(w.errors().by_op().iter().all(|&(_, n)| n == 0));
    let dir = root.join("b1");
    block_names(&dir, 2, writer::NAME_TRIES);
    for from in (0..200).step_by(20) {
        append(&mut w, from, 20);
        advance(writer::MAX_RETRY);
    }
    let errors = w.errors();
    assert!(
        errors.rotate > 1 && errors.dropped > errors.rotate,
        "{errors:?}"
    );
    let by_op = errors.by_op();
    for (op, n) in [("rotate", errors.rotate), ("dropped", errors.dropped)] {
        assert!(by_op.contains(&(op, n)), "{by_op:?}");
        let warned = lines_with(&logs, &format!("op=\"{op}\""));
        assert_eq!(warned.len(), 1, "{warned:?}");
        assert!(warned[0].contains("WARN"), "{}", warned[0]);
    }
    unblock_names(&dir, 2, writer::NAME_TRIES);
    advance(writer::MAX_RETRY);
    assert_eq!(append(&mut w, 200, 100), 100);
    assert_eq!(w.errors(), errors, "no failure once the names are free");
    for op in ["rotate", "dropped"] {
        let recovered = lines_with(&logs, &format!("{op} works again"));
        assert_eq!(recovered.len(), 1, "{recovered:?}");
    }
    fs::remove_dir_all(root).unwrap();
}

/// A clock for [`Writer::open_with_clock`] that moves only when told to.
fn test_clock() -> (writer::Clock, impl Fn(Duration)) {
    let start = std::time::Instant::now();
    let offset = Arc::new(Mutex::new(Duration::ZERO));
    let now = offset.clone();
    (Box::new(move || start + *now.lock().unwrap()), move |by| {
        *offset.lock().unwrap() += by
    })
}

/// The records `from..from + n` appended; how many the writer took.
fn append(w: &mut Writer, from: u32, n: u32) -> u64 {
    (from..from + n)
        .filter(|&i| w.append_record(&encode(&event(i))).is_ok())
        .count() as u64
}

/// What is on disk holds the limits: every segment file within `segment_bytes`, all boots
/// together within `max_bytes`.
fn assert_within(root: &Path, limits: &JournalLimits) {
    let mut total = 0;
    for b in list_boots(root).unwrap() {
        for seg in segments_of(&b.dir).unwrap() {
            let meta = fs::metadata(&seg).unwrap();
            if meta.is_file() {
                assert!(
                    meta.len() <= limits.segment_bytes,
                    "{} is {} bytes, past segment_bytes {}",
                    seg.display(),
                    meta.len(),
                    limits.segment_bytes
                );
                total += meta.len();
            }
        }
    }
    assert!(
        total <= limits.max_bytes,
        "the journal is {total} bytes, past max_bytes {}",
        limits.max_bytes
    );
}

/// A name someone else took (a file or directory the writer did not make) is passed
/// over: the journal goes on in the next free one.
#[test]
fn a_taken_segment_name_is_passed_over() {
    let root = tmp("taken");
    let limits = JournalLimits {
        segment_bytes: 2_000,
        ..JournalLimits::default()
    };
    let mut w = Writer::open(&root, "b1", limits.clone()).unwrap();
    let dir = root.join("b1");
    block_names(&dir, 2, 1);
    // 40 records of 65 bytes: one rotation.
    assert_eq!(append(&mut w, 0, 40), 40, "{:?}", w.errors());
    w.flush().unwrap();
    assert!(dir.join(segment_name(3)).is_file());
    assert_eq!(w.errors(), JournalErrors::default());
    assert_within(&root, &limits);
    let (evs, _) = events_of(&root, "b1");
    assert_eq!(evs, (0..40).map(event).collect::<Vec<_>>());
    fs::remove_dir_all(root).unwrap();
}

/// A rotation that fails (every name the writer would try taken here; a full disk, a
/// read-only file system in life) is tried again after a while, not at every frame: till
/// then what does not fit the open segment is dropped and counted, so no segment passes
/// `segment_bytes` and the journal stays within `max_bytes` all along.
#[test]
fn a_failed_rotation_backs_off_and_the_limits_hold() {
    let root = tmp("backoff");
    let limits = JournalLimits {
        max_bytes: 12_000,
        segment_bytes: 2_000,
        flush_interval_ms: 0,
    };
    write_boot(&root, "old", 50, limits.clone());
    let (clock, advance) = test_clock();
    let mut w = Writer::open_with_clock(&root, "b1", limits.clone(), clock).unwrap();
    let dir = root.join("b1");
    block_names(&dir, 2, writer::NAME_TRIES);

    let took = append(&mut w, 0, 200);
    assert!(took < 40, "{took}");
    assert_eq!(w.errors().rotate, 1, "one try, not one per frame");
    assert_eq!(w.errors().dropped, 200 - took);
    w.flush().unwrap();
    assert_within(&root, &limits);

    // Time for another try, which fails too; then the writer waits longer.
    advance(writer::FIRST_RETRY);
    assert_eq!(append(&mut w, 200, 10), 0);
    assert_eq!(w.errors().rotate, 2);
    unblock_names(&dir, 2, writer::NAME_TRIES);
    advance(writer::FIRST_RETRY);
    assert_eq!(append(&mut w, 210, 10), 0, "still waiting");
    assert_eq!(w.errors().rotate, 2);
    advance(writer::FIRST_RETRY);

    // The names free and the wait over: the journal goes on, within its cap.
    assert_eq!(append(&mut w, 220, 300), 300);
    assert_eq!(w.errors().rotate, 2);
    assert_eq!(w.errors().dropped, 220 - took);
    w.flush().unwrap();
    assert_within(&root, &limits);
    assert!(
        list_boots(&root).unwrap().iter().all(|b| b.boot_id == "b1"),
        "the older boot made room"
    );
    let (evs, damage) = events_of(&root, "b1");
    assert!(damage.is_empty(), "{damage:?}");
    assert_eq!(evs.last(), Some(&event(519)));
    fs::remove_dir_all(root).unwrap();
}

/// A cap smaller than a segment holds too: the segment is cut at the cap, and the oldest
/// segments make room.
#[test]
fn a_cap_below_the_segment_size_holds() {
    let root = tmp("tinycap");
    let limits = JournalLimits {
        max_bytes: 3_000,
        segment_bytes: 16 << 20,
        flush_interval_ms: 0,
    };
    let mut w = Writer::open(&root, "b1", limits.clone()).unwrap();
    for from in (0..1000).step_by(100) {
        assert_eq!(append(&mut w, from, 100), 100, "{:?}", w.errors());
        w.flush().unwrap();
        assert_within(&root, &limits);
    }
    let (evs, damage) = events_of(&root, "b1");
    assert!(damage.is_empty(), "{damage:?}");
    assert_eq!(evs.last(), Some(&event(999)));
    fs::remove_dir_all(root).unwrap();
}

/// Someone removes the boot's directory, or the whole journal, while the daemon writes:
/// the writer notices at its next flush (or rotation), makes the directories again with
/// the journal's modes and goes on in a new segment. What the deleted segment held is
/// lost, and counted; what was still buffered is not.
#[test]
fn a_deleted_journal_is_made_again() {
    use std::os::unix::fs::PermissionsExt;
    let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o777;
    for (name, segment_bytes) in [
        ("segment", 1 << 20),
        ("boot", 1 << 20),
        ("root", 1 << 20),
        ("rotation", 2_000),
    ] {
        let root = tmp(&format!("deleted-{name}"));
        let limits = JournalLimits {
            segment_bytes,
            ..JournalLimits::default()
        };
        let mut w = Writer::open(&root, "b1", limits).unwrap();
        assert_eq!(append(&mut w, 0, 10), 10);
        w.flush().unwrap();
        match name {
            "segment" => fs::remove_file(root.join("b1").join(segment_name(1))).unwrap(),
            "root" => fs::remove_dir_all(&root).unwrap(),
            _ => fs::remove_dir_all(root.join("b1")).unwrap(),
        }
        // Buffered when the directory went: written again, into the new segment.
        assert_eq!(append(&mut w, 10, 10), 10);
        if name == "rotation" {
            // Past the segment's size: the rotation notices, before any flush.
            assert_eq!(append(&mut w, 20, 30), 30);
            assert!(root.join("b1").is_dir(), "{name}");
        }
        w.flush().unwrap();
        assert!(
            root.join("b1").is_dir(),
            "{name}: the directory is made again"
        );
        assert_eq!(w.errors().recreate, 1, "{name}: {:?}", w.errors());
        assert_eq!(mode(&root), 0o700, "{name}");
        assert_eq!(mode(&root.join("b1")), 0o700, "{name}");
        let last = if name == "rotation" { 50 } else { 20 };
        assert_eq!(append(&mut w, last, 10), 10);
        w.sync().unwrap();
        for seg in segments_of(&root.join("b1")).unwrap() {
            assert_eq!(mode(&seg), 0o600, "{}", seg.display());
        }
        let (evs, damage) = events_of(&root, "b1");
        assert!(damage.is_empty(), "{name}: {damage:?}");
        assert_eq!(
            evs,
            (10..last + 10).map(event).collect::<Vec<_>>(),
            "{name}"
        );
        assert_eq!(w.errors().recreate, 1, "{name}: noticed once");
        fs::remove_dir_all(root).unwrap();
    }
}

/// The journal's place taken by a file after it was deleted: the writer cannot start
/// again there, says so, drops what comes (counted) and tries again later, not at every
/// frame; once the way is clear it goes on.
#[test]
fn a_journal_that_cannot_be_made_again_is_tried_later() {
    let root = tmp("deleted-blocked");
    let (clock, advance) = test_clock();
    let mut w = Writer::open_with_clock(&root, "b1", JournalLimits::default(), clock).unwrap();
    assert_eq!(append(&mut w, 0, 10), 10);
    w.flush().unwrap();
    fs::remove_dir_all(&root).unwrap();
    fs::write(&root, b"not a directory").unwrap();
    assert!(w.flush().is_err());
    assert_eq!(append(&mut w, 10, 100), 0);
    let errors = w.errors();
    assert_eq!((errors.recreate, errors.rotate), (1, 1), "{errors:?}");
    assert_eq!(errors.dropped, 100);
    fs::remove_file(&root).unwrap();
    advance(writer::FIRST_RETRY);
    assert_eq!(append(&mut w, 110, 10), 10);
    w.sync().unwrap();
    assert_eq!((w.errors().recreate, w.errors().rotate), (1, 1));
    let (evs, damage) = events_of(&root, "b1");
    assert!(damage.is_empty(), "{damage:?}");
    // What came while the journal could not be made again is lost.
    assert_eq!(evs, (110..120).map(event).collect::<Vec<_>>());
    fs::remove_dir_all(root).unwrap();
}

fn long_process() -> ProcInfo {
    ProcInfo {
        pid: 42,
        ppid: 1,
        start_ns: 5,
        comm: "big".into(),
        exe: Some("/usr/bin/big".into()),
        // Over a MiB, and more once escaped in JSON (\u0001 is six bytes).
        cmdline: vec![
            "/usr/bin/big".into(),
            "a".repeat(700_000),
            "\u{1}é".repeat(60_000),
            "b".repeat(300_000),
        ],
        cgroup: Some("/system.slice/big.service".into()),
    }
}

fn items_of(root: &Path, boot: &str) -> (Vec<Item>, Vec<Damage>) {
    let mut items = Vec::new();
    let damage = read_boot(&find_boot(root, boot).unwrap(), |i| items.push(i)).unwrap();
    (items, damage)
}

/// A process found at start with a command line of megabytes: its record is cut to fit a
/// frame the reader takes (whole arguments first, then the last one on a character),
/// and read back flagged as cut.
#[test]
fn a_long_command_line_at_start_is_cut_to_fit_a_frame() {
    let root = tmp("longcmd");
    let mut w = Writer::open(&root, "b1", JournalLimits::default()).unwrap();
    let p = long_process();
    w.append_process(&p).unwrap();
    w.append_record(&encode(&event(1))).unwrap();
    w.sync().unwrap();
    let (items, damage) = items_of(&root, "b1");
    assert!(damage.is_empty(), "{damage:?}");
    assert_eq!(items.len(), 2, "{}", items.len());
    let Item::Process {
        info: read,
        cmdline_truncated: true,
    } = &items[0]
    else {
        panic!("not a process flagged as cut: {:?}", items[0]);
    };
    assert_eq!(read.cmdline[..2], p.cmdline[..2]);
    assert_eq!(read.cmdline.len(), 3);
    assert!(p.cmdline[2].starts_with(&read.cmdline[2]) && read.cmdline[2].len() > 1000);
    let cut = ProcInfo {
        cmdline: Vec::new(),
        ..read.clone()
    };
    assert_eq!(
        cut,
        ProcInfo {
            cmdline: Vec::new(),
            ..p.clone()
        }
    );
    assert_eq!(items[1], Item::Event(event(1)));
    // The frame is as full as it may be: a handful of bytes short of the most.
    let frame_len = fs::metadata(root.join("b1").join(segment_name(1)))
        .unwrap()
        .len() as usize
        - HEADER_LEN
        - (FRAME_HEAD + encode(&event(1)).len() + 1);
    assert!(
        (FRAME_HEAD + MAX_PAYLOAD - 8..=FRAME_HEAD + MAX_PAYLOAD).contains(&frame_len),
        "{frame_len}"
    );
    assert_eq!(w.errors().truncated, 1);
    assert_eq!(w.errors().oversized, 0);
    fs::remove_dir_all(root).unwrap();
}

/// A process record of a journal written before records could be cut (no flag) reads as
/// not cut; one that is not cut is written as before.
#[test]
fn a_process_record_without_the_flag_reads_as_not_cut() {
    let root = tmp("oldproc");
    let mut w = Writer::open(&root, "b1", JournalLimits::default()).unwrap();
    let p = ProcInfo {
        cmdline: vec!["/usr/bin/small".into(), "-x".into()],
        ..long_process()
    };
    w.append_process(&p).unwrap();
    w.sync().unwrap();
    let data = fs::read(root.join("b1").join(segment_name(1))).unwrap();
    let body = &data[HEADER_LEN + FRAME_HEAD + 1..];
    assert_eq!(
        std::str::from_utf8(body).unwrap(),
        r#"{"pid":42,"ppid":1,"start_ns":5,"comm":"big","exe":"/usr/bin/big","cmdline":["/usr/bin/small","-x"],"cgroup":"/system.slice/big.service"}"#
    );
    let (items, damage) = items_of(&root, "b1");
    assert!(damage.is_empty(), "{damage:?}");
    assert_eq!(
        items,
        [Item::Process {
            info: p,
            cmdline_truncated: false
        }]
    );
    fs::remove_dir_all(root).unwrap();
}

/// Cutting keeps whole arguments while they fit, then cuts the next on a character
/// boundary, counting what JSON escapes as it takes.
#[test]
fn command_lines_are_cut_on_characters() {
    let args: Vec<String> = vec!["ab".into(), "\u{1}é\"x".into()];
    let json = |a: &[String]| serde_json::to_vec(a).unwrap().len() - 2;
    assert_eq!(writer::cut_to_fit(&args, json(&args)), args);
    for room in 0..json(&args) {
        let cut = writer::cut_to_fit(&args, room);
        assert!(json(&cut) <= room, "{room}: {cut:?}");
        assert!(
            cut.iter()
                .zip(&args)
                .all(|(c, a)| a.starts_with(c.as_str()))
        );
        // Nothing more would fit: one more character of what was cut (or the next arg).
        let more = match cut.len() {
            0 => vec!["a".to_owned()],
            1 if cut[0] == "ab" => vec!["ab".to_owned(), "\u{1}".to_owned()],
            1 => vec!["ab".to_owned()],
            _ => {
                let next = args[1][cut[1].len()..].chars().next().unwrap();
                vec!["ab".to_owned(), format!("{}{next}", cut[1])]
            }
        };
        assert!(json(&more) > room, "{room}: {cut:?} and {more:?}");
    }
}

fn many_units(n: usize) -> crate::systemd::Snapshot {
    use crate::systemd::{Snapshot, SystemdUnit};
    let mut s = Snapshot::default();
    s.boot.finish_us = 12_345;
    s.units = (0..n)
        .map(|i| SystemdUnit {
            id: format!("unit-{i}.service"),
            active_state: "active".into(),
            after: (0..8)
                .map(|j| format!("dependency-{j}-of-{i}.service"))
                .collect(),
            active_enter_us: i as u64,
            ..SystemdUnit::default()
        })
        .collect();
    s
}

/// systemd's account of a host with thousands of units is more than one frame holds: it is
/// split across frames, and read back whole, as one.
#[test]
fn a_large_systemd_account_is_split_across_frames() {
    let root = tmp("bigsystemd");
    let limits = JournalLimits {
        segment_bytes: 1 << 20,
        ..JournalLimits::default()
    };
    let mut w = Writer::open(&root, "b1", limits).unwrap();
    let snapshot = many_units(5_000);
    assert!(serde_json::to_vec(&snapshot).unwrap().len() > 2 * MAX_PAYLOAD);
    w.append_record(&encode(&event(1))).unwrap();
    w.append_systemd(&snapshot).unwrap();
    w.append_record(&encode(&event(2))).unwrap();
    w.sync().unwrap();
    assert!(
        segments_of(&root.join("b1")).unwrap().len() > 1,
        "split over segments too"
    );
    let (items, damage) = items_of(&root, "b1");
    assert!(damage.is_empty(), "{damage:?}");
    assert_eq!(
        items,
        [
            Item::Event(event(1)),
            Item::Systemd(Box::new(snapshot.clone())),
            Item::Event(event(2))
        ]
    );
    assert_eq!(w.errors(), JournalErrors::default());

    // A reader that does not know parts takes the last for the account: the boot's
    // times, some of the units.
    let last = segments_of(&root.join("b1")).unwrap().pop().unwrap();
    let data = fs::read(last).unwrap();
    let len = u32::from_le_bytes(data[HEADER_LEN..HEADER_LEN + 4].try_into().unwrap()) as usize;
    let body = &data[HEADER_LEN + FRAME_HEAD + 1..HEADER_LEN + FRAME_HEAD + len];
    let old: crate::systemd::Snapshot = serde_json::from_slice(body).unwrap();
    assert_eq!(old.boot, snapshot.boot);
    assert!(!old.units.is_empty() && old.units.len() < snapshot.units.len());
    assert_eq!(old.units.last(), snapshot.units.last());

    // A part lost: the rest is read, and the loss said.
    fs::remove_file(segments_of(&root.join("b1")).unwrap()[1].clone()).unwrap();
    let (items, damage) = items_of(&root, "b1");
    assert_eq!(damage.len(), 1, "{damage:?}");
    assert!(damage[0].what.contains("parts read"), "{}", damage[0]);
    let Some(Item::Systemd(partial)) = items.iter().find(|i| matches!(i, Item::Systemd(_))) else {
        panic!("{items:?}");
    };
    assert_eq!(partial.boot, snapshot.boot);
    assert!(partial.units.len() < snapshot.units.len());
    fs::remove_dir_all(root).unwrap();
}

/// A record larger than any frame (none is, from the kernel; this is the last guard) is
/// refused and counted, and what comes after is recorded.
#[test]
fn a_record_larger_than_a_frame_is_refused() {
    let root = tmp("hugerecord");
    let mut w = Writer::open(&root, "b1", JournalLimits::default()).unwrap();
    assert!(w.append_record(&vec![0; MAX_PAYLOAD]).is_err());
    assert!(w.append_cgroup(9, &"x".repeat(MAX_PAYLOAD)).is_err());
    w.append_record(&encode(&event(1))).unwrap();
    w.sync().unwrap();
    let (items, damage) = items_of(&root, "b1");
    assert!(damage.is_empty(), "{damage:?}");
    assert_eq!(items, [Item::Event(event(1))]);
    assert_eq!(w.errors().oversized, 2);
    fs::remove_dir_all(root).unwrap();
}

/// systemd's changes are recorded between the kernel's records, in the order they came,
/// and read back as they were.
#[test]
fn systemd_s_changes_read_back_in_order() {
    use crate::systemd::changes::{Change, Prop};
    let root = tmp("changes");
    let mut w = Writer::open(&root, "b1", JournalLimits::default()).unwrap();
    let state = Change::Properties {
        at_ns: 5,
        unit: "app.service".into(),
        props: [("ActiveState".to_owned(), Prop::Str("failed".into()))].into(),
    };
    let ended = Change::JobRemoved {
        at_ns: 6,
        id: 12,
        unit: "web.service".into(),
        result: "dependency".into(),
    };
    w.append_record(&encode(&event(1))).unwrap();
    w.append_systemd_change(&state).unwrap();
    w.append_record(&encode(&event(2))).unwrap();
    w.append_systemd_change(&ended).unwrap();
    w.sync().unwrap();
    let (items, damage) = items_of(&root, "b1");
    assert!(damage.is_empty(), "{damage:?}");
    assert_eq!(
        items,
        [
            Item::Event(event(1)),
            Item::SystemdChange(Box::new(state)),
            Item::Event(event(2)),
            Item::SystemdChange(Box::new(ended)),
        ]
    );
    fs::remove_dir_all(root).unwrap();
}
