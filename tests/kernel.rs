//! The real eBPF programs in the real kernel: each test causes the activity itself and
//! asserts the exact events for its own child processes. Needs root; outside CI a non-root
//! run skips with the reason printed, in CI (CI set) it fails instead.

use std::{
    fs,
    os::unix::{
        fs::{MetadataExt, PermissionsExt},
        process::{CommandExt, ExitStatusExt},
    },
    path::{Path, PathBuf},
    process::{Command, ExitStatus},
    time::{Duration, Instant},
};

use tracer::{
    cgroup::find_cgroup2_mount,
    event::{AccessSyscall, Errno, Event, EventKind, FileSeen, WaitStatus},
    probe::{Probe, ProbeOptions},
};

mod common;
use common::privileged;

/// A loaded probe and everything it has delivered so far.
struct Capture {
    rt: tokio::runtime::Runtime,
    probe: Probe,
    events: Vec<Event>,
}

impl Capture {
    fn start() -> Option<Self> {
        Self::start_with(ProbeOptions {
            ignore_self: false,
            ..ProbeOptions::default()
        })
    }

    fn start_with(opts: ProbeOptions) -> Option<Self> {
        if !privileged() {
            return None;
        }
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("tokio runtime");
        let probe = {
            let _guard = rt.enter();
            Probe::load(&opts).unwrap_or_else(|e| panic!("loading the probe: {e}"))
        };
        Some(Self {
            rt,
            probe,
            events: Vec::new(),
        })
    }

    /// Reads events until `done` holds for what was collected, or fails after 10 s.
    fn until(&mut self, what: &str, done: impl Fn(&[Event]) -> bool) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while !done(&self.events) {
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what}; collected {} events",
                self.events.len()
            );
            let (probe, events) = (&mut self.probe, &mut self.events);
            let _ = self.rt.block_on(async {
                tokio::time::timeout(Duration::from_millis(100), probe.read(events)).await
            });
        }
    }

    /// The events of process `pid` (as the task, or as a fork's child).
    fn of(&self, pid: u32) -> Vec<&Event> {
        self.events
            .iter()
            .filter(|e| {
                e.tgid == pid || matches!(e.kind, EventKind::Fork { child_pid } if child_pid == pid)
            })
            .collect()
    }

    fn exits_of(&self, pid: u32) -> Vec<WaitStatus> {
        self.events
            .iter()
            .filter(|e| e.tgid == pid)
            .filter_map(|e| match e.kind {
                EventKind::Exit { status, .. } => Some(status),
                _ => None,
            })
            .collect()
    }
}

fn has_exit(pid: u32) -> impl Fn(&[Event]) -> bool {
    move |evs| {
        evs.iter()
            .any(|e| e.tgid == pid && matches!(e.kind, EventKind::Exit { .. }))
    }
}

fn run(cmd: &mut Command) -> (u32, ExitStatus) {
    let mut child = cmd.spawn().expect("spawn");
    let pid = child.id();
    (pid, child.wait().expect("wait"))
}

/// A scratch directory for this test process.
fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("tracer-kernel-{}-{name}", std::process::id()));
    fs::create_dir_all(&dir).unwrap();
    dir
}

fn write_file(path: &Path, contents: &[u8], mode: u32) {
    fs::write(path, contents).unwrap();
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).unwrap();
}

/// The cgroup2 id (directory inode) of this process's cgroup.
fn own_cgroup_id() -> u64 {
    let text = fs::read_to_string("/proc/self/cgroup").unwrap();
    let path = text
        .lines()
        .find_map(|l| l.strip_prefix("0::"))
        .expect("a cgroup2 line in /proc/self/cgroup");
    let mount = find_cgroup2_mount().unwrap();
    fs::metadata(mount.join(path.trim_start_matches('/')))
        .unwrap()
        .ino()
}

