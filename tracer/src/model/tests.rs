//! The model on hand-made event sequences.

use super::{cause::Cause, facts::RecordedFacts, *};
use crate::{
    event::{CgroupRef, WaitStatus},
    procfs::ProcInfo,
    testing::Fed,
};

use crate::testing::event_at as ev;

/// Facts with the unit file of a.service (ExecStart=/usr/bin/a).
fn a_service_file() -> RecordedFacts {
    let mut facts = RecordedFacts::default();
    facts.units.insert(
        "a.service".into(),
        facts::parse_unit_file(
            "/etc/systemd/system/a.service",
            &["[Service]\nExecStart=/usr/bin/a\n".into()],
        ),
    );
    facts
}

fn cgroup(id: u64, path: &str) -> CgroupRef {
    CgroupRef {
        id,
        level: 2,
        path: path.into(),
        path_truncated: false,
    }
}

#[test]
fn units_that_came_and_went_are_forgotten_past_the_cap() {
    let mut m = Fed::new(Model::new(RecordedFacts::default(), ModelConfig::default()));
    m.know_cgroup(50, "/system.slice/a.service");
    m.apply(&ev(
        1,
        1,
        1,
        "systemd",
        EventKind::CgroupMkdir {
            cgroup: cgroup(50, "/system.slice/a.service"),
        },
    ));
    for i in 0..3 * MAX_ENDED_UNITS as u64 {
        let cg = cgroup(1000 + i, &format!("/system.slice/run-u{i}.scope"));
        m.apply(&ev(
            10 + 2 * i,
            1,
            1,
            "systemd",
            EventKind::CgroupMkdir { cgroup: cg.clone() },
        ));
        m.apply(&ev(
            11 + 2 * i,
            1,
            1,
            "systemd",
            EventKind::CgroupRmdir { cgroup: cg },
        ));
    }
    assert!(
        m.units().count() <= MAX_ENDED_UNITS + 1,
        "{}",
        m.units().count()
    );
    // The running unit and the latest ended ones are kept.
    assert!(m.unit("a.service").is_some());
    let last = format!("run-u{}.scope", 3 * MAX_ENDED_UNITS - 1);
    assert!(m.unit(&last).is_some());
    assert!(m.unit("run-u0.scope").is_none());
}

#[test]
fn live_units_past_the_cap_are_kept_and_ended_ones_still_bounded() {
    let mut m = Fed::new(Model::new(RecordedFacts::default(), ModelConfig::default()));
    let mkdir = |id: u64, name: &str| EventKind::CgroupMkdir {
        cgroup: cgroup(id, &format!("/system.slice/{name}")),
    };
    let live = 3 * MAX_ENDED_UNITS as u64 / 2;
    for i in 0..live {
        m.apply(&ev(
            10 + i,
            1,
            1,
            "systemd",
            mkdir(1000 + i, &format!("live-{i}.scope")),
        ));
    }
    // Each of these ends, then is started again, then ends for good: a unit that starts
    // again is no longer an ended one.
    for i in 0..2 * MAX_ENDED_UNITS as u64 {
        let (id, name) = (100_000 + 2 * i, format!("gone-{i}.scope"));
        let ts = 100_000 + 10 * i;
        m.apply(&ev(ts, 1, 1, "systemd", mkdir(id, &name)));
        let rmdir = |id| EventKind::CgroupRmdir {
            cgroup: cgroup(id, &format!("/system.slice/{name}")),
        };
        m.apply(&ev(ts + 1, 1, 1, "systemd", rmdir(id)));
        m.apply(&ev(ts + 2, 1, 1, "systemd", mkdir(id + 1, &name)));
        m.apply(&ev(ts + 3, 1, 1, "systemd", rmdir(id + 1)));
    }
    let kept_live = (0..live)
        .filter(|i| m.unit(&format!("live-{i}.scope")).is_some())
        .count() as u64;
    assert_eq!(kept_live, live, "no live unit is forgotten");
    let ended = m.units().count() - live as usize;
    assert!(ended <= MAX_ENDED_UNITS + 1, "{ended} ended units kept");
    assert!(
        m.unit(&format!("gone-{}.scope", 2 * MAX_ENDED_UNITS - 1))
            .is_some()
    );
    assert!(m.unit("gone-0.scope").is_none());
}

