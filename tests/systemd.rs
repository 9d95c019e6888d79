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
        let runtime = std::env::temp_dir().join(format!("tracer-systemd-{}", std::process::id()));
        Self::start_in(runtime)
    }

    /// A manager whose runtime directory (its socket's, `systemd/private` below it) is
    /// `runtime`, made for it and removed after.
    fn start_in(runtime: PathBuf) -> Self {
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
        // A private /run/systemd (a tmpfs in the namespace only) says systemd booted.
        let script = format!(
            "mkdir -p /run/systemd && mount -t tmpfs tmpfs /run/systemd && mkdir /run/systemd/system && exec {binary} --user --log-target=console"
        );
        let child = Command::new("unshare")
            .args(["--mount", "--propagation", "private", "sh", "-c", &script])
            .env("XDG_RUNTIME_DIR", &runtime)
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

impl Drop for Manager {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
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
    let _manager = Manager::start_in(runtime);
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