#[test]
fn exec_fork_and_exit_of_bin_true() {
    let Some(mut cap) = Capture::start() else {
        return;
    };
    let (pid, status) = run(&mut Command::new("/bin/true"));
    assert!(status.success());
    cap.until("/bin/true's exit", has_exit(pid));

    let me = std::process::id();
    let cgroup = own_cgroup_id();
    let evs = cap.of(pid);
    let fork = evs
        .iter()
        .find(|e| matches!(e.kind, EventKind::Fork { .. }))
        .expect("a fork event for the child");
    assert_eq!(fork.tgid, me, "forked by this test process");
    let exec = evs
        .iter()
        .find(|e| matches!(e.kind, EventKind::Exec { .. }))
        .expect("an exec event");
    let EventKind::Exec {
        ppid,
        uid,
        filename,
        argv,
        filename_truncated,
        argv_truncated,
    } = &exec.kind
    else {
        unreachable!()
    };
    assert_eq!(filename, "/bin/true");
    assert_eq!(argv, &["/bin/true"]);
    assert_eq!((*ppid, *uid), (me, 0));
    assert!(!filename_truncated && !argv_truncated);
    assert_eq!((exec.pid, exec.tgid), (pid, pid));
    assert_eq!(exec.comm, "true");
    assert_eq!(
        exec.cgroup_id, cgroup,
        "the exec carries the child's cgroup2 id"
    );
    assert!(exec.ts_ns > fork.ts_ns);
    assert_eq!(cap.exits_of(pid), vec![WaitStatus(0)]);
    let exit = evs
        .iter()
        .find(|e| matches!(e.kind, EventKind::Exit { .. }))
        .unwrap();
    assert!(matches!(exit.kind, EventKind::Exit { ppid, .. } if ppid == me));
    assert!(exit.ts_ns > exec.ts_ns);
}

/// Finds the one failed exec of `path` by a child of this process.
fn failed_exec_of<'a>(cap: &'a Capture, path: &str) -> Vec<&'a Event> {
    let me = std::process::id();
    cap.events
        .iter()
        .filter(|e| {
            matches!(&e.kind, EventKind::ExecFailed { filename, ppid, .. }
                if filename == path && *ppid == me)
        })
        .collect()
}

fn errno_of(ev: &Event) -> i32 {
    match ev.kind {
        EventKind::ExecFailed {
            errno: Errno(e), ..
        } => e,
        _ => panic!("not a failed exec: {ev:?}"),
    }
}

#[test]
fn failed_execs_carry_errno_and_path() {
    let Some(mut cap) = Capture::start() else {
        return;
    };
    let dir = scratch("failed-exec");
    let script = dir.join("mylog.sh");
    write_file(&script, b"#!/bin/sh\necho never\n", 0o644);
    let missing = dir.join("does-not-exist");
    let garbage = dir.join("not-a-program");
    write_file(
        &garbage,
        b"\x01\x02\x03 this is no executable format\n",
        0o755,
    );

    for path in [&script, &missing, &garbage] {
        let err = Command::new(path).spawn().expect_err("the exec must fail");
        eprintln!("{}: {err}", path.display());
    }
    let cases = [
        (script.to_str().unwrap(), libc::EACCES),
        (missing.to_str().unwrap(), libc::ENOENT),
        (garbage.to_str().unwrap(), libc::ENOEXEC),
    ];
    cap.until("three failed execs", |evs| {
        cases.iter().all(|(path, _)| {
            evs.iter().any(
                |e| matches!(&e.kind, EventKind::ExecFailed { filename, .. } if filename == path),
            )
        })
    });
    for (path, errno) in cases {
        let found = failed_exec_of(&cap, path);
        assert!(!found.is_empty(), "no failed exec of {path}");
        for ev in found {
            assert_eq!(errno_of(ev), errno, "{path}: {}", Errno(errno_of(ev)));
        }
    }
    fs::remove_dir_all(dir).unwrap();
}

#[test]
fn failed_execveat_carries_errno_and_path() {
    let Some(mut cap) = Capture::start() else {
        return;
    };
    let missing = scratch("execveat").join("missing-program");
    let (pid, status) = run(Command::new(env!("CARGO_BIN_EXE_tracer-test-execveat")).arg(&missing));
    assert_eq!(
        status.code(),
        Some(libc::ENOENT),
        "the helper reports execveat's errno"
    );
    cap.until("the helper's exit", has_exit(pid));
    let failed: Vec<_> = cap
        .of(pid)
        .into_iter()
        .filter(|e| matches!(e.kind, EventKind::ExecFailed { .. }))
        .collect();
    assert_eq!(failed.len(), 1, "{failed:?}");
    assert_eq!(errno_of(failed[0]), libc::ENOENT);
    assert!(
        matches!(&failed[0].kind, EventKind::ExecFailed { filename, .. } if Path::new(filename) == missing)
    );
}

