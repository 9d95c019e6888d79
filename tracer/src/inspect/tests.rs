use std::{
    io::Read as _,
    os::unix::fs::PermissionsExt as _,
    path::Path,
    process::{Child, Command, Stdio},
    sync::mpsc,
};

use super::*;

fn tempdir(name: &str) -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("tracer-inspect-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn write(path: &Path, text: &str, mode: u32) {
    std::fs::write(path, text).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

/// `look`, on a thread: a look that does not come back within 5 s fails the test instead
/// of hanging it.
fn look_within(path: &Path, root: Root) -> Looked {
    let path = path.display().to_string();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(look(&path, &root));
    });
    rx.recv_timeout(Duration::from_secs(5))
        .expect("the look came back within 5 s")
}

fn info(l: Looked) -> FileInfo {
    match l {
        Looked::Found { info, .. } => info,
        other => panic!("not found: {other:?}"),
    }
}

#[test]
fn a_file_is_seen_as_exec_sees_it() {
    let d = tempdir("file");
    let script = d.join("run.sh");
    write(&script, "#!/nonexistent/sh\necho\n", 0o644);
    let i = info(look_within(&script, Root::here()));
    assert_eq!((i.mode, i.is_dir, i.uid), (0o644, false, 0));
    assert_eq!(i.interpreter, Some(("/nonexistent/sh".into(), false)));
    write(&script, "#!/bin/sh\n", 0o755);
    assert_eq!(
        info(look_within(&script, Root::here())).interpreter,
        Some(("/bin/sh".into(), true))
    );
    assert!(info(look_within(&d, Root::here())).is_dir);
    assert_eq!(look_within(&d.join("nope"), Root::here()), Looked::Absent);
    match look("relative/x", &Root::here()) {
        Looked::Failed(why) => assert!(why.contains("relative"), "{why}"),
        other => panic!("{other:?}"),
    }
    // Names with the numbers, looked up with the file.
    match look_within(&script, Root::here()) {
        Looked::Found { owner, .. } => assert_eq!(owner.user.as_deref(), Some("root")),
        other => panic!("{other:?}"),
    }
}

/// Finding 2 of issue 15: a FIFO in the path's place, or a write lease on the file, used
/// to make the daemon's open wait (for ever, or for fs.lease-break-time).
#[test]
fn a_fifo_or_a_leased_file_does_not_make_the_look_wait() {
    let d = tempdir("wait");
    let fifo = d.join("fifo");
    let c = CString::new(fifo.display().to_string()).unwrap();
    // SAFETY: a NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o644) }, 0);
    let i = info(look_within(&fifo, Root::here()));
    assert_eq!((i.mode, i.interpreter), (0o644, None));

    // A write lease, held by a process of its own that ignores the break.
    let leased = d.join("leased.sh");
    write(&leased, "#!/bin/sh\n", 0o644);
    let holder = hold_write_lease(&leased);
    let started = Instant::now();
    let i = info(look_within(&leased, Root::here()));
    assert_eq!(i.mode, 0o644);
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "the leased file kept the look {:?}",
        started.elapsed()
    );
    drop(holder);
}

/// Takes a write lease on `path` and ignores the kernel's call to give it up (SIGIO), so
/// that an open which waits for the lease waits for fs.lease-break-time (45 s); released
/// when dropped.
fn hold_write_lease(path: &Path) -> File {
    // SAFETY: ignoring a signal; nothing in the tests relies on SIGIO.
    unsafe { libc::signal(libc::SIGIO, libc::SIG_IGN) };
    let f = std::fs::OpenOptions::new().write(true).open(path).unwrap();
    // SAFETY: fcntl on our own open descriptor.
    let r = unsafe { libc::fcntl(f.as_raw_fd(), libc::F_SETLEASE, libc::F_WRLCK) };
    assert_eq!(r, 0, "a write lease: {}", io::Error::last_os_error());
    f
}

/// A child killed when dropped.
struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn symlinks_stay_inside_the_root() {
    let d = tempdir("root");
    std::fs::create_dir_all(d.join("bin")).unwrap();
    std::fs::create_dir_all(d.join("etc")).unwrap();
    write(&d.join("etc/inside"), "x", 0o600);
    // Absolute and climbing links resolve inside the root, as for a process chrooted there.
    std::os::unix::fs::symlink("/etc/inside", d.join("bin/abs")).unwrap();
    std::os::unix::fs::symlink("../../../../../etc/passwd", d.join("bin/up")).unwrap();
    let root = || Root {
        dir: open_dir(&d.display().to_string()).unwrap(),
        pid: None,
    };
    assert_eq!(info(look("/bin/abs", &root())).mode, 0o600);
    assert_eq!(
        look("/bin/up", &root()),
        Looked::Absent,
        "the host's /etc/passwd is not the root's"
    );
}