#[test]
fn a_run_keeps_a_bounded_number_of_helpers() {
    let mut m = Fed::new(Model::new(RecordedFacts::default(), ModelConfig::default()));
    let path = "/user.slice/user-0.slice/session-1.scope";
    m.apply(&ev(
        1,
        1,
        1,
        "systemd",
        EventKind::CgroupMkdir {
            cgroup: cgroup(60, path),
        },
    ));
    for i in 0..10 * MAX_COMMANDS_PER_RUN as u32 {
        let pid = 10_000 + i;
        let exec = EventKind::Exec {
            ppid: 500,
            uid: 0,
            filename: "/bin/true".into(),
            argv: vec!["true".into()],
            filename_truncated: false,
            argv_truncated: false,
        };
        m.apply(&ev(u64::from(10 + 2 * i), pid, 60, "true", exec));
        let exit = EventKind::Exit {
            age_ns: None,
            ppid: 500,
            status: WaitStatus(0),
        };
        m.apply(&ev(u64::from(11 + 2 * i), pid, 60, "true", exit));
    }
    let run = &m.unit("session-1.scope").unwrap().runs[0];
    assert!(
        run.commands.len() <= MAX_COMMANDS_PER_RUN,
        "{}",
        run.commands.len()
    );
    // The latest ones are kept.
    let last = 10_000 + 10 * MAX_COMMANDS_PER_RUN as u32 - 1;
    assert!(
        run.command(last)
            .is_some_and(|c| c.status == Some(WaitStatus(0)))
    );
    assert_eq!(m.tracked_processes(), 0);
}

#[test]
fn a_process_found_at_start_is_not_counted_twice() {
    let mut m = Fed::new(Model::new(RecordedFacts::default(), ModelConfig::default()));
    m.know_cgroup(50, "/system.slice/a.service");
    m.found_at_start(&ProcInfo {
        pid: 300,
        ppid: 1,
        start_ns: 1_000,
        comm: "a".into(),
        exe: Some("/usr/bin/a".into()),
        cmdline: vec!["/usr/bin/a".into()],
        cgroup: Some("/system.slice/a.service".into()),
    });
    let h = m.unit("a.service").unwrap();
    assert_eq!(h.runs.len(), 1);
    assert_eq!(h.runs[0].start, StartKind::FoundAtStart);
    assert_eq!(h.state(), "running");
    // Its exit, then the cgroup going, then a new activation.
    m.apply(&ev(
        5_000,
        300,
        50,
        "a",
        EventKind::Exit {
            age_ns: None,
            ppid: 1,
            status: WaitStatus(2 << 8),
        },
    ));
    let cg = CgroupRef {
        id: 50,
        level: 2,
        path: "/system.slice/a.service".into(),
        path_truncated: false,
    };
    m.apply(&ev(
        6_000,
        1,
        1,
        "systemd",
        EventKind::CgroupRmdir { cgroup: cg.clone() },
    ));
    let h = m.unit("a.service").unwrap();
    assert_eq!(h.runs.len(), 1, "the exit closed the run found at start");
    assert_eq!(h.runs[0].commands.len(), 1);
    assert_eq!(h.runs[0].main_pid, Some(300));
    assert!(matches!(
        h.runs[0].outcome.as_ref().and_then(|o| o.cause.clone()),
        Some(Cause::ExitCode { code: 2, .. })
    ));
    assert_eq!(h.state(), "failed");
    let next = CgroupRef { id: 51, ..cg };
    m.apply(&ev(
        7_000,
        1,
        1,
        "systemd",
        EventKind::CgroupMkdir { cgroup: next },
    ));
    let h = m.unit("a.service").unwrap();
    assert_eq!(h.runs.len(), 2);
    assert_eq!(h.runs[1].start, StartKind::AutomaticRestart);
    assert_eq!(m.tracked_processes(), 0, "the exited process is not kept");
}

/// A service that fails three times in a row, as systemd ≥ 255 runs it: its cgroup, the
/// process cloned into it, its exec, its exit 1, the cgroup's removal.
#[test]
fn the_model_announces_runs_their_outcomes_and_the_crash_loop() {
    let mut m = Fed::new(Model::new(a_service_file(), ModelConfig::default()));
    m.announce_changes();
    m.know_cgroup(1, "/init.scope");
    let mut changes = Vec::new();
    for i in 0..3u64 {
        let (t, id, pid) = (i * 1_000_000_000, 100 + i, 500 + i as u32);
        let cg = cgroup(id, "/system.slice/a.service");
        let exec = EventKind::Exec {
            ppid: 1,
            uid: 0,
            filename: "/usr/bin/a".into(),
            argv: vec!["/usr/bin/a".into()],
            filename_truncated: false,
            argv_truncated: false,
        };
        let exit = EventKind::Exit {
            age_ns: None,
            ppid: 1,
            status: WaitStatus(1 << 8),
        };
        m.apply(&ev(
            t,
            1,
            1,
            "systemd",
            EventKind::CgroupMkdir { cgroup: cg.clone() },
        ));
        m.apply(&ev(t + 10_000_000, pid, id, "a", exec));
        m.apply(&ev(t + 20_000_000, pid, id, "a", exit));
        m.apply(&ev(
            t + 30_000_000,
            1,
            1,
            "systemd",
            EventKind::CgroupRmdir { cgroup: cg },
        ));
        changes.extend(m.take_changes());
    }
    let unit = crate::unit::unit_of_cgroup("/system.slice/a.service").unwrap();
    let cause = Some(Cause::ExitCode {
        code: 1,
        pid: 502,
        program: "/usr/bin/a".into(),
        command: None,
    });
    assert_eq!(changes.len(), 3 * 3 + 1, "{changes:#?}");
    assert_eq!(
        changes[6..],
        [
            Change::RunStarted {
                unit: unit.clone(),
                run: 3,
                start: StartKind::AutomaticRestart,
                started_ns: 2_000_000_000,
            },
            Change::MainStarted {
                unit: unit.clone(),
                run: 3,
                // (A process first seen at its exec: it started then.)
                after_ns: 10_000_000,
            },
            Change::RunOutcome {
                unit: unit.clone(),
                run: 3,
                failed: true,
                cause,
            },
            Change::CrashLoop { unit },
        ]
    );
    assert!(matches!(
        changes[0],
        Change::RunStarted {
            start: StartKind::First,
            ..
        }
    ));
    // A model nobody asks keeps nothing.
    let mut quiet = Fed::new(Model::new(RecordedFacts::default(), ModelConfig::default()));
    quiet.apply(&ev(
        0,
        1,
        1,
        "systemd",
        EventKind::CgroupMkdir {
            cgroup: cgroup(9, "/system.slice/b.service"),
        },
    ));
    assert_eq!(quiet.take_changes().count(), 0);
}