#[test]
fn failed_execs_off_attaches_no_syscall_tracepoint() {
    let Some(mut cap) = Capture::start_with(ProbeOptions {
        ignore_self: false,
        failed_execs: false,
        ..ProbeOptions::default()
    }) else {
        return;
    };
    let missing = scratch("failed-execs-off").join("does-not-exist");
    Command::new(&missing)
        .spawn()
        .expect_err("the exec must fail");
    let (pid, _) = run(&mut Command::new("/bin/true"));
    cap.until("/bin/true's exit", has_exit(pid));
    assert!(
        cap.of(pid)
            .iter()
            .any(|e| matches!(e.kind, EventKind::Exec { .. })),
        "successful execs are still seen"
    );
    let failed = failed_exec_of(&cap, missing.to_str().unwrap());
    assert!(failed.is_empty(), "no failed exec expected: {failed:?}");
}

#[test]
fn exit_status_is_what_waitpid_sees() {
    let Some(mut cap) = Capture::start() else {
        return;
    };
    let runs = [
        run(Command::new("sh").args(["-c", "exit 3"])),
        run(Command::new("sh").args(["-c", "kill -9 $$"])),
        run(&mut Command::new(env!("CARGO_BIN_EXE_tracer-test-segv"))),
    ];
    assert_eq!(runs[0].1.code(), Some(3));
    assert_eq!(runs[1].1.signal(), Some(libc::SIGKILL));
    assert_eq!(runs[2].1.signal(), Some(libc::SIGSEGV));
    for (pid, status) in runs {
        cap.until("the exit", has_exit(pid));
        let exits = cap.exits_of(pid);
        assert_eq!(
            exits,
            vec![WaitStatus(status.into_raw() as u32)],
            "pid {pid}: one exit, with the status waitpid returned ({status})"
        );
    }
    let segv = cap.exits_of(runs[2].0)[0];
    assert_eq!(segv.signal(), Some(libc::SIGSEGV));
    assert_eq!(segv.core_dumped(), runs[2].1.core_dumped());
}

/// An exit carries the process's age (exitsnoop's AGE): `sleep 0.3` lived at least 0.3 s,
/// from its fork (the kernel's start_boottime) to its exit, and not seconds more.
#[test]
fn an_exit_carries_the_process_s_age() {
    let Some(mut cap) = Capture::start() else {
        return;
    };
    let t = Instant::now();
    let (pid, status) = run(Command::new("sleep").arg("0.3"));
    let waited = t.elapsed();
    assert!(status.success());
    cap.until("sleep's exit", has_exit(pid));
    let ages: Vec<u64> = cap
        .events
        .iter()
        .filter(|e| e.tgid == pid)
        .filter_map(|e| match e.kind {
            EventKind::Exit { age_ns, .. } => age_ns,
            _ => None,
        })
        .collect();
    assert_eq!(ages.len(), 1, "one exit, with its age: {ages:?}");
    let age = Duration::from_nanos(ages[0]);
    assert!(
        age >= Duration::from_millis(300) && age < Duration::from_secs(5),
        "sleep 0.3 lived {age:?} (spawn to wait took {waited:?})"
    );
    assert!(
        age <= waited,
        "no older than the time from spawn to wait: {age:?} > {waited:?}"
    );
}

#[test]
fn a_multithreaded_process_exits_once() {
    let Some(mut cap) = Capture::start() else {
        return;
    };
    let (pid, status) = run(&mut Command::new(env!("CARGO_BIN_EXE_tracer-test-threads")));
    assert_eq!(status.code(), Some(7));
    cap.until("the threaded process's exit", has_exit(pid));
    // A little longer, so a wrong per-thread exit after the first would be seen too.
    let deadline = Instant::now() + Duration::from_millis(300);
    cap.until("a short quiet period", |_| Instant::now() > deadline);
    assert_eq!(cap.exits_of(pid), vec![WaitStatus(7 << 8)]);
    let forks_by_it = cap
        .events
        .iter()
        .filter(|e| e.tgid == pid && matches!(e.kind, EventKind::Fork { .. }))
        .count();
    assert_eq!(forks_by_it, 0, "threads are not reported as forks");
}