/// Where openat2 is refused (systemd's RestrictSUIDSGID= makes it ENOSYS, as seen in the
/// VM), the walk a component at a time resolves as it does.
#[test]
fn the_walk_by_hand_resolves_as_openat2_does() {
    let d = tempdir("walk");
    for dir in ["bin", "etc", "usr/lib"] {
        std::fs::create_dir_all(d.join(dir)).unwrap();
    }
    write(&d.join("etc/inside"), "x", 0o600);
    write(&d.join("usr/lib/tool"), "x", 0o751);
    std::os::unix::fs::symlink("/etc/inside", d.join("bin/abs")).unwrap();
    std::os::unix::fs::symlink("../../../../../etc/passwd", d.join("bin/up")).unwrap();
    std::os::unix::fs::symlink("../usr/lib/tool", d.join("bin/rel")).unwrap();
    std::os::unix::fs::symlink("usr", d.join("usrlink")).unwrap();
    std::os::unix::fs::symlink("loop", d.join("bin/loop")).unwrap();
    let root = open_dir(&d.display().to_string()).unwrap();
    let mode = |fd: io::Result<OwnedFd>| -> Result<u32, i32> {
        let fd = fd.map_err(|e| e.raw_os_error().unwrap_or(0))?;
        Ok(File::from(fd).metadata().unwrap().mode() & 0o7777)
    };
    for path in [
        "/bin/abs",
        "/bin/up",
        "/bin/rel",
        "/usrlink/lib/tool",
        "/../../usr/./lib/tool",
        "/bin/loop",
        "/bin/abs/more",
        "/nope",
    ] {
        let by_hand = mode(walk_in_root(&root, path));
        assert_eq!(by_hand, mode(openat2_in_root(&root, path)), "{path}");
    }
    assert_eq!(mode(walk_in_root(&root, "/bin/rel")), Ok(0o751));
    assert_eq!(mode(walk_in_root(&root, "/bin/up")), Err(libc::ENOENT));
    assert_eq!(mode(walk_in_root(&root, "/bin/loop")), Err(libc::ELOOP));
}

/// The path as the process saw it: a file on a private /tmp (a PrivateTmp= unit's, or a
/// container's) is found through /proc/PID/root, and its noexec mount named.
#[test]
fn a_path_is_looked_at_in_the_process_s_mount_namespace() {
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("skipped: needs root (a mount namespace)");
        return;
    }
    let script = "mount -t tmpfs -o noexec tracer-test /tmp && printf '#!/bin/sh\\n' >/tmp/only-here.sh \
                  && chmod 755 /tmp/only-here.sh && echo ready && exec sleep 60";
    let mut child = Killed(
        Command::new("unshare")
            .args(["--mount", "--propagation", "private", "sh", "-c", script])
            .stdout(Stdio::piped())
            .spawn()
            .expect("unshare runs"),
    );
    let mut ready = [0u8; 6];
    child
        .0
        .stdout
        .take()
        .unwrap()
        .read_exact(&mut ready)
        .unwrap();
    assert_eq!(&ready, b"ready\n");
    let pid = child.0.id();
    let path = Path::new("/tmp/only-here.sh");
    assert!(!path.exists(), "not in our namespace");
    let i = info(look_within(path, Root::of(Some(pid))));
    assert_eq!(i.mode, 0o755);
    assert_eq!(i.noexec_mount.as_deref(), Some("/tmp"));
    assert_eq!(i.interpreter, Some(("/bin/sh".into(), true)));
    // Once it is gone, the host's view.
    drop(child);
    assert_eq!(look_within(path, Root::of(Some(pid))), Looked::Absent);
}

#[test]
fn the_workers_never_make_the_asker_wait() {
    let (release_tx, release_rx) = mpsc::channel::<()>();
    let release_rx = Mutex::new(release_rx);
    // A look that hangs until released: a dead NFS server's.
    let lookups = Lookups::start_with(1, 2, Duration::from_millis(200), move |_, _| {
        let _ = release_rx.lock().unwrap().recv();
        Looked::Absent
    })
    .unwrap();
    let started = Instant::now();
    let first = lookups.request("/a", None);
    assert_eq!(first.get(), None, "pending");
    std::thread::sleep(Duration::from_millis(300));
    // The only worker is hung: the next asks are answered at once, with why.
    let second = lookups.request("/b", None);
    match second.get() {
        Some(Looked::Failed(why)) => assert!(why.contains("hung"), "{why}"),
        other => panic!("{other:?}"),
    }
    assert_eq!(
        lookups.request_user("root").get(),
        Some(&None),
        "a user's lookup, too, is refused at once"
    );
    assert!(started.elapsed() < Duration::from_secs(2));
    assert_eq!(lookups.counts.refused.load(Ordering::Relaxed), 2);
    release_tx.send(()).unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    while first.get().is_none() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(
        first.get(),
        Some(&Looked::Absent),
        "filled once the look came back"
    );
}