/// Issue 15, finding 5: `systemd-run --user --unit=a false` used to merge into the
/// system's a.service (its failures, restarts and metrics). A user manager's units are
/// keyed by that manager, and only a `systemctl --user` of that user makes their start
/// manual.
#[test]
fn a_user_s_unit_never_merges_with_the_system_s_of_that_name() {
    let mut m = Fed::new(Model::new(a_service_file(), ModelConfig::default()));
    m.know_cgroup(1, "/init.scope");
    m.know_cgroup(
        2,
        "/user.slice/user-1000.slice/user@1000.service/init.scope",
    );
    m.know_cgroup(3, "/user.slice/user-1000.slice/session-2.scope");
    let exec = |program: &str, ppid| EventKind::Exec {
        ppid,
        uid: 1000,
        filename: program.into(),
        argv: vec![program.into()],
        filename_truncated: false,
        argv_truncated: false,
    };
    let exit = |code: u32| EventKind::Exit {
        age_ns: None,
        ppid: 1,
        status: WaitStatus(code << 8),
    };
    // The user's manager, and a run of the system's a.service that succeeds.
    m.apply(&ev(1, 900, 2, "systemd", exec("/lib/systemd/systemd", 1)));
    let system = cgroup(10, "/system.slice/a.service");
    m.apply(&ev(
        100,
        1,
        1,
        "systemd",
        EventKind::CgroupMkdir {
            cgroup: system.clone(),
        },
    ));
    m.apply(&ev(110, 500, 10, "a", exec("/usr/bin/a", 1)));
    // The user's a.service, started by the user's manager, fails twice; the second start
    // asked for by `systemctl --user restart a` in the user's session.
    let user = "/user.slice/user-1000.slice/user@1000.service/app.slice/a.service";
    for (i, t) in [(0u32, 200u64), (1, 400)] {
        if i == 1 {
            let argv = ["systemctl", "--user", "restart", "a"]
                .map(String::from)
                .to_vec();
            m.apply(&ev(
                t - 50,
                700,
                3,
                "systemctl",
                EventKind::Exec {
                    ppid: 600,
                    uid: 1000,
                    filename: "/usr/bin/systemctl".into(),
                    argv,
                    filename_truncated: false,
                    argv_truncated: false,
                },
            ));
        }
        let cg = cgroup(20 + u64::from(i), user);
        m.apply(&ev(
            t,
            900,
            2,
            "systemd",
            EventKind::CgroupMkdir { cgroup: cg.clone() },
        ));
        let pid = 800 + i;
        m.apply(&ev(
            t + 10,
            pid,
            cg.id,
            "false",
            exec("/usr/bin/false", 900),
        ));
        m.apply(&ev(t + 20, pid, cg.id, "false", exit(1)));
        m.apply(&ev(
            t + 30,
            900,
            2,
            "systemd",
            EventKind::CgroupRmdir { cgroup: cg },
        ));
    }
    m.apply(&ev(500, 500, 10, "a", exit(0)));
    m.apply(&ev(
        510,
        1,
        1,
        "systemd",
        EventKind::CgroupRmdir { cgroup: system },
    ));

    let sys = m.unit("a").unwrap();
    assert_eq!(sys.runs.len(), 1, "the user's runs are not the system's");
    assert!(!sys.runs[0].failed());
    assert_eq!(sys.runs[0].start, StartKind::First);
    let mine = m.unit("user@1000.service/a").unwrap();
    assert_eq!(mine.unit.user, Some(1000));
    assert_eq!(mine.runs.len(), 2);
    assert!(mine.runs.iter().all(|r| r.failed()));
    assert!(
        mine.file.is_none(),
        "the system's unit file does not describe the user's unit"
    );
    assert!(
        matches!(&mine.runs[1].start, StartKind::Manual { by_pid: 700, .. }),
        "{:?}",
        mine.runs[1].start
    );
    assert_eq!(m.units().filter(|h| h.unit.name == "a.service").count(), 2);
}