#[test]
fn long_argv_is_cut_and_flagged() {
    let Some(mut cap) = Capture::start() else {
        return;
    };
    let args: Vec<String> = (0..40)
        .map(|i| format!("argument-{i:02}-xxxxxxxx"))
        .collect();
    let (pid, status) = run(Command::new("/bin/echo")
        .args(&args)
        .stdout(std::process::Stdio::null()));
    assert!(status.success());
    cap.until("echo's exit", has_exit(pid));
    let exec = cap
        .of(pid)
        .into_iter()
        .find_map(|e| match &e.kind {
            EventKind::Exec {
                argv,
                argv_truncated,
                ..
            } => Some((argv.clone(), *argv_truncated)),
            _ => None,
        })
        .expect("echo's exec");
    let (argv, truncated) = exec;
    assert!(truncated, "a 1 KiB argument block is flagged as cut");
    assert_eq!(argv[0], "/bin/echo");
    assert!(argv.len() > 8, "at least the first 8 arguments: {argv:?}");
    let whole = argv.len() - 1; // the last one may be cut short
    assert_eq!(argv[1..whole], args[..whole - 1]);
    let block: usize = argv.iter().map(|a| a.len() + 1).sum();
    assert!((512..=513).contains(&block), "512 bytes kept, got {block}");
}

#[test]
fn cgroup_mkdir_attach_rmdir_and_exec_in_it() {
    let Some(mut cap) = Capture::start() else {
        return;
    };
    let mount = find_cgroup2_mount().unwrap();
    let name = format!("tracer-kernel-test-{}", std::process::id());
    let dir = mount.join(&name);
    fs::create_dir(&dir).unwrap();
    let id = fs::metadata(&dir).unwrap().ino();
    let procs = std::ffi::CString::new(dir.join("cgroup.procs").to_str().unwrap()).unwrap();
    let mut cmd = Command::new("/bin/true");
    // SAFETY: only async-signal-safe calls (open, write, close) between fork and exec.
    unsafe {
        cmd.pre_exec(move || {
            let fd = libc::open(procs.as_ptr(), libc::O_WRONLY);
            if fd < 0 {
                return Err(std::io::Error::last_os_error());
            }
            let n = libc::write(fd, b"0".as_ptr().cast(), 1);
            libc::close(fd);
            if n != 1 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        })
    };
    let (pid, status) = run(&mut cmd);
    assert!(status.success());
    fs::remove_dir(&dir).unwrap();
    let path = format!("/{name}");
    cap.until("the cgroup's rmdir", |evs| {
        evs.iter()
            .any(|e| matches!(&e.kind, EventKind::CgroupRmdir { cgroup } if cgroup.id == id))
    });
    cap.until("the child's exit", has_exit(pid));

    let cg = |want: &str| -> Vec<&Event> {
        cap.events
            .iter()
            .filter(|e| e.kind_name() == want)
            .filter(|e| match &e.kind {
                EventKind::CgroupMkdir { cgroup }
                | EventKind::CgroupRmdir { cgroup }
                | EventKind::CgroupAttach { cgroup, .. } => cgroup.id == id,
                _ => false,
            })
            .collect()
    };
    let mkdir = cg("cgroup-mkdir");
    assert_eq!(mkdir.len(), 1);
    assert!(
        matches!(&mkdir[0].kind, EventKind::CgroupMkdir { cgroup } if cgroup.path == path && cgroup.level == 1)
    );
    assert_eq!(mkdir[0].tgid, std::process::id(), "made by this test");
    let attach = cg("cgroup-attach");
    assert_eq!(attach.len(), 1, "{attach:?}");
    assert!(
        matches!(&attach[0].kind, EventKind::CgroupAttach { cgroup, target_pid } if cgroup.path == path && *target_pid == pid)
    );
    assert_eq!(attach[0].tgid, pid, "the child moved itself");
    let exec = cap
        .of(pid)
        .into_iter()
        .find(|e| matches!(e.kind, EventKind::Exec { .. }))
        .expect("the child's exec");
    assert_eq!(exec.cgroup_id, id, "the exec happened in the new cgroup");
    let rmdir = cg("cgroup-rmdir");
    assert_eq!(rmdir.len(), 1);
    assert!(matches!(&rmdir[0].kind, EventKind::CgroupRmdir { cgroup } if cgroup.path == path));
    assert!(mkdir[0].ts_ns < attach[0].ts_ns && attach[0].ts_ns < exec.ts_ns);
    assert!(exec.ts_ns < rmdir[0].ts_ns);
}

