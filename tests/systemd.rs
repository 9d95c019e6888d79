//! tracer's client of a service manager against a real one, over the manager's own
//! socket (the peer-to-peer D-Bus connection tracer makes to `/run/systemd/private` as
//! root). This host's pid 1 is not systemd, so the test starts `systemd --user` of its own,
//! in a mount namespace where /run/systemd/system says systemd booted; its socket,
//! `$XDG_RUNTIME_DIR/systemd/private`, is served by the same code as pid 1's. Needs root
//! (the mount namespace); outside CI a non-root run skips, in CI it fails.

use std::{
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use tracer::systemd::Systemd;

mod common;
use common::privileged;

/// A `systemd --user` of the test's own, killed when dropped.
struct Manager {
    child: Child,
    runtime: PathBuf,
}

impl Manager {
    fn start() -> Self {
        Self::start_in(Self::own_runtime("a"), &[], false)
    }

    /// A runtime directory of the test's own (`tag` tells the tests apart).
    fn own_runtime(tag: &str) -> PathBuf {
        std::env::temp_dir().join(format!("tracer-systemd-{}-{tag}", std::process::id()))
    }

    /// A manager whose runtime directory (its socket's, `systemd/private` below it) is
    /// `runtime`, made for it and removed after, with `units` (name, text) in its unit
    /// directory (`$XDG_CONFIG_HOME/systemd/user`, below `runtime` too); with `bus`, a
    /// D-Bus daemon of its own at `runtime/bus`, where the manager takes its name.
    fn start_in(runtime: PathBuf, units: &[(&str, &str)], bus: bool) -> Self {
        let binary = ["/usr/lib/systemd/systemd", "/lib/systemd/systemd"]
            .into_iter()
            .find(|p| Path::new(p).exists())
            .expect("systemd's binary (the systemd package) is not installed");
        assert!(
            !runtime.exists(),
            "{} is there already: is a manager running?",
            runtime.display()
        );
        std::fs::create_dir_all(&runtime).unwrap();
        let config = runtime.join("config");
        let unit_dir = config.join("systemd/user");
        std::fs::create_dir_all(&unit_dir).unwrap();
        for (name, text) in units {
            std::fs::write(unit_dir.join(name), text).unwrap();
        }
        // A private /run/systemd (a tmpfs in the namespace only) says systemd booted.
        let bus_daemon = if bus {
            format!(
                "dbus-daemon --session --fork --address=unix:path={}/bus && ",
                runtime.display()
            )
        } else {
            String::new()
        };
        let script = format!(
            "mkdir -p /run/systemd && mount -t tmpfs tmpfs /run/systemd && mkdir /run/systemd/system && {bus_daemon}exec {binary} --user --log-target=console"
        );
        let child = Command::new("unshare")
            .args(["--mount", "--propagation", "private", "sh", "-c", &script])
            .env("XDG_RUNTIME_DIR", &runtime)
            .env("XDG_CONFIG_HOME", &config)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("running unshare (util-linux)");
        let mut m = Self { child, runtime };
        let socket = m.socket();
        let t = Instant::now();
        while !Path::new(&socket).exists() {
            if let Ok(Some(status)) = m.child.try_wait() {
                panic!("systemd --user exited before its socket appeared: {status}");
            }
            assert!(
                t.elapsed() < Duration::from_secs(20),
                "no {socket} within 20 s"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        m
    }

    fn socket(&self) -> String {
        self.runtime
            .join("systemd/private")
            .to_string_lossy()
            .into_owned()
    }
}

impl Manager {
    /// `systemctl --user ARGS` against this manager (in its mount namespace, where
    /// systemd booted); its exit status.
    fn systemctl(&self, args: &[&str]) -> std::process::ExitStatus {
        Command::new("nsenter")
            .args([
                "-t",
                &self.child.id().to_string(),
                "-m",
                "systemctl",
                "--user",
            ])
            .args(args)
            .env("XDG_RUNTIME_DIR", &self.runtime)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .expect("running nsenter (util-linux) and systemctl")
    }
}

impl Drop for Manager {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        // Its D-Bus daemon, if it had one.
        let _ = Command::new("pkill")
            .args([
                "-f",
                &format!("dbus-daemon.*{}/bus", self.runtime.display()),
            ])
            .status();
        let _ = std::fs::remove_dir_all(&self.runtime);
    }
}

/// Every connection is answered, at once: systemd's sd-bus server leaves a call
/// unanswered when the client's `BEGIN` reaches it with that call (zbus's own handshake
/// did so on most connections); tracer sends `BEGIN` with its `AUTH`, as systemctl does.
/// The manager's well-known sender name on that socket is taken, too.
#[tokio::test]
async fn a_manager_s_own_socket_answers_every_connection() {
    if !privileged() {
        return;
    }
    let manager = Manager::start();
    let socket = manager.socket();
    for i in 0..20 {
        let asked = async {
            let sd = Systemd::over_socket(&socket).await?;
            let times = sd.boot_times().await?;
            let unit = sd.unit("default.target").await?;
            Ok::<_, tracer::systemd::SystemdError>((times, unit))
        };
        let Ok(answer) = tokio::time::timeout(Duration::from_secs(3), asked).await else {
            panic!("connection {i}: no answer within 3 s");
        };
        let (times, unit) = answer.unwrap_or_else(|e| panic!("connection {i}: {e}"));
        assert!(
            times.version.starts_with(|c: char| c.is_ascii_digit()),
            "connection {i}: systemd's version {:?}",
            times.version
        );
        assert_eq!(unit.id, "default.target", "connection {i}");
        assert_eq!(unit.load_state, "loaded", "connection {i}");
    }
}

/// `tracer why user@0.service/UNIT` asks user 0's manager, over its socket in
/// /run/user/0, and says whose account it is.
#[tokio::test]
async fn a_user_s_unit_is_asked_of_that_user_s_manager() {
    if !privileged() {
        return;
    }
    let runtime = PathBuf::from("/run/user/0");
    if runtime.exists() {
        // A real session of root's (not on the CI host): nothing to start, nothing to remove.
        eprintln!("skipped: /run/user/0 is there already (a session of root's)");
        return;
    }
    let _manager = Manager::start_in(runtime, &[], false);
    let query = tracer::protocol::Query::Why {
        unit: "user@0.service/default.target".into(),
        json: false,
    };
    let facts = tracer::systemd::facts_for(&query, &tracer::systemd::Link::default())
        .await
        .expect("user 0's manager answered");
    assert_eq!(facts.user, Some(0));
    assert_eq!(facts.units.len(), 1);
    assert_eq!(facts.units[0].id, "default.target");
    assert_eq!(facts.units[0].load_state, "loaded");
    // The system's account is not asked for it: this host's pid 1 is not systemd, and the
    // answer came all the same.
}

/// systemd's changes, followed as they happen over the manager's socket: a start whose
/// required unit fails ends `dependency`, and the fold of the recorded changes names the
/// unit it required, how that one's job ended and its Result=, as systemd said it; the
/// failed unit's own account (its ExecStart= with how it ended) is recorded right after.
#[tokio::test]
async fn a_manager_s_changes_are_recorded_and_name_a_failed_dependency() {
    if !privileged() {
        return;
    }
    let manager = Manager::start_in(Manager::own_runtime("changes"), &DEPENDENCY_UNITS, false);
    let sd = Systemd::over_socket(&manager.socket()).await.unwrap();
    follow_a_failed_dependency(&manager, sd).await;
}

/// The same over a bus (the system bus, when pid 1's socket is slow or refused): there
/// pid 1 sends its signals only to the clients that subscribed, and only pid 1's are taken.
#[tokio::test]
async fn a_manager_s_changes_are_recorded_over_a_bus() {
    if !privileged() {
        return;
    }
    let manager = Manager::start_in(Manager::own_runtime("bus"), &DEPENDENCY_UNITS, true);
    let address = format!("unix:path={}/bus", manager.runtime.display());
    // The manager takes its name on the bus once it is up.
    let t = Instant::now();
    let sd = loop {
        if let Ok(sd) = Systemd::over_bus(&address).await
            && sd.boot_times().await.is_ok()
        {
            break sd;
        }
        assert!(
            t.elapsed() < Duration::from_secs(20),
            "no manager on {address} within 20 s"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    follow_a_failed_dependency(&manager, sd).await;
}

/// A unit that fails its start, and one that requires it.
const DEPENDENCY_UNITS: [(&str, &str); 2] = [
    (
        "db.service",
        "[Service]\nType=oneshot\nExecStart=/bin/false --db\n",
    ),
    (
        "web.service",
        "[Unit]\nRequires=db.service\nAfter=db.service\n[Service]\nExecStart=/bin/sleep 600\n",
    ),
];

async fn follow_a_failed_dependency(manager: &Manager, sd: Systemd) {
    use std::sync::{Arc, atomic::AtomicU64};
    use tracer::systemd::changes::{Account, Change};
    let (tx, mut rx) = tokio::sync::mpsc::channel(4096);
    let lost = Arc::new(AtomicU64::new(0));
    let following = {
        let lost = lost.clone();
        tokio::spawn(async move { sd.follow(&tx, &lost).await })
    };
    // Its subscription made (the first change then is the start's).
    tokio::time::sleep(Duration::from_millis(500)).await;
    let started = manager.systemctl(&["start", "web.service"]);
    assert!(!started.success(), "systemctl start web.service: {started}");
    let mut changes = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    let done = |changes: &[Change]| {
        let removed = changes.iter().any(
            |c| matches!(c, Change::JobRemoved { unit, result, .. } if unit == "web.service" && result == "dependency"),
        );
        let asked = |name: &str| {
            changes
                .iter()
                .any(|c| matches!(c, Change::Unit { unit, .. } if unit.id == name))
        };
        removed && asked("web.service") && asked("db.service")
    };
    while !done(&changes) {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, rx.recv()).await {
            Ok(Some(c)) => changes.push(c),
            _ => panic!("within 20 s, not all changes came: {changes:#?}"),
        }
    }
    following.abort();
    assert_eq!(lost.load(std::sync::atomic::Ordering::Relaxed), 0);
    // systemd's transitions of db.service, with its Result=, as signalled.
    let db_states: Vec<String> = changes
        .iter()
        .filter_map(|c| match c {
            Change::Properties { unit, props, .. } if unit == "db.service" => {
                props.get("ActiveState").map(|s| format!("{s:?}"))
            }
            _ => None,
        })
        .collect();
    assert!(
        db_states.iter().any(|s| s.contains("failed")),
        "db.service's states: {db_states:?}"
    );
    let mut account = Account::default();
    for c in &changes {
        account.apply(c);
    }
    let db = account.unit("db.service").unwrap();
    let s = db.service.as_ref().unwrap();
    assert_eq!(
        (db.active_state.as_str(), s.result.as_str()),
        ("failed", "exit-code")
    );
    assert_eq!(s.exec_start[0].argv, ["/bin/false", "--db"]);
    assert_eq!(
        (s.exec_start[0].code, s.exec_start[0].status),
        (tracer::systemd::CLD_EXITED, 1)
    );
    let web = account.unit("web.service").unwrap();
    let job = web.last_job.clone().unwrap();
    assert_eq!(job.result, "dependency");
    // (With the implicit ones: its slice, basic.target.)
    assert!(
        web.requires.iter().any(|r| r == "db.service"),
        "{:?}",
        web.requires
    );
    let failed = web.dependency_failed.clone().expect("the dependency named");
    assert_eq!(
        (
            failed.unit.as_str(),
            failed.job_result.as_str(),
            failed.result.as_deref()
        ),
        ("db.service", "failed", Some("exit-code"))
    );
    let v = tracer::report::verdict::verdict(&web);
    assert_eq!(v.name(), Some("dependency"));
    let text = v.explain("web.service").unwrap();
    assert!(
        text.contains("db.service did not start (its start job failed, Result=exit-code)"),
        "{text}"
    );
}

/// Who asked for a job over the bus: a client's StartUnit, seen by the bus monitor with
/// the caller's pid, uid and command name as the bus vouches for them.
#[tokio::test]
async fn a_job_asked_for_over_the_bus_names_its_client() {
    use std::sync::{Arc, atomic::AtomicU64};
    use tracer::systemd::changes::Change;
    if !privileged() {
        return;
    }
    let manager = Manager::start_in(
        Manager::own_runtime("asked"),
        &[(
            "nap.service",
            "[Service]\nType=oneshot\nExecStart=/bin/sleep 1\n",
        )],
        true,
    );
    let address = format!("unix:path={}/bus", manager.runtime.display());
    // The manager takes its name on the bus once it is up.
    let t = Instant::now();
    loop {
        if let Ok(sd) = Systemd::over_bus(&address).await
            && sd.boot_times().await.is_ok()
        {
            break;
        }
        assert!(
            t.elapsed() < Duration::from_secs(20),
            "no manager on {address}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (tx, mut rx) = tokio::sync::mpsc::channel(64);
    let lost = Arc::new(AtomicU64::new(0));
    let monitor = tokio::spawn(tracer::systemd::requests::follow(
        Some(address.clone()),
        tx,
        lost.clone(),
    ));
    // The monitor in place (and the manager on the bus) before the call.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let client = zbus::connection::Builder::address(address.as_str())
        .unwrap()
        .build()
        .await
        .unwrap();
    let t = Instant::now();
    loop {
        let r = client
            .call_method(
                Some("org.freedesktop.systemd1"),
                "/org/freedesktop/systemd1",
                Some("org.freedesktop.systemd1.Manager"),
                "StartUnit",
                &("nap.service", "replace"),
            )
            .await;
        if r.is_ok() {
            break;
        }
        assert!(t.elapsed() < Duration::from_secs(20), "StartUnit: {r:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let asked = tokio::time::timeout(Duration::from_secs(10), async {
        while let Some(c) = rx.recv().await {
            if let Change::JobAsked { .. } = c {
                return Some(c);
            }
        }
        None
    })
    .await
    .expect("within 10 s")
    .expect("a recorded request");
    drop(client);
    monitor.abort();
    let comm = std::fs::read_to_string("/proc/self/comm").unwrap();
    let Change::JobAsked {
        unit,
        method,
        pid,
        uid,
        comm: seen,
        ..
    } = asked
    else {
        unreachable!()
    };
    assert_eq!(
        (unit.as_str(), method.as_str()),
        ("nap.service", "StartUnit")
    );
    assert_eq!(pid, Some(std::process::id()), "the caller's pid");
    assert_eq!(uid, Some(0));
    assert_eq!(seen.as_deref(), Some(comm.trim_end()));
    assert_eq!(lost.load(std::sync::atomic::Ordering::Relaxed), 0);
}