#[test]
fn one_user_s_failed_execs_spend_only_that_user_s_looks() {
    let lookups =
        Lookups::start_with(1, 1024, Duration::from_secs(5), |_, _| Looked::Absent).unwrap();
    let me = Some(std::process::id());
    let refused = (0..100)
        .map(|_| lookups.request("/x", me))
        .filter(|l| matches!(l.get(), Some(Looked::Failed(why)) if why.contains("too many failed execs")))
        .count();
    assert!(
        (100 - BURST as usize - 2..=100 - BURST as usize).contains(&refused),
        "{refused} of 100 refused"
    );
    // Another user (a process that is gone counts as one) has its own.
    assert!(!matches!(
        lookups.request("/x", Some(u32::MAX - 1)).get(),
        Some(Looked::Failed(_))
    ));
}

/// Issue 15, finding 2: whether User= exists was asked of NSS on the event path (a
/// directory server that does not answer would have stopped it).
#[test]
fn users_are_looked_up_by_the_workers() {
    let lookups = Lookups::start(1, 8, Duration::from_secs(5)).unwrap();
    let (root, nobody) = (
        lookups.request_user("root"),
        lookups.request_user("tracer-no-such-user"),
    );
    let deadline = Instant::now() + Duration::from_secs(5);
    while (root.get().is_none() || nobody.get().is_none()) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(root.get(), Some(&Some(true)));
    assert_eq!(nobody.get(), Some(&Some(false)));
}

/// The look has the file's ACL and every directory of its path, as the kernel keeps them
/// (the ACL set here with setxattr in the kernel's format, as setfacl would).
#[test]
fn the_look_has_the_acl_and_the_directories() {
    let d = tempdir("acl");
    let private = d.join("private");
    std::fs::create_dir(&private).unwrap();
    std::fs::set_permissions(&private, std::fs::Permissions::from_mode(0o700)).unwrap();
    let script = private.join("x.sh");
    write(&script, "#!/bin/sh\n", 0o755);
    let mut v = 2u32.to_le_bytes().to_vec();
    for (tag, perm, id) in [
        (1u16, 7u16, u32::MAX),
        (2, 0, 65534),
        (4, 5, u32::MAX),
        (16, 5, u32::MAX),
        (32, 5, u32::MAX),
    ] {
        v.extend(tag.to_le_bytes());
        v.extend(perm.to_le_bytes());
        v.extend(id.to_le_bytes());
    }
    let c = CString::new(script.display().to_string()).unwrap();
    // SAFETY: NUL-terminated strings and a buffer of the length given.
    let r = unsafe {
        libc::setxattr(
            c.as_ptr(),
            c"system.posix_acl_access".as_ptr(),
            v.as_ptr().cast(),
            v.len(),
            0,
        )
    };
    let i = info(look_within(&script, Root::here()));
    if r == 0 {
        let acl = i.acl.as_ref().expect("the ACL was read");
        assert_eq!(acl.user(65534), Some(0));
    } else {
        eprintln!(
            "skipped the ACL part: {} takes no ACL ({})",
            d.display(),
            io::Error::last_os_error()
        );
    }
    let paths: Vec<&str> = i.dirs.iter().map(|d| d.path.as_str()).collect();
    let want = private.display().to_string();
    assert_eq!(paths.first(), Some(&"/"));
    assert_eq!(paths.last(), Some(&want.as_str()));
    assert_eq!(paths.len(), want.split('/').count(), "{paths:?}");
    let last = i.dirs.last().expect("a directory");
    assert_eq!((last.mode, last.uid), (0o700, 0));
    assert_eq!(last.owner.user.as_deref(), Some("root"));
    // What nobody may do here, by the kernel's rules: not search the directory.
    assert!(matches!(
        crate::model::perm::refusal(65534, &i),
        Some(crate::model::perm::Refusal::Directory(d, _)) if d.path == want
    ));
    let _ = std::fs::remove_dir_all(&d);
}