#[test]
fn own_process_is_filtered_in_the_kernel() {
    let Some(mut cap) = Capture::start_with(ProbeOptions::default()) else {
        return;
    };
    let (pid, _) = run(&mut Command::new("/bin/true"));
    cap.until("/bin/true's exit", has_exit(pid));
    let me = std::process::id();
    assert!(
        cap.events.iter().all(|e| e.tgid != me),
        "no event from the tracing process itself"
    );
    assert!(
        cap.of(pid)
            .iter()
            .any(|e| matches!(e.kind, EventKind::Exec { .. })),
        "its child is still seen"
    );
}

#[test]
fn a_full_ring_buffer_counts_drops() {
    let Some(mut cap) = Capture::start_with(ProbeOptions {
        ring_size: 4096,
        ignore_self: false,
        ..ProbeOptions::default()
    }) else {
        return;
    };
    // Nobody reads while 200 processes fork, exec and exit: a 4 KiB ring holds about 30
    // records, so most of the ~600 must be counted as dropped.
    for _ in 0..200 {
        run(&mut Command::new("/bin/true"));
    }
    let drops = cap.probe.kernel_stats().drops;
    cap.probe.drain(&mut cap.events);
    assert!(drops >= 300, "drops counted: {drops}");
    assert!(!cap.events.is_empty(), "what fit was delivered");
}

#[test]
fn a_signal_from_another_process_names_its_sender() {
    let Some(mut cap) = Capture::start() else {
        return;
    };
    let mut child = Command::new("sleep").arg("30").spawn().unwrap();
    let pid = child.id();
    // SAFETY: kill with the pid of our own child.
    assert_eq!(unsafe { libc::kill(pid as i32, libc::SIGTERM) }, 0);
    let status = child.wait().unwrap();
    assert_eq!(status.signal(), Some(libc::SIGTERM));
    cap.until("sleep's exit", has_exit(pid));
    let me = std::process::id();
    let signals: Vec<&Event> = cap
        .events
        .iter()
        .filter(|e| matches!(e.kind, EventKind::Signal { target_pid, .. } if target_pid == pid))
        .collect();
    assert_eq!(signals.len(), 1, "{signals:?}");
    let EventKind::Signal {
        signal,
        code,
        result,
        ..
    } = &signals[0].kind
    else {
        unreachable!()
    };
    assert_eq!(signal.0, libc::SIGTERM);
    assert_eq!(signals[0].tgid, me, "sent by this test");
    assert_eq!((*code, *result), (0, 0), "SI_USER, delivered");
    assert_eq!(cap.exits_of(pid), vec![WaitStatus(libc::SIGTERM as u32)]);
}

/// systemd's check of a unit's command, made as systemd makes it in the child it forked,
/// before any execve: `access("/proc/self/fd/N", X_OK)` (≤ 254) and
/// `faccessat2(N, "", X_OK, AT_EMPTY_PATH)` (≥ 255) on the opened file, then exit 203. The
/// test process stands in for the service manager. Each failed check is recorded with
/// its errno and the file as the kernel held it (mode, owner, name, a noexec mount); a
/// check by path alone carries no file; and a process whose parent is no manager is not
/// recorded at all.
#[test]
fn a_service_manager_s_failed_checks_record_the_file_as_it_was() {
    use std::{ffi::CString, os::fd::AsRawFd};

    let Some(mut cap) = Capture::start() else {
        return;
    };
    let mut managers = cap.probe.take_managers().expect("the managers' map");
    let me = std::process::id();
    assert!(managers.watch(me));

    let dir = scratch("access-check");
    let script = dir.join("mylog.sh");
    write_file(&script, b"#!/bin/sh\necho never\n", 0o644);
    // A 0755 program on a noexec mount: the same check fails for another reason.
    let noexec = dir.join("noexec");
    fs::create_dir_all(&noexec).unwrap();
    let mounted = Command::new("mount")
        .args(["-t", "tmpfs", "-o", "noexec,size=1m", "tracer-test"])
        .arg(&noexec)
        .status()
        .expect("mount");
    assert!(mounted.success(), "mounting a noexec tmpfs");
    let on_noexec = noexec.join("prog");
    write_file(&on_noexec, b"#!/bin/sh\n", 0o755);

    // Checks `path` as systemd does, in a child that then exits 203; returns its pid.
    let check = |path: &Path| -> u32 {
        // Opened here, without O_CLOEXEC, so that the child has it at the same number and
        // allocates nothing between fork and exit.
        let file = fs::File::open(path).unwrap();
        let fd = file.as_raw_fd();
        let by_fd = CString::new(format!("/proc/self/fd/{fd}")).unwrap();
        let by_path = CString::new(path.to_str().unwrap()).unwrap();
        let mut cmd = Command::new("/bin/true");
        // SAFETY: the closure runs in the forked child and makes only async-signal-safe
        // calls (access, syscall, _exit) on memory prepared before the fork.
        unsafe {
            cmd.pre_exec(move || {
                libc::access(by_fd.as_ptr(), libc::X_OK);
                libc::syscall(
                    libc::SYS_faccessat2,
                    fd,
                    c"".as_ptr(),
                    libc::X_OK,
                    libc::AT_EMPTY_PATH,
                );
                libc::access(by_path.as_ptr(), libc::X_OK);
                libc::_exit(203)
            });
        }
        let (pid, status) = run(&mut cmd);
        assert_eq!(status.code(), Some(203));
        drop(file);
        pid
    };
    let refused = check(&script);
    let on_mount = check(&on_noexec);
    cap.until("both children's exits", |evs| {
        has_exit(refused)(evs) && has_exit(on_mount)(evs)
    });
    // Not a manager any more: its child's checks are not recorded.
    managers.forget(me);
    let unwatched = check(&script);
    cap.until("the unwatched child's exit", has_exit(unwatched));
    let _ = Command::new("umount").arg(&noexec).status();

    let checks = |pid: u32| -> Vec<(AccessSyscall, Option<i32>, String, Option<FileSeen>)> {
        cap.of(pid)
            .into_iter()
            .filter_map(|e| match &e.kind {
                EventKind::AccessFailed {
                    ppid,
                    uid,
                    errno,
                    syscall,
                    path,
                    fd,
                    access_mode,
                    file,
                    ..
                } => {
                    assert_eq!((*ppid, *uid), (me, 0), "{e:?}");
                    assert_eq!(errno.0, libc::EACCES, "{e:?}");
                    assert_eq!(*access_mode, libc::X_OK as u32, "{e:?}");
                    Some((*syscall, *fd, path.clone(), file.clone()))
                }
                _ => None,
            })
            .collect()
    };
    let seen = |mode: u32, noexec: bool, name: &str| FileSeen {
        file_mode: libc::S_IFREG | mode,
        file_uid: 0,
        file_gid: 0,
        noexec,
        file_name: name.into(),
    };
    for (pid, path, file) in [
        (refused, &script, seen(0o644, false, "mylog.sh")),
        (on_mount, &on_noexec, seen(0o755, true, "prog")),
    ] {
        let got = checks(pid);
        assert_eq!(got.len(), 3, "three checks of {}: {got:?}", path.display());
        let (_, fd, by_fd, _) = &got[0];
        let fd = fd.expect("the check through /proc/self/fd/N names its descriptor");
        assert_eq!(
            got,
            vec![
                (
                    AccessSyscall::Access,
                    Some(fd),
                    by_fd.clone(),
                    Some(file.clone())
                ),
                (
                    AccessSyscall::Faccessat2,
                    Some(fd),
                    String::new(),
                    Some(file)
                ),
                (
                    AccessSyscall::Access,
                    None,
                    path.to_str().unwrap().to_owned(),
                    None
                ),
            ],
            "{}",
            path.display()
        );
        assert_eq!(by_fd, &format!("/proc/self/fd/{fd}"));
    }
    assert_eq!(checks(unwatched), vec![], "a child of no manager");
    fs::remove_dir_all(dir).unwrap();
}
