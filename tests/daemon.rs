//! `tracer daemon` as a real process on the real kernel (root): the live stream with a
//! client that never reads, malformed requests, reports from its model, /metrics checked
//! by promtool and scraped by a real Prometheus, the journal after SIGTERM and after
//! `kill -9`. Outside CI a non-root run skips; in CI (CI set) it fails instead.

use std::{
    io::{BufRead, BufReader, Read, Write},
    net::TcpStream,
    os::unix::net::UnixStream,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use serde_json::Value;
use tracer::journal::{self, Item};

mod common;
use common::privileged;

const CLI: &str = env!("CARGO_BIN_EXE_tracer-cli");

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A daemon running with its own directories and metrics port.
struct Daemon {
    child: Child,
    dir: PathBuf,
    port: u16,
}

impl Daemon {
    fn start(name: &str, config: &str) -> Self {
        Self::start_in(Self::fresh_dir(name), config, free_port())
    }

    fn fresh_dir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("tracer-daemon-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    fn start_in(dir: PathBuf, config: &str, port: u16) -> Self {
        Self::start_prepared(dir, config, port, |_| {})
    }

    /// Started as `prepare` readies its command.
    fn start_prepared(
        dir: PathBuf,
        config: &str,
        port: u16,
        prepare: impl FnOnce(&mut Command),
    ) -> Self {
        let cfg = dir.join("tracer.toml");
        // Pinned programs only where a test asks (they would outlive a daemon killed).
        let pins = if config.contains("pin_dir") {
            ""
        } else {
            "pin_dir = \"\"\n"
        };
        std::fs::write(
            &cfg,
            format!(
                "state_dir = \"{0}/state\"\nruntime_dir = \"{0}/run\"\nmetrics_listen = \"127.0.0.1:{port}\"\n{pins}{config}",
                dir.display()
            ),
        )
        .unwrap();
        let mut command = Command::new(CLI);
        command
            .args(["daemon", "--config"])
            .arg(&cfg)
            .stderr(std::fs::File::create(dir.join("daemon.log")).unwrap());
        prepare(&mut command);
        let child = command.spawn().unwrap();
        let d = Self { child, dir, port };
        let deadline = Instant::now() + Duration::from_secs(20);
        // The socket is bound before the programs are loaded: the ready line says when.
        while !d.log().contains("tracer daemon: ready:") {
            assert!(
                Instant::now() < deadline,
                "the daemon did not come up: {}",
                d.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        d
    }

    fn socket(&self) -> PathBuf {
        self.dir.join("run/tracer.sock")
    }

    fn state(&self) -> PathBuf {
        self.dir.join("state")
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("daemon.log")).unwrap_or_default()
    }

    fn cli(&self, args: &[&str]) -> std::process::Output {
        Command::new(CLI)
            .args(args)
            .env("TRACER_SOCKET", self.socket())
            .output()
            .unwrap()
    }

    /// SIGTERM; returns how long it took to exit, and its status.
    fn stop(&mut self) -> (Duration, std::process::ExitStatus) {
        let t = Instant::now();
        // SAFETY: kill with our own child's pid.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let status = self.child.wait().unwrap();
        (t.elapsed(), status)
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A raw stream client.
fn subscribe(socket: &Path, filter: &str) -> BufReader<UnixStream> {
    let mut s = UnixStream::connect(socket).unwrap();
    writeln!(s, "{{\"op\":\"events\",\"filter\":{filter}}}").unwrap();
    BufReader::new(s)
}

/// Reads a stream until the exec of the pid that arrives on `last` has been seen:
/// (the execs seen, the events reported missed).
fn read_until(
    mut reader: BufReader<UnixStream>,
    last: std::sync::mpsc::Receiver<u64>,
) -> (Vec<u64>, u64) {
    reader
        .get_mut()
        .set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    let (mut seen, mut missed, mut target) = (Vec::new(), 0, None);
    let mut line = String::new();
    let deadline = Instant::now() + Duration::from_secs(120);
    while Instant::now() < deadline {
        match reader.read_line(&mut line) {
            Ok(0) => break,
            Ok(_) if line.ends_with('\n') => {
                let v: Value = serde_json::from_str(&line).unwrap();
                if v["kind"] == "missed" {
                    missed += v["count"].as_u64().unwrap();
                } else {
                    assert_eq!(v["kind"], "exec", "the daemon applied the filter: {line}");
                    assert_eq!(v["comm"], "true");
                    seen.push(v["tgid"].as_u64().unwrap());
                }
                line.clear();
            }
            _ => {} // a timeout, or half a line: read on
        }
        if let Ok(l) = last.try_recv() {
            target = Some(l);
        }
        if target.is_some_and(|t| seen.contains(&t)) {
            break;
        }
    }
    (seen, missed)
}

/// Resident set size of a process, KiB.
fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

fn http_get(port: u16, path: &str) -> String {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.0\r\nHost: localhost\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    out
}

fn body(resp: &str) -> &str {
    resp.split_once("\r\n\r\n").map_or("", |(_, b)| b)
}

fn run_true(n: usize) -> Vec<u32> {
    run(Path::new("/bin/true"), n)
}

fn run(program: &Path, n: usize) -> Vec<u32> {
    (0..n)
        .map(|_| {
            let mut c = Command::new(program).spawn().unwrap();
            let pid = c.id();
            c.wait().unwrap();
            pid
        })
        .collect()
}

#[test]
fn stream_reports_metrics_and_journal() {
    if !privileged() {
        return;
    }
    let mut d = Daemon::start("main", "");

    // A client that never reads, and one that does.
    let stalled = subscribe(&d.socket(), "{}");
    // A malformed request gets an error and a closed connection; the daemon carries on.
    let mut bad = UnixStream::connect(d.socket()).unwrap();
    bad.write_all(b"this is not json\n").unwrap();
    let mut reply = String::new();
    BufReader::new(&bad).read_line(&mut reply).unwrap();
    let v: Value = serde_json::from_str(&reply).unwrap();
    assert_eq!(v["ok"], false, "{reply}");
    assert!(
        v["error"].as_str().unwrap().contains("malformed request"),
        "{reply}"
    );

    // Enough processes that the stalled client's backlog overflows (3 events each),
    // while seven other clients read as the events come.
    let readers: Vec<_> = (0..7)
        .map(|_| {
            let (tx, rx) = std::sync::mpsc::channel::<u64>();
            let reader = subscribe(&d.socket(), "{\"kinds\":[\"exec\"],\"comms\":[\"true\"]}");
            (tx, std::thread::spawn(move || read_until(reader, rx)))
        })
        .collect();
    // A client is subscribed once the daemon has accepted it, which may be after its
    // connect returned: wait for all eight, as the stream gauge counts them.
    let deadline = Instant::now() + Duration::from_secs(10);
    while !body(&http_get(d.port, "/metrics")).contains("tracer_stream_clients 8") {
        assert!(Instant::now() < deadline, "8 stream clients connected");
        std::thread::sleep(Duration::from_millis(50));
    }
    let rss_before = rss_kib(d.child.id());
    let pids = run_true(7000);
    let last = *pids.last().unwrap();
    for (i, (tx, reading)) in readers.into_iter().enumerate() {
        tx.send(u64::from(last)).unwrap();
        let (seen, missed_by_reader) = reading.join().unwrap();
        eprintln!(
            "reading client {i} got {} execs, missed {missed_by_reader}",
            seen.len()
        );
        assert!(
            seen.contains(&u64::from(last)),
            "the last exec reached client {i}"
        );
        assert_eq!(missed_by_reader, 0, "client {i} reads, so it keeps up");
        assert!(seen.len() >= 7000, "{} of 7000", seen.len());
    }
    // A second storm: the daemon's memory does not grow with the number of processes.
    let rss_mid = rss_kib(d.child.id());
    run_true(7000);
    std::thread::sleep(Duration::from_millis(500));
    let rss_after = rss_kib(d.child.id());
    eprintln!(
        "daemon RSS: {rss_before} KiB before, {rss_mid} after 7000 processes, {rss_after} after 14000"
    );
    assert!(
        rss_after < rss_mid + 8 * 1024,
        "memory grew by {} KiB over the second storm",
        rss_after - rss_mid
    );
    let mut line = String::new();

    // The stalled client now reads: its backlog ends in a marker of what it missed.
    let mut stalled = stalled;
    stalled
        .get_mut()
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let mut missed = 0;
    for _ in 0..200_000 {
        line.clear();
        if stalled.read_line(&mut line).unwrap_or(0) == 0 {
            break;
        }
        if line.contains("\"missed\"") {
            let v: Value = serde_json::from_str(&line).unwrap();
            missed = v["count"].as_u64().unwrap();
            break;
        }
    }
    assert!(missed > 0, "the stalled client is told what it missed");

    // Reports from the daemon's model.
    let out = d.cli(&["units"]);
    assert!(out.status.success(), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("UNIT"));

    // Metrics: the series, promtool, and the stream gauge.
    std::thread::sleep(Duration::from_millis(600));
    let resp = http_get(d.port, "/metrics");
    assert!(resp.starts_with("HTTP/1.1 200"), "{resp}");
    let text = body(&resp);
    for name in [
        "tracer_exec_total",
        "tracer_process_exits_total",
        "tracer_events_total",
        "tracer_events_dropped_total",
        "tracer_stream_clients",
        "tracer_journal_bytes",
        "tracer_build_info",
        "tracer_unit_start_duration_seconds_bucket",
    ] {
        assert!(text.contains(name), "{name} missing from /metrics");
    }
    let execs: f64 = text
        .lines()
        .filter(|l| l.starts_with("tracer_events_total{kind=\"exec\"}"))
        .filter_map(|l| l.split_whitespace().last()?.parse::<f64>().ok())
        .sum();
    assert!(execs >= 14000.0, "exec events counted: {execs}");
    // Nothing went wrong in the journal, and each of its operations has its series.
    for op in [
        "write",
        "flush",
        "sync",
        "rotate",
        "dropped",
        "recreate",
        "oversized",
    ] {
        let line = format!("tracer_journal_errors_total{{op=\"{op}\"}} 0");
        assert!(
            text.lines().any(|l| l == line),
            "{line} missing from /metrics"
        );
    }
    assert!(http_get(d.port, "/nope").starts_with("HTTP/1.1 404"));
    promtool_check(text);

    // `tracer events -f`: the journal's last events, then the live ones, each once. A
    // program of our own name, so that no other `true` on the machine counts.
    let mine = d.dir.join("tracer-t-mine");
    std::fs::copy("/bin/true", &mine).unwrap();
    let first = run(&mine, 3);
    std::thread::sleep(Duration::from_millis(1500)); // the journal's flush interval
    let mut follow = Command::new(CLI)
        .args([
            "events",
            "-f",
            "-n",
            "2",
            "--comm",
            "tracer-t-mine",
            "--kind",
            "exec",
            "--json",
        ])
        .env("TRACER_SOCKET", d.socket())
        .arg("--state-dir")
        .arg(d.state())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(follow.stdout.take().unwrap()).lines();
    let pid_of = |l: &str| {
        serde_json::from_str::<Value>(l).unwrap()["pid"]
            .as_u64()
            .unwrap()
    };
    let tail: Vec<u64> = (0..2)
        .map(|_| pid_of(&lines.next().unwrap().unwrap()))
        .collect();
    assert_eq!(
        tail,
        [u64::from(first[1]), u64::from(first[2])],
        "-f starts with the journal's last events"
    );
    let more = run(&mine, 5);
    let live: Vec<u64> = (0..5)
        .map(|_| pid_of(&lines.next().unwrap().unwrap()))
        .collect();
    assert_eq!(
        live,
        more.iter().map(|&p| u64::from(p)).collect::<Vec<_>>(),
        "then the new execs, in order, none twice"
    );
    let _ = follow.kill();
    let _ = follow.wait();

    // SIGTERM: flushed and gone within seconds. Most of a stop is the kernel's: each
    // detached tracepoint program waits out an RCU grace period (strace on an idle host:
    // 9 closes of 60-75 ms, 0.66 s in all; more under load, as when the tests run in
    // parallel).
    let (took, status) = d.stop();
    assert!(status.success(), "{status}: {}", d.log());
    assert!(took < Duration::from_secs(3), "stopped in {took:?}");

    // The journal holds the storm, and `tracer events --boot 0` replays it.
    let (execs, damage, _) = journaled_execs(&d.state().join("journal"));
    assert!(damage.is_empty(), "{damage:?}");
    assert!(
        pids.iter().all(|p| execs.contains(p)),
        "every exec journaled"
    );
    let state = d.state();
    let out = d.cli(&[
        "events",
        "--boot",
        "0",
        "--json",
        "--pid",
        &last.to_string(),
        "--state-dir",
        state.to_str().unwrap(),
    ]);
    let replay = String::from_utf8_lossy(&out.stdout);
    assert!(
        replay.lines().any(|l| l.contains("\"kind\":\"exec\"")),
        "{replay}"
    );
    // -n 3: the boot's last three matching events.
    let out = d.cli(&[
        "events",
        "-n",
        "3",
        "--comm",
        "tracer-t-mine",
        "--kind",
        "exec",
        "--json",
        "--state-dir",
        state.to_str().unwrap(),
    ]);
    let tail: Vec<Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(tail.len(), 3, "{tail:?}");
    assert_eq!(
        tail[2]["pid"].as_u64(),
        more.last().map(|&p| u64::from(p)),
        "the newest last: {tail:?}"
    );
    let out = d.cli(&[
        "journal",
        "list",
        "--json",
        "--state-dir",
        state.to_str().unwrap(),
    ]);
    let boots: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(boots.as_array().unwrap().len(), 1);
    assert!(boots[0]["events"].as_u64().unwrap() >= 42_000);
}

/// The pids whose exec the newest boot's journal holds, the damage found, and the
/// number of segments.
fn journaled_execs(root: &Path) -> (std::collections::HashSet<u32>, Vec<journal::Damage>, usize) {
    let boot = journal::find_boot(root, "0").unwrap();
    let mut execs = std::collections::HashSet::new();
    let damage = journal::read_boot(&boot, |i| {
        if let Item::Event(ev) = i
            && ev.kind_name() == "exec"
        {
            execs.insert(ev.tgid);
        }
    })
    .unwrap();
    (execs, damage, boot.segments)
}

fn promtool_check(text: &str) {
    let Ok(mut child) = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
    else {
        assert!(
            std::env::var_os("CI").is_none(),
            "promtool is missing (scripts/setup.sh installs it)"
        );
        eprintln!("skipped promtool: not installed");
        return;
    };
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "promtool check metrics: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn kill_9_loses_at_most_the_unflushed_tail() {
    if !privileged() {
        return;
    }
    let mut d = Daemon::start("kill9", "[journal]\nflush_interval_ms = 200\n");
    let before = run_true(300);
    // Longer than the flush interval: all of that has reached the kernel.
    std::thread::sleep(Duration::from_millis(800));
    let during = std::thread::spawn(|| run_true(300));
    std::thread::sleep(Duration::from_millis(100));
    d.child.kill().unwrap(); // SIGKILL, mid-storm
    d.child.wait().unwrap();
    during.join().unwrap();

    let root = d.state().join("journal");
    let (execs, damage, _) = journaled_execs(&root);
    assert!(
        before.iter().all(|p| execs.contains(p)),
        "everything flushed before the kill is there"
    );
    // At most a torn frame at the very end.
    assert!(
        damage.len() <= 1 && damage.iter().all(|x| x.what.contains("tail")),
        "{damage:?}"
    );

    // Restarted in the same boot, it continues in a new segment and all reads back.
    let dir = d.dir.clone();
    let port = d.port;
    std::mem::forget(d);
    let mut d = Daemon::start_in(dir, "[journal]\nflush_interval_ms = 200\n", port);
    let after = run_true(50);
    std::thread::sleep(Duration::from_millis(400));
    let (_, status) = d.stop();
    assert!(status.success());
    let (execs, _, segments) = journaled_execs(&root);
    assert_eq!(segments, 2);
    assert!(after.iter().chain(&before).all(|p| execs.contains(p)));
}

/// A unit of the test's own, without systemd: a cgroup named like a service at the top of
/// the cgroup2 tree, which the daemon takes for a unit, and a shell named `systemd` that
/// starts each run's process there (the model takes a child of a process of that name for
/// a manager's). Each run makes the cgroup, runs a program in it as its only process, and
/// removes the cgroup.
struct FakeUnit {
    name: String,
    dir: PathBuf,
    manager: PathBuf,
}

impl FakeUnit {
    fn new(name: &str, scratch: &Path) -> Self {
        let dir = tracer::cgroup::find_cgroup2_mount().unwrap().join(name);
        let _ = std::fs::remove_dir(&dir);
        let manager = scratch.join("systemd");
        std::fs::copy("/bin/sh", &manager).unwrap();
        Self {
            name: name.to_owned(),
            dir,
            manager,
        }
    }

    /// One run of `program`, whose process's exit status the manager shell ignores.
    fn run(&self, program: &Path) {
        std::fs::create_dir(&self.dir).unwrap();
        let status = Command::new(&self.manager)
            .args([
                "-c",
                "(echo 0 > \"$1/cgroup.procs\" && exec \"$2\"); exit 0",
                "sh",
            ])
            .arg(&self.dir)
            .arg(program)
            .stderr(Stdio::null())
            .status()
            .unwrap();
        assert!(status.success(), "{status}");
        std::fs::remove_dir(&self.dir).unwrap();
    }
}

impl Drop for FakeUnit {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir(&self.dir);
    }
}

/// A child process killed when dropped (also when a test panics).
struct KilledOnDrop(Child);

impl Drop for KilledOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `s` as a URL's query value.
fn url_encoded(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                char::from(b).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// A GET of Prometheus's HTTP API: its JSON answer, or what went wrong.
fn prom_api(port: u16, path: &str) -> Result<Value, String> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).map_err(|e| e.to_string())?;
    s.set_read_timeout(Some(Duration::from_secs(10)))
        .map_err(|e| e.to_string())?;
    write!(
        s,
        "GET {path} HTTP/1.0\r\nHost: localhost\r\nConnection: close\r\n\r\n"
    )
    .map_err(|e| e.to_string())?;
    let mut resp = String::new();
    s.read_to_string(&mut resp).map_err(|e| e.to_string())?;
    serde_json::from_str(body(&resp).trim()).map_err(|e| format!("{e}: {resp:.300}"))
}

/// An instant query's series, or why there are none (an error, or an empty answer).
fn prom_query(port: u16, query: &str) -> Result<Vec<Value>, String> {
    let v = prom_api(port, &format!("/api/v1/query?query={}", url_encoded(query)))?;
    if v["status"] != "success" {
        return Err(format!("{query}: {v}"));
    }
    match v["data"]["result"].as_array() {
        Some(r) if !r.is_empty() => Ok(r.clone()),
        _ => Err(format!("{query}: no series ({v})")),
    }
}

/// The `tracer_*` metric names a PromQL expression reads.
fn metric_names(query: &str) -> Vec<String> {
    let mut names: Vec<String> = query
        .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == ':'))
        .filter(|w| w.starts_with("tracer_"))
        .map(str::to_owned)
        .collect();
    names.sort();
    names.dedup();
    names
}

/// Asks `check` again every half second until it holds or `secs` pass; its last answer.
fn eventually<T>(secs: u64, mut check: impl FnMut() -> Result<T, String>) -> Result<T, String> {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        match check() {
            Ok(t) => return Ok(t),
            Err(e) if Instant::now() > deadline => return Err(e),
            Err(_) => std::thread::sleep(Duration::from_millis(500)),
        }
    }
}

/// A real Prometheus scrapes the daemon, with tracer's alert rules loaded, while a unit of
/// the test's own fails its exec three times (a crash loop). Every alert's expression is
/// evaluated, the metrics each reads exist under their names, the alerts that the workload
/// calls for fire with the unit in `name`, and every query of the dashboard returns series.
#[test]
fn a_real_prometheus_scrapes_the_daemon() {
    if !privileged() {
        return;
    }
    if Command::new("prometheus")
        .arg("--version")
        .output()
        .is_err()
    {
        assert!(
            std::env::var_os("CI").is_none(),
            "prometheus is missing (scripts/setup.sh installs it)"
        );
        eprintln!("skipped: prometheus is not installed");
        return;
    }
    let dir = Daemon::fresh_dir("prom");
    // No journald here, or not one to write to: every finding counts as unavailable.
    let d = Daemon::start_in(
        dir.clone(),
        &format!(
            "[systemd_journal]\nsocket = \"{}/no-journald.sock\"\n",
            dir.display()
        ),
        free_port(),
    );
    let prom_port = free_port();
    let cfg = d.dir.join("prometheus.yml");
    let rules = common::dist("tracer-alerts.yml");
    std::fs::write(
        &cfg,
        format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nrule_files:\n  - {}\nscrape_configs:\n  - job_name: tracer\n    static_configs:\n      - targets: ['127.0.0.1:{}']\n",
            rules.display(),
            d.port
        ),
    )
    .unwrap();
    let prom = KilledOnDrop(
        Command::new("prometheus")
            .arg(format!("--config.file={}", cfg.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                d.dir.join("tsdb").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{prom_port}"))
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(d.dir.join("prometheus.log")).unwrap())
            .spawn()
            .unwrap(),
    );
    let checked = (|| {
        let build = eventually(60, || prom_query(prom_port, "tracer_build_info == 1"))?;
        if build[0]["metric"]["job"] != "tracer" || !build[0]["metric"]["version"].is_string() {
            return Err(format!("tracer_build_info: {build:?}"));
        }
        // Prometheus has seen the daemon's series before the unit fails: the counters made
        // at start (lost events, journal errors, the systemd journal's) are at 0.
        eventually(30, || {
            prom_query(prom_port, "tracer_systemd_journal_entries_total")
        })?;
        let unit = FakeUnit::new(
            &format!("tracer-prom-{}.service", std::process::id()),
            &d.dir,
        );
        // Mode 0644: its exec fails with EACCES, three runs in a row (a crash loop).
        let refused = d.dir.join("not-executable.sh");
        std::fs::write(&refused, "#!/bin/sh\n").unwrap();
        for _ in 0..3 {
            unit.run(&refused);
        }
        run_true(20);
        let instance = format!("127.0.0.1:{}", d.port);
        let mut said = Vec::new();

        // The rules Prometheus loaded are the file's, each evaluated without error.
        let names = common::alert_names(&std::fs::read_to_string(&rules).unwrap());
        let loaded = eventually(30, || {
            let v = prom_api(prom_port, "/api/v1/rules")?;
            let rules: Vec<Value> = v["data"]["groups"]
                .as_array()
                .into_iter()
                .flatten()
                .flat_map(|g| g["rules"].as_array().cloned().unwrap_or_default())
                .collect();
            let bad: Vec<_> = rules.iter().filter(|r| r["health"] != "ok").collect();
            if rules.len() != names.len() || !bad.is_empty() {
                return Err(format!("rules not all loaded and healthy: {v}"));
            }
            Ok(rules)
        })?;
        for rule in &loaded {
            let (name, query) = (
                rule["name"].as_str().unwrap(),
                rule["query"].as_str().unwrap(),
            );
            if !names.iter().any(|n| n == name) {
                said.push(format!("{name}: loaded, not in {}", rules.display()));
            }
            // The expression evaluates (an empty answer is an alert that does not fire)...
            let v = prom_api(
                prom_port,
                &format!("/api/v1/query?query={}", url_encoded(query)),
            )?;
            if v["status"] != "success" {
                said.push(format!("{name}: {query}: {v}"));
            }
            // ...and every series it reads is one the daemon exports.
            let metrics = metric_names(query);
            if metrics.is_empty() {
                said.push(format!("{name} reads none of tracer's series: {query}"));
            }
            for m in metrics {
                if let Err(e) = eventually(10, || prom_query(prom_port, &format!("count({m})"))) {
                    said.push(format!("{name}: {e}"));
                }
            }
        }
        // The alerts the workload calls for: firing, on the unit's `name`.
        let expected = [
            ("TracerUnitCrashLoop", "name", unit.name.as_str()),
            ("TracerUnitFailed", "name", unit.name.as_str()),
            ("TracerExecFailures", "name", unit.name.as_str()),
            ("TracerExecFailures", "errno", "EACCES"),
            ("TracerSystemdJournalErrors", "result", "unavailable"),
        ];
        for (alert, label, value) in expected {
            let firing = eventually(30, || {
                let v = prom_api(prom_port, "/api/v1/alerts")?;
                v["data"]["alerts"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .find(|a| {
                        a["labels"]["alertname"] == alert
                            && a["labels"][label] == value
                            && a["labels"]["instance"] == instance.as_str()
                            && a["state"] == "firing"
                    })
                    .cloned()
                    .ok_or_else(|| format!("{alert}{{{label}=\"{value}\"}} not firing: {v}"))
            });
            match firing {
                Ok(a) => eprintln!("firing: {}", a["annotations"]["summary"]),
                Err(e) => said.push(e),
            }
        }

        // Every panel of the dashboard shows something.
        let dashboard: Value = serde_json::from_str(
            &std::fs::read_to_string(common::dist("tracer-dashboard.json")).unwrap(),
        )
        .unwrap();
        let vars = [("instance", instance.as_str()), ("__rate_interval", "1m")];
        for (panel, query) in common::dashboard_queries(&dashboard)? {
            let query = common::with_variables(&query, &vars)?;
            match eventually(30, || prom_query(prom_port, &query)) {
                Ok(series) => eprintln!("{panel}: {} series for {query}", series.len()),
                Err(e) => said.push(format!("{panel}: {e}")),
            }
        }
        if said.is_empty() {
            Ok(())
        } else {
            Err(said.join("\n"))
        }
    })();
    drop(prom);
    if let Err(e) = checked {
        panic!(
            "{e}\nPrometheus's log: {}\nthe daemon's: {}",
            std::fs::read_to_string(d.dir.join("prometheus.log")).unwrap_or_default(),
            d.log()
        );
    }
}

#[test]
fn sighup_writes_the_journal_through_and_the_daemon_goes_on() {
    if !privileged() {
        return;
    }
    // No flush on the timer within the test: what is on disk, SIGHUP wrote.
    let mut d = Daemon::start("hup", "[journal]\nflush_interval_ms = 600000\n");
    let before = run_true(50);
    std::thread::sleep(Duration::from_millis(300));
    // SAFETY: kill with our own child's pid.
    unsafe { libc::kill(d.child.id() as i32, libc::SIGHUP) };
    std::thread::sleep(Duration::from_millis(500));
    assert!(
        d.child.try_wait().unwrap().is_none(),
        "the daemon is still running after SIGHUP: {}",
        d.log()
    );
    let (execs, damage, _) = journaled_execs(&d.state().join("journal"));
    assert!(damage.is_empty(), "{damage:?}");
    assert!(
        before.iter().all(|p| execs.contains(p)),
        "what ran before SIGHUP is on disk"
    );
    let (_, status) = d.stop();
    assert!(status.success());
}

/// Takes a write lease on `path` and ignores the kernel's call to give it up (SIGIO): an
/// open of the file by anyone else then waits for fs.lease-break-time (45 s). Released
/// when the file is dropped.
fn hold_write_lease(path: &Path) -> std::fs::File {
    use std::os::fd::AsRawFd as _;
    // SAFETY: ignoring a signal; nothing in these tests relies on SIGIO.
    unsafe { libc::signal(libc::SIGIO, libc::SIG_IGN) };
    let f = std::fs::OpenOptions::new().write(true).open(path).unwrap();
    // SAFETY: fcntl on our own open descriptor.
    let r = unsafe { libc::fcntl(f.as_raw_fd(), libc::F_SETLEASE, libc::F_WRLCK) };
    assert_eq!(r, 0, "a write lease: {}", std::io::Error::last_os_error());
    f
}

/// Issue 15, finding 2: any user could stop the whole daemon with one failed exec of a
/// file they hold a write lease on. The daemon looked at the file inside the ring-buffer
/// callback, and its open waited for the lease (45 s): nothing was read, journaled or
/// served meanwhile. Now a look is had only for a unit's command, off the event path.
#[test]
fn a_failed_exec_of_a_leased_file_does_not_stop_the_daemon() {
    use std::os::unix::fs::PermissionsExt as _;
    if !privileged() {
        return;
    }
    let d = Daemon::start("lease", "");
    let file = d.dir.join("leased.sh");
    std::fs::write(&file, "#!/bin/sh\n").unwrap();
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).unwrap();
    let _lease = hold_write_lease(&file);
    let reader = subscribe(&d.socket(), "{\"kinds\":[\"exec\"],\"comms\":[\"true\"]}");
    std::thread::sleep(Duration::from_millis(300));
    let refused = Command::new(&file).status().unwrap_err();
    assert_eq!(refused.raw_os_error(), Some(libc::EACCES));
    let started = Instant::now();
    let pids = run_true(5);
    let (tx, last) = std::sync::mpsc::channel();
    tx.send(u64::from(*pids.last().unwrap())).unwrap();
    let (seen, _) = read_until(reader, last);
    let took = started.elapsed();
    assert!(
        pids.iter().all(|p| seen.contains(&u64::from(*p))),
        "every exec after the failed one reached the stream: {seen:?} of {pids:?}"
    );
    assert!(
        took < Duration::from_secs(10),
        "the stream was stalled {took:?} after the failed exec"
    );
}

/// The soft and hard limits on open files of this process.
fn fd_limits() -> (u64, u64) {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit fills the struct it is given.
    assert_eq!(
        unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &raw mut lim) },
        0
    );
    (lim.rlim_cur, lim.rlim_max)
}

/// CPU time (user + system) a process has used.
fn cpu_time(pid: u32) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    // Fields after the command (which may hold spaces), from field 3 on.
    let rest = &stat[stat.rfind(')').unwrap() + 2..];
    let f: Vec<u64> = rest
        .split_whitespace()
        .map(|x| x.parse().unwrap_or(0))
        .collect();
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as u64;
    Duration::from_millis((f[11] + f[12]) * 1000 / hz)
}

/// Issue 15, finding 3: 1100 idle connections to the socket and as many to /metrics took
/// the daemon (systemd's soft limit of 1024 open files) to EMFILE; its accept loops then
/// retried at 100% CPU and /metrics timed out. Now the soft limit is raised to the hard
/// one, a connection that has not asked closes the oldest waiting one past a cap, and a
/// failed accept pauses.
#[test]
fn idle_connections_cannot_exhaust_the_daemon() {
    use std::os::unix::process::CommandExt as _;
    if !privileged() {
        return;
    }
    let (_, hard) = fd_limits();
    assert!(
        hard >= 4000,
        "the test needs 4000 open files (hard limit {hard})"
    );
    let lim = libc::rlimit {
        rlim_cur: hard,
        rlim_max: hard,
    };
    // SAFETY: setrlimit reads the struct it is given.
    assert_eq!(
        unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raw const lim) },
        0
    );
    let port = free_port();
    let d = Daemon::start_prepared(Daemon::fresh_dir("fds"), "", port, |c| {
        // SAFETY: only setrlimit, async-signal-safe, between fork and exec.
        unsafe {
            c.pre_exec(move || {
                let lim = libc::rlimit {
                    rlim_cur: 1024,
                    rlim_max: hard,
                };
                libc::setrlimit(libc::RLIMIT_NOFILE, &raw const lim);
                Ok(())
            });
        }
    });
    // Open them on a thread: a daemon that stopped accepting would leave connect waiting.
    let (tx, opened) = std::sync::mpsc::channel();
    let socket = d.socket();
    std::thread::spawn(move || {
        for _ in 0..1100 {
            let (Ok(u), Ok(t)) = (
                UnixStream::connect(&socket),
                TcpStream::connect(("127.0.0.1", port)),
            ) else {
                return;
            };
            if tx.send((u, t)).is_err() {
                return;
            }
        }
    });
    let mut idle = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while idle.len() < 1100 && Instant::now() < deadline {
        if let Ok(c) = opened.recv_timeout(Duration::from_millis(100)) {
            idle.push(c);
        }
    }
    assert_eq!(idle.len(), 1100, "every connection was made: {}", d.log());
    // Within the 5 s a connection may wait for its request (the old daemon freed its
    // descriptors only then).
    std::thread::sleep(Duration::from_millis(200));
    let before = cpu_time(d.child.id());
    std::thread::sleep(Duration::from_secs(2));
    let spent = cpu_time(d.child.id()) - before;
    assert!(
        spent < Duration::from_millis(500),
        "the daemon spent {spent:?} of CPU in 2 s with {} idle connections",
        idle.len() * 2
    );
    let started = Instant::now();
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(s, "GET /metrics HTTP/1.0\r\n\r\n").unwrap();
    let mut resp = String::new();
    let _ = s.read_to_string(&mut resp);
    let took = started.elapsed();
    assert!(
        resp.starts_with("HTTP/1.1 200") && resp.contains("tracer_build_info"),
        "a scrape with {} idle connections open, after {took:?}: {resp:.200}",
        idle.len() * 2,
    );
    assert!(took < Duration::from_secs(2), "the scrape took {took:?}");
    let units = d.cli(&["units"]);
    assert!(
        units.status.success(),
        "a report over the socket: {}",
        String::from_utf8_lossy(&units.stderr)
    );
    assert!(d.log().contains("open_files_limit="), "{}", d.log());
    drop(idle);
}

/// `tracer daemon` with this config, expected to refuse to start: its exit status and
/// what it said, within 20 s.
fn refused_start(dir: &Path, config: &str) -> (std::process::ExitStatus, String) {
    let cfg = dir.join("refused.toml");
    std::fs::write(&cfg, config).unwrap();
    let mut child = Command::new(CLI)
        .args(["daemon", "--config"])
        .arg(&cfg)
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("the daemon kept running with {config}");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let mut err = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    (status, err)
}

/// Issue 16: `tracer.toml.d/*.toml` beside the configuration file are laid over it in the
/// order of their names: the last one's metrics address is where /metrics answers, and a
/// drop-in's size string is the journal's cap; a bad drop-in stops the start, named.
#[test]
fn a_drop_in_overrides_the_configuration_file() {
    if !privileged() {
        return;
    }
    let dir = Daemon::fresh_dir("dropin");
    let (first, last) = (free_port(), free_port());
    let dropins = dir.join("tracer.toml.d");
    std::fs::create_dir_all(&dropins).unwrap();
    std::fs::write(
        dropins.join("20-metrics.toml"),
        format!(
            "metrics_listen = \"127.0.0.1:{last}\"\nask_systemd = false\n[journal]\nmax_bytes = \"40M\"\n"
        ),
    )
    .unwrap();
    std::fs::write(
        dropins.join("10-metrics.toml"),
        "metrics_listen = \"127.0.0.1:1\"\n[journal]\nsegment_bytes = \"2M\"\n",
    )
    .unwrap();
    let mut d = Daemon::start_in(dir.clone(), "", first);
    let metrics = http_get(last, "/metrics");
    assert!(
        metrics.starts_with("HTTP/1.1 200") || metrics.starts_with("HTTP/1.0 200"),
        "/metrics answers at the last drop-in's address: {metrics:.200}"
    );
    assert!(
        TcpStream::connect(("127.0.0.1", first)).is_err(),
        "and not at the main file's"
    );
    let log = d.log();
    let ready = log
        .lines()
        .find(|l| l.contains("tracer daemon: ready:"))
        .unwrap();
    assert!(
        ready.contains(&format!("metrics=http://127.0.0.1:{last}/metrics"))
            && ready.contains(&format!("journal_max_bytes={}", 40 << 20))
            && ready.contains(" systemd=off "),
        "the last drop-in's address, its \"40M\" and ask_systemd = false: {ready}"
    );
    let (_, status) = d.stop();
    assert!(status.success(), "{}", d.log());
    // `journal` takes --json as every report does: its list (also without `list`), and
    // the space the boots take.
    let state = d.state();
    let state = state.to_str().unwrap();
    let list = |args: &[&str]| -> Value {
        let out = d.cli(args);
        assert!(out.status.success(), "{args:?}: {out:?}");
        serde_json::from_slice(&out.stdout).unwrap()
    };
    let boots = list(&["journal", "--json", "--state-dir", state]);
    assert_eq!(boots.as_array().map(Vec::len), Some(1), "{boots}");
    assert_eq!(
        list(&["journal", "list", "--json", "--state-dir", state]),
        boots
    );
    let usage = list(&["journal", "--disk-usage", "--json", "--state-dir", state]);
    assert_eq!(usage["boots"], 1, "{usage}");
    assert_eq!(usage["bytes"], boots[0]["bytes"], "{usage}");

    // refused_start writes refused.toml: its drop-ins are refused.toml.d/.
    let bad = dir.join("refused.toml.d");
    std::fs::create_dir_all(&bad).unwrap();
    std::fs::write(bad.join("30-bad.toml"), "[journal]\nmax_bytes = \"huge\"\n").unwrap();
    let (status, err) = refused_start(
        &dir,
        &format!(
            "state_dir = \"{0}/state\"\nruntime_dir = \"{0}/run\"\nmetrics_listen = \"\"\n",
            dir.display()
        ),
    );
    assert!(!status.success(), "{err}");
    assert!(
        err.contains(&bad.join("30-bad.toml").display().to_string()) && err.contains("\"256M\""),
        "the bad drop-in is named, with what a size looks like: {err}"
    );
}

/// Issue 15, finding 9: two daemons on one state directory both journaled every event;
/// now the second is refused before it loads anything, and says who holds it.
#[test]
fn a_second_daemon_on_the_same_state_directory_is_refused() {
    if !privileged() {
        return;
    }
    let mut d = Daemon::start("lock", "");
    let other = d.dir.join("other");
    std::fs::create_dir_all(&other).unwrap();
    let (status, err) = refused_start(
        &other,
        &format!(
            "state_dir = \"{}\"\nruntime_dir = \"{}/run\"\nmetrics_listen = \"\"\n",
            d.state().display(),
            other.display()
        ),
    );
    assert!(!status.success(), "{err}");
    assert!(
        err.contains("another tracer daemon") && err.contains(&format!("pid {}", d.child.id())),
        "{err}"
    );
    assert!(
        !other.join("run/tracer.sock").exists(),
        "the second daemon set nothing up"
    );
    let (_, status) = d.stop();
    assert!(status.success(), "the first goes on: {}", d.log());
}

/// Issue 15, finding 9: a /metrics port in use stopped the daemon only after its programs
/// were loaded and a journal segment written. Now it is refused before anything is done.
#[test]
fn a_metrics_port_in_use_is_refused_before_anything_is_done() {
    if !privileged() {
        return;
    }
    let dir = Daemon::fresh_dir("port");
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let (status, err) = refused_start(
        &dir,
        &format!(
            "state_dir = \"{0}/state\"\nruntime_dir = \"{0}/run\"\nmetrics_listen = \"127.0.0.1:{port}\"\n",
            dir.display()
        ),
    );
    assert!(!status.success(), "{err}");
    assert!(
        !dir.join("state/journal").exists(),
        "nothing was journaled: {err}"
    );
    assert!(
        err.contains(&format!("127.0.0.1:{port}")) && err.contains("metrics_listen"),
        "{err}"
    );
}

/// Issue 15, finding 9: no WatchdogSec=, so a stalled daemon went on looking alive. Now
/// the loop that reads the ring buffer sends WATCHDOG=1 at half the interval systemd asks.
#[test]
fn the_daemon_keeps_systemd_s_watchdog() {
    if !privileged() {
        return;
    }
    let dir = Daemon::fresh_dir("watchdog");
    let notify_path = dir.join("notify.sock");
    let notify = std::os::unix::net::UnixDatagram::bind(&notify_path).unwrap();
    notify
        .set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let _d = Daemon::start_prepared(dir, "", free_port(), |c| {
        c.env("NOTIFY_SOCKET", &notify_path)
            .env("WATCHDOG_USEC", "1000000");
    });
    let mut said = Vec::new();
    let deadline = Instant::now() + Duration::from_millis(2600);
    let mut buf = [0u8; 512];
    while Instant::now() < deadline {
        if let Ok(n) = notify.recv(&mut buf) {
            said.push(String::from_utf8_lossy(&buf[..n]).into_owned());
        }
    }
    assert!(said.iter().any(|m| m.starts_with("READY=1")), "{said:?}");
    let pets = said.iter().filter(|m| *m == "WATCHDOG=1").count();
    assert!(
        (3..=8).contains(&pets),
        "WATCHDOG=1 every 0.5 s for 2.6 s: {said:?}"
    );
}

/// Issue 15, finding 1: every member of socket_group saw every user's command lines.
/// Now a client that is not root (SO_PEERCRED) sees only its own uid's processes unless
/// `socket_others` says otherwise; root sees everything.
#[test]
fn a_client_that_is_not_root_sees_only_its_own_processes() {
    use std::os::unix::process::CommandExt as _;
    if !privileged() {
        return;
    }
    const NOBODY: u32 = 65534;
    let d = Daemon::start("peercred", "socket_group = \"nogroup\"\n");
    let theirs = Command::new(CLI)
        .args(["events", "--json", "--kind", "exec", "--comm", "true"])
        .env("TRACER_SOCKET", d.socket())
        .uid(NOBODY)
        .gid(NOBODY)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let root = subscribe(&d.socket(), "{\"kinds\":[\"exec\"],\"comms\":[\"true\"]}");
    std::thread::sleep(Duration::from_millis(500));
    let as_nobody = {
        let mut c = Command::new("/bin/true")
            .uid(NOBODY)
            .gid(NOBODY)
            .spawn()
            .unwrap();
        c.wait().unwrap();
        c.id()
    };
    let as_root = run_true(1)[0];
    let (tx, last) = std::sync::mpsc::channel();
    tx.send(u64::from(as_root)).unwrap();
    let (root_saw, _) = read_until(root, last);
    assert!(
        root_saw.contains(&u64::from(as_nobody)) && root_saw.contains(&u64::from(as_root)),
        "root sees every process: {root_saw:?}"
    );
    // What nobody's client was sent by then, and a little after.
    std::thread::sleep(Duration::from_millis(500));
    // SAFETY: kill with our own child's pid.
    unsafe { libc::kill(theirs.id() as i32, libc::SIGTERM) };
    let out = theirs.wait_with_output().unwrap();
    let seen: Vec<u64> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok()?["tgid"].as_u64())
        .collect();
    assert!(
        seen.contains(&u64::from(as_nobody)),
        "nobody sees its own exec: {seen:?}; {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        !seen.contains(&u64::from(as_root)),
        "nobody does not see root's: {seen:?}"
    );
}

/// One request on the socket, and the first line of the answer.
fn ask(socket: &Path, request: &str) -> String {
    let mut s = UnixStream::connect(socket).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(request.as_bytes()).unwrap();
    s.write_all(b"\n").unwrap();
    let mut line = String::new();
    let _ = BufReader::new(s).read_line(&mut line);
    line
}

/// Issue 15, finding 4: a client's filter of any size was taken and globbed against every
/// event, and reports could be asked for as fast as a client could send. Reports are
/// bounded per second, root's apart from everyone else's (another user's flood does not
/// keep root from its answers), and the command line asks again when refused for load: a
/// script asking for one report after another gets them all.
#[test]
fn costly_clients_are_refused() {
    use std::os::unix::process::CommandExt as _;
    if !privileged() {
        return;
    }
    const NOBODY: u32 = 65534;
    let d = Daemon::start("costly", "socket_group = \"nogroup\"\n");
    let pattern = "*a".repeat(30_000);
    let reply = ask(
        &d.socket(),
        &format!("{{\"op\":\"events\",\"filter\":{{\"units\":[\"{pattern}\"]}}}}"),
    );
    assert!(
        reply.contains("malformed filter") && reply.contains("60000 bytes"),
        "{reply}"
    );
    const UNITS: &str = "{\"op\":\"units\",\"json\":false}";
    // Another user asks for 60 at once (a raw client: the command line would wait).
    let flood = Command::new("/usr/bin/python3")
        .args([
            "-c",
            "import socket, sys\n\
             busy = 0\n\
             for _ in range(60):\n\
             \x20   s = socket.socket(socket.AF_UNIX); s.connect(sys.argv[1])\n\
             \x20   s.sendall(sys.argv[2].encode() + b'\\n')\n\
             \x20   busy += b'busy' in s.makefile('rb').readline()\n\
             print(busy)",
        ])
        .arg(d.socket())
        .arg(UNITS)
        .uid(NOBODY)
        .gid(NOBODY)
        .output()
        .unwrap();
    let theirs: u32 = String::from_utf8_lossy(&flood.stdout)
        .trim()
        .parse()
        .unwrap_or_else(|_| panic!("{}", String::from_utf8_lossy(&flood.stderr)));
    assert!(
        theirs > 0 && theirs < 60,
        "{theirs} of nobody's 60 reports asked at once refused"
    );
    let reply = ask(&d.socket(), UNITS);
    assert!(
        reply.contains("\"ok\":true"),
        "root asks after nobody's flood: {reply}"
    );
    let replies: Vec<String> = (0..60).map(|_| ask(&d.socket(), UNITS)).collect();
    let busy = replies.iter().filter(|r| r.contains("busy")).count();
    assert!(
        busy > 0 && busy < 60,
        "{busy} of 60 reports asked at once refused: {:?}",
        &replies[..3]
    );
    // The command line, refused for load, asks again: 40 reports in a row, all answered.
    for i in 0..40 {
        let out = Command::new(CLI)
            .args(["units"])
            .env("TRACER_SOCKET", d.socket())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "tracer units #{i}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

/// The Python that has PyPI's opentelemetry-proto (scripts/setup.sh makes its venv);
/// None (the test skips, saying why) outside CI when it is missing.
fn otlp_python() -> Option<PathBuf> {
    let venv = std::env::var_os("TRACER_OTLP_VENV").map_or_else(
        || {
            PathBuf::from(std::env::var_os("HOME").unwrap_or_else(|| "/root".into()))
                .join(".cache/tracer/otlp-venv")
        },
        PathBuf::from,
    );
    let python = venv.join("bin/python3");
    let ok = Command::new(&python)
        .args([
            "-c",
            "import opentelemetry.proto.collector.logs.v1.logs_service_pb2",
        ])
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        assert!(
            std::env::var_os("CI").is_none(),
            "{} has no opentelemetry-proto: run scripts/setup.sh",
            python.display()
        );
        eprintln!(
            "skipped: {} has no opentelemetry-proto (scripts/setup.sh makes it)",
            python.display()
        );
        return None;
    }
    Some(python)
}

/// tests/bin/otlp-receiver.py, listening on a port of its own: each request it decoded is
/// a JSON line in `out`.
struct Receiver {
    child: Child,
    port: u16,
    out: PathBuf,
}

impl Receiver {
    fn start(python: &Path, dir: &Path) -> Self {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("bin/otlp-receiver.py");
        let out = dir.join("otlp.jsonl");
        let port_file = dir.join("otlp.port");
        let child = Command::new(python)
            .arg(script)
            .arg("--out")
            .arg(&out)
            .arg("--port-file")
            .arg(&port_file)
            .args(["--seconds", "300"])
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(20);
        let port = loop {
            if let Ok(p) = std::fs::read_to_string(&port_file) {
                break p.trim().parse().unwrap();
            }
            assert!(Instant::now() < deadline, "the OTLP receiver did not start");
            std::thread::sleep(Duration::from_millis(50));
        };
        Self { child, port, out }
    }

    /// The requests it decoded so far; it fails the test on any it could not.
    fn requests(&self) -> Vec<Value> {
        let text = std::fs::read_to_string(&self.out).unwrap_or_default();
        text.lines()
            .filter(|l| l.ends_with('}'))
            .map(|l| {
                let v: Value = serde_json::from_str(l).unwrap();
                assert!(
                    v.get("error").is_none(),
                    "the receiver refused a request: {l}"
                );
                v
            })
            .collect()
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Every record of every request, with its request's resource attributes.
fn otlp_records(requests: &[Value]) -> Vec<(Value, Value)> {
    let mut out = Vec::new();
    for req in requests {
        for rl in req["resource_logs"].as_array().unwrap() {
            for scope in rl["scopes"].as_array().unwrap() {
                assert_eq!(scope["name"], "tracer");
                for r in scope["records"].as_array().unwrap() {
                    out.push((rl["attributes"].clone(), r.clone()));
                }
            }
        }
    }
    out
}

/// A counter's value on /metrics (0 when it is not there).
fn metric(port: u16, series: &str) -> u64 {
    body(&http_get(port, "/metrics"))
        .lines()
        .find_map(|l| l.strip_prefix(series)?.trim().parse::<f64>().ok())
        .unwrap_or(0.0) as u64
}

/// The daemon's stop line for the exporter: (offered, sent, dropped, failed).
fn otlp_stop_line(log: &str) -> (u64, u64, u64, u64) {
    let line = log
        .lines()
        .find_map(|l| l.strip_prefix("tracer daemon: otlp: "))
        .unwrap_or_else(|| panic!("no otlp stop line: {log}"));
    let n: Vec<u64> = line
        .split(|c: char| !c.is_ascii_digit())
        .filter_map(|w| w.parse().ok())
        .collect();
    (n[0], n[1], n[2], n[3])
}

/// Issue 16: events as OTLP logs, decoded by a receiver built on the official
/// definitions (PyPI's opentelemetry-proto): a refused exec and three execs of our own,
/// their attributes and the host's resource, and every record the daemon counts as sent
/// is one the receiver decoded.
#[test]
fn events_reach_an_otlp_receiver_with_their_attributes() {
    use std::os::unix::fs::PermissionsExt as _;
    if !privileged() {
        return;
    }
    let Some(python) = otlp_python() else {
        return;
    };
    let dir = Daemon::fresh_dir("otlp");
    let receiver = Receiver::start(&python, &dir);
    let mut d = Daemon::start_in(
        dir,
        &format!(
            "[otlp]\nenabled = true\nendpoint = \"http://127.0.0.1:{}/v1/logs\"\nflush_interval_ms = 200\n",
            receiver.port
        ),
        free_port(),
    );
    assert!(
        d.log()
            .contains(&format!("otlp=http://127.0.0.1:{}/v1/logs", receiver.port)),
        "{}",
        d.log()
    );
    let started = std::time::SystemTime::now();
    let refused = d.dir.join("tracer-t-otlp-refused.sh");
    std::fs::write(&refused, "#!/bin/sh\n").unwrap();
    std::fs::set_permissions(&refused, std::fs::Permissions::from_mode(0o644)).unwrap();
    let err = Command::new(&refused).status().unwrap_err();
    assert_eq!(err.raw_os_error(), Some(libc::EACCES));
    let mine = d.dir.join("tracer-t-otlp");
    std::fs::copy("/bin/true", &mine).unwrap();
    let pids = run(&mine, 3);

    // Until the receiver has the three execs, their exits and the refused exec.
    let deadline = Instant::now() + Duration::from_secs(30);
    let is_mine = |r: &Value| {
        let a = &r["attributes"];
        a["process.executable.path"] == refused.to_str().unwrap()
            || pids.iter().any(|&p| a["process.pid"] == p)
    };
    let records = loop {
        let records: Vec<_> = otlp_records(&receiver.requests())
            .into_iter()
            .filter(|(_, r)| is_mine(r))
            .collect();
        if records.len() >= 7 {
            break records;
        }
        assert!(
            Instant::now() < deadline,
            "the receiver has {} of our 7 records: {records:?}\n{}",
            records.len(),
            d.log()
        );
        std::thread::sleep(Duration::from_millis(100));
    };

    let machine_id = std::fs::read_to_string("/etc/machine-id").unwrap();
    let hostname = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap();
    let boot_id = journal::current_boot_id().unwrap();
    let window = (
        started
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos() as u64
            - 5_000_000_000,
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos() as u64
            + 5_000_000_000,
    );
    for (resource, r) in &records {
        assert_eq!(resource["service.name"], "tracer", "{resource}");
        assert_eq!(resource["host.id"], machine_id.trim(), "{resource}");
        assert_eq!(resource["host.name"], hostname.trim(), "{resource}");
        assert_eq!(resource["tracer.boot_id"], boot_id.as_str(), "{resource}");
        let t = r["time_unix_nano"].as_u64().unwrap();
        assert!(
            window.0 < t && t < window.1,
            "the kernel's time as wall time: {r}"
        );
    }
    let me = std::process::id();
    let of_kind = |kind: &str| -> Vec<&Value> {
        records
            .iter()
            .map(|(_, r)| r)
            .filter(|r| r["attributes"]["tracer.kind"] == kind)
            .collect()
    };
    let failed = of_kind("exec-failed");
    assert_eq!(failed.len(), 1, "{failed:?}");
    let f = failed[0];
    assert_eq!(f["event_name"], "tracer.event.exec-failed");
    assert_eq!(f["severity_text"], "WARN");
    assert_eq!(f["attributes"]["tracer.errno"], "EACCES");
    assert_eq!(f["attributes"]["process.parent_pid"], me);
    assert!(f["body"].as_str().unwrap().contains("EACCES"), "{f}");
    let execs = of_kind("exec");
    assert_eq!(execs.len(), 3, "{execs:?}");
    for (r, pid) in execs.iter().zip(&pids) {
        let a = &r["attributes"];
        assert_eq!(a["process.pid"], *pid, "in order: {r}");
        assert_eq!(a["process.parent_pid"], me);
        assert_eq!(a["process.executable.name"], "tracer-t-otlp");
        assert_eq!(a["process.executable.path"], mine.to_str().unwrap());
        assert_eq!(a["process.command_args"], serde_json::json!([mine]));
        assert_eq!(a["process.user.id"], 0);
        assert!(a["tracer.cgroup"].is_string(), "{r}");
        assert_eq!(r["severity_text"], "INFO");
        assert_eq!(r["severity_number"], 9);
    }
    let exits = of_kind("exit");
    assert_eq!(exits.len(), 3, "{exits:?}");
    assert!(
        exits
            .iter()
            .all(|r| r["attributes"]["process.exit.code"] == 0)
    );

    // What the daemon counts as sent, the receiver decoded: no more (/metrics is brought
    // up to the exporter's counts every 250 ms, after the posts), and at the stop, when
    // the queue is finished, exactly.
    let deadline = Instant::now() + Duration::from_secs(10);
    let sent = loop {
        let sent = metric(d.port, "tracer_otlp_records_total{result=\"sent\"}");
        if sent >= 7 {
            break sent;
        }
        assert!(Instant::now() < deadline, "/metrics counts {sent} sent");
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(sent as usize <= otlp_records(&receiver.requests()).len());
    let (_, status) = d.stop();
    assert!(status.success(), "{}", d.log());
    let (offered, sent, dropped, failed) = otlp_stop_line(&d.log());
    let requests = receiver.requests();
    eprintln!(
        "otlp: {offered} offered, {sent} sent, {dropped} dropped, {failed} failed; the receiver decoded {} records in {} requests",
        otlp_records(&requests).len(),
        requests.len()
    );
    assert_eq!(sent as usize, otlp_records(&requests).len());
    assert_eq!((dropped, failed), (0, 0));
    assert_eq!(offered, sent);
}

/// Issue 16: a dead collector costs nothing but counted drops. Its port closed, a queue
/// of 16: a burst of 300 processes still reaches the stream and the journal, every one;
/// none is sent, and the drops and failures account for every record offered.
#[test]
fn a_dead_otlp_endpoint_costs_only_counted_drops() {
    if !privileged() {
        return;
    }
    let closed = free_port();
    let mut d = Daemon::start(
        "otlp-dead",
        &format!(
            "[otlp]\nenabled = true\nendpoint = \"http://127.0.0.1:{closed}/v1/logs\"\nqueue_capacity = 16\nbatch_size = 8\nflush_interval_ms = 100\ntimeout_ms = 500\nretries = 2\nretry_initial_ms = 100\n"
        ),
    );
    let reader = subscribe(&d.socket(), "{\"kinds\":[\"exec\"],\"comms\":[\"true\"]}");
    std::thread::sleep(Duration::from_millis(300));
    let pids = run_true(300);
    let (tx, last) = std::sync::mpsc::channel();
    tx.send(u64::from(*pids.last().unwrap())).unwrap();
    let (seen, missed) = read_until(reader, last);
    assert_eq!(missed, 0);
    assert!(
        pids.iter().all(|p| seen.contains(&u64::from(*p))),
        "every exec reached the stream"
    );
    // Once a batch has been given up on, /metrics says so.
    let deadline = Instant::now() + Duration::from_secs(30);
    while metric(d.port, "tracer_otlp_records_total{result=\"failed\"}") == 0 {
        assert!(Instant::now() < deadline, "no failed records counted");
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(metric(d.port, "tracer_otlp_records_total{result=\"dropped\"}") > 0);
    assert_eq!(
        metric(d.port, "tracer_otlp_records_total{result=\"sent\"}"),
        0
    );
    assert!(
        d.log().contains("otlp: connecting to"),
        "said why: {}",
        d.log()
    );

    let (_, status) = d.stop();
    assert!(status.success(), "{}", d.log());
    let (execs, damage, _) = journaled_execs(&d.state().join("journal"));
    assert!(damage.is_empty(), "{damage:?}");
    assert!(
        pids.iter().all(|p| execs.contains(p)),
        "every exec journaled"
    );
    let (offered, sent, dropped, failed) = otlp_stop_line(&d.log());
    eprintln!("otlp: {offered} offered, {sent} sent, {dropped} dropped, {failed} failed");
    assert_eq!(sent, 0);
    // Our 300 execs and 300 exits at least (other processes' too).
    assert!(offered >= 600, "{offered}");
    assert!(dropped > 0 && failed > 0);
    assert_eq!(dropped + failed, offered);
}

/// A unit file of the test's own in /etc/systemd/system, removed when dropped.
struct UnitFile(PathBuf);

impl Drop for UnitFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// Issue 16: a finding over OTLP, with the systemd journal's findings off. A unit of the
/// test's own, run as systemd would: its unit file names a script that exits 3, its
/// cgroup below the cgroup2 mount, its process forked by a process called `systemd` (the
/// model's top-level commands are a manager's children) and moved into the cgroup before
/// its exec. Its finding arrives as an ERROR record with the cause, the unit and the
/// MESSAGE_ID as attributes.
#[test]
fn a_failed_run_s_finding_reaches_the_otlp_receiver() {
    use std::os::unix::fs::PermissionsExt as _;
    if !privileged() {
        return;
    }
    let Some(python) = otlp_python() else {
        return;
    };
    let dir = Daemon::fresh_dir("otlp-finding");
    let receiver = Receiver::start(&python, &dir);
    let unit = format!("tracer-t-otlp-{}.service", std::process::id());
    let script = dir.join("tracer-t-otlp.sh");
    std::fs::write(&script, "#!/bin/sh\nexit 3\n").unwrap();
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    let file = UnitFile(Path::new("/etc/systemd/system").join(&unit));
    std::fs::write(
        &file.0,
        format!("[Service]\nExecStart={}\n", script.display()),
    )
    .unwrap();
    let d = Daemon::start_in(
        dir,
        &format!(
            "[otlp]\nenabled = true\nendpoint = \"http://127.0.0.1:{}/v1/logs\"\nflush_interval_ms = 200\nevents = false\n[systemd_journal]\nenabled = false\n",
            receiver.port
        ),
        free_port(),
    );
    let cgroup = tracer::cgroup::find_cgroup2_mount().unwrap().join(&unit);
    let _ = std::fs::remove_dir(&cgroup);
    std::fs::create_dir(&cgroup).unwrap();
    let manager = d.dir.join("systemd");
    std::fs::copy("/bin/sh", &manager).unwrap();
    let status = Command::new(&manager)
        .arg("-c")
        .arg(format!(
            "sh -c 'echo $$ > {}/cgroup.procs; exec {}'; true",
            cgroup.display(),
            script.display()
        ))
        .status()
        .unwrap();
    assert!(status.success());
    std::fs::remove_dir(&cgroup).unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    let finding = loop {
        let found = otlp_records(&receiver.requests())
            .into_iter()
            .map(|(_, r)| r)
            .find(|r| r["attributes"]["tracer.unit"] == unit.as_str());
        if let Some(r) = found {
            break r;
        }
        assert!(
            Instant::now() < deadline,
            "no finding of {unit} arrived: {:?}\n{}",
            receiver.requests(),
            d.log()
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    eprintln!("{finding}");
    assert_eq!(finding["event_name"], "tracer.finding.failure", "{finding}");
    assert_eq!(finding["severity_text"], "ERROR");
    assert_eq!(finding["severity_number"], 17);
    let a = &finding["attributes"];
    assert_eq!(a["tracer.kind"], "failure");
    assert_eq!(a["tracer.systemd_unit"], unit.as_str());
    assert_eq!(a["tracer.message_id"], "8652b949182b4d948932779599e03b8e");
    assert_eq!(
        a["tracer.boot_id"],
        journal::current_boot_id().unwrap().as_str()
    );
    assert_eq!(a["tracer.cause"], "exit-code", "{finding}");
    assert_eq!(a["tracer.exit_code"], "3", "{finding}");
    assert_eq!(a["tracer.program"], script.to_str().unwrap(), "{finding}");
    assert_eq!(
        finding["body"],
        format!("{unit}: {} exited with status 3", script.display()),
        "the words of tracer why"
    );
    // Events are off: findings are all that was sent.
    assert!(otlp_records(&receiver.requests()).iter().all(|(_, r)| {
        r["event_name"]
            .as_str()
            .unwrap()
            .starts_with("tracer.finding.")
    }));
}

/// A bpffs directory of the test's own for pinned programs, removed (the programs
/// detached) when the test ends, passed or not.
struct Pins(PathBuf);

impl Pins {
    fn new(name: &str) -> Self {
        Self(PathBuf::from(format!(
            "/sys/fs/bpf/tracer-test-{}-{name}",
            std::process::id()
        )))
    }

    /// A daemon started on these pins and stopped, leaving them: its directory and port.
    fn left_by_a_daemon(&self, name: &str) -> (PathBuf, u16) {
        let mut d = Daemon::start(name, &self.config());
        let (_, status) = d.stop();
        assert!(status.success());
        assert!(self.0.join("map_DAEMON").exists(), "{}", d.log());
        let left = (d.dir.clone(), d.port);
        std::mem::forget(d);
        left
    }

    /// The daemon's configuration: these pins, left at the stop.
    fn config(&self) -> String {
        format!(
            "pin_dir = \"{}\"\ndetach_on_exit = true\n",
            self.0.display()
        )
    }
}

impl Drop for Pins {
    fn drop(&mut self) {
        if let Ok(entries) = std::fs::read_dir(&self.0) {
            for e in entries.flatten() {
                let _ = std::fs::remove_file(e.path());
            }
        }
        let _ = std::fs::remove_dir(&self.0);
    }
}

/// A `key=value` field of the daemon's ready line.
fn ready_field(log: &str, key: &str) -> String {
    let line = log
        .lines()
        .rfind(|l| l.starts_with("tracer daemon: ready:"))
        .unwrap_or_else(|| panic!("no ready line: {log}"));
    line.split_whitespace()
        .find_map(|f| f.strip_prefix(&format!("{key}=")))
        .unwrap_or_else(|| panic!("no {key} in {line}"))
        .to_owned()
}

/// Issue 17: a storm of 5000 execs across a SIGTERM and a restart of the daemon, whose
/// programs stay pinned meanwhile: the journal holds the exec of every pid the storm
/// started, and `tracer events -b 0` shows them in the order they ran.
#[test]
fn a_restart_with_pinned_programs_loses_no_exec() {
    if !privileged() {
        return;
    }
    const STORM: usize = 5000;
    let pins = Pins::new("restart");
    let mut d = Daemon::start("pinned-restart", &pins.config());
    assert_eq!(ready_field(&d.log(), "pinned"), "new", "{}", d.log());
    // One /bin/true at a time, each one's pid written (by the shell: no process of its
    // own) before it is waited for.
    let pids = d.dir.join("storm.pids");
    let mut storm = KilledOnDrop(
        Command::new("/bin/sh")
            .arg("-c")
            .arg(format!(
                "for i in $(seq {STORM}); do /bin/true & echo $! >> '{}'; wait $!; done",
                pids.display()
            ))
            .spawn()
            .unwrap(),
    );
    let started = |p: &Path| {
        std::fs::read_to_string(p)
            .unwrap_or_default()
            .lines()
            .count()
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    while started(&pids) < STORM / 5 {
        assert!(Instant::now() < deadline, "the storm does not start");
        std::thread::sleep(Duration::from_millis(10));
    }
    let (_, status) = d.stop();
    assert!(status.success());
    assert!(d.log().contains("programs left pinned in"), "{}", d.log());
    let at_stop = started(&pids);
    let (dir, port) = (d.dir.clone(), d.port);
    std::mem::forget(d);
    // The storm goes on with no daemon for a while.
    std::thread::sleep(Duration::from_millis(500));

    let mut d = Daemon::start_in(dir, &pins.config(), port);
    let second = d.child.id();
    let log = d.log();
    assert_eq!(ready_field(&log, "pinned"), "resumed", "{log}");
    let drained: u64 = ready_field(&log, "drained").parse().unwrap();
    let metrics = body(&http_get(d.port, "/metrics")).to_owned();
    assert!(
        metrics.contains("tracer_resumed_pinned_programs 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains(&format!("tracer_backlog_records_drained_total {drained}")),
        "{metrics}"
    );
    assert!(storm.0.wait().unwrap().success());
    // The last records read (the reader reads in batches) before the stop drains the rest.
    std::thread::sleep(Duration::from_millis(300));
    let (_, status) = d.stop();
    assert!(status.success());

    let storm_pids: Vec<u32> = std::fs::read_to_string(&pids)
        .unwrap()
        .lines()
        .map(|l| l.parse().unwrap())
        .collect();
    assert_eq!(storm_pids.len(), STORM);
    let out = d.cli(&[
        "events",
        "-b",
        "0",
        "--json",
        "--state-dir",
        d.state().to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let wanted: std::collections::HashSet<u32> = storm_pids.iter().copied().collect();
    let events: Vec<Value> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .collect();
    // The resumed programs recorded the second daemon's exec (before it said who it is),
    // then filtered its own events out.
    let own: Vec<&Value> = events
        .iter()
        .filter(|v| v["tgid"] == second && v["kind"] != "exec")
        .collect();
    assert!(own.is_empty(), "the daemon's own events: {own:?}");
    // The storm's execs as `tracer events` shows them: (pid, boot-time ns).
    let shown: Vec<(u32, u64)> = events
        .iter()
        .filter(|v| v["kind"] == "exec" && v["comm"] == "true")
        .map(|v| {
            (
                v["tgid"].as_u64().unwrap() as u32,
                v["ts_ns"].as_u64().unwrap(),
            )
        })
        .filter(|(pid, _)| wanted.contains(pid))
        .collect();
    let journaled: std::collections::HashSet<u32> = shown.iter().map(|(p, _)| *p).collect();
    let lost: Vec<&u32> = storm_pids
        .iter()
        .filter(|p| !journaled.contains(p))
        .collect();
    eprintln!(
        "storm: {STORM} started ({at_stop} before the stop), {} journaled, {} lost; {drained} records drained from the pinned programs",
        journaled.len(),
        lost.len()
    );
    assert!(lost.is_empty(), "lost {} execs: {lost:?}", lost.len());
    assert_eq!(shown.len(), STORM, "each exec once");
    // Shown in the order they ran: one after another, as the shell started them.
    assert!(
        shown.windows(2).all(|w| w[0].1 <= w[1].1),
        "in timestamp order"
    );
    let order: Vec<u32> = shown.iter().map(|(p, _)| *p).collect();
    assert_eq!(order, storm_pids, "in the order the storm started them");
    assert!(drained > 0, "the storm went on while no daemon ran");

    // A stop for good (`--unpin`) removes them.
    let out = Command::new(CLI)
        .args(["daemon", "--unpin", "--config"])
        .arg(d.dir.join("tracer.toml"))
        .output()
        .unwrap();
    assert!(out.status.success());
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(said.contains("pinned objects from"), "{said}");
    assert!(!pins.0.exists());
}

/// Issue 17: pinned programs of another version (their stamp differs) are replaced, and
/// the daemon says since when nothing read them; without --detach-on-exit a stop removes
/// the pins.
#[test]
fn pinned_programs_of_another_version_are_replaced() {
    use aya::maps::{Array, Map, MapData};
    if !privileged() {
        return;
    }
    let pins = Pins::new("replace");
    let (dir, port) = pins.left_by_a_daemon("pinned-replace");
    // What another build of the programs would have stamped.
    let map = MapData::from_pin(pins.0.join("map_DAEMON")).unwrap();
    let mut daemon: Array<MapData, u64> =
        Array::try_from(Map::from_map_data(map).unwrap()).unwrap();
    let ours = daemon.get(&tracer_common::DAEMON_STAMP, 0).unwrap();
    daemon
        .set(tracer_common::DAEMON_STAMP, ours ^ 1, 0)
        .unwrap();
    drop(daemon);

    // This time, a stop removes them.
    let mut d = Daemon::start_in(dir, &format!("pin_dir = \"{}\"\n", pins.0.display()), port);
    let log = d.log();
    assert_eq!(ready_field(&log, "pinned"), "replaced", "{log}");
    assert!(
        log.contains("replaced pinned programs of another version; blind for "),
        "{log}"
    );
    let blind: u64 = ready_field(&log, "blind_ms").parse().unwrap();
    let metrics = body(&http_get(d.port, "/metrics")).to_owned();
    assert!(
        metrics.contains("tracer_resumed_pinned_programs 0"),
        "{metrics}"
    );
    // The new programs record, and carry this build's stamp.
    let pid = run_true(1)[0];
    std::thread::sleep(Duration::from_millis(300));
    let map = MapData::from_pin(pins.0.join("map_DAEMON")).unwrap();
    let daemon: Array<MapData, u64> = Array::try_from(Map::from_map_data(map).unwrap()).unwrap();
    assert_eq!(daemon.get(&tracer_common::DAEMON_STAMP, 0).unwrap(), ours);
    drop(daemon);
    let (_, status) = d.stop();
    assert!(status.success());
    assert!(d.log().contains("pinned objects from"), "{}", d.log());
    assert!(!pins.0.exists());
    let (execs, _, _) = journaled_execs(&d.state().join("journal"));
    assert!(execs.contains(&pid));
    eprintln!("replaced; blind for {blind} ms");
}

/// Issue 17: a daemon killed leaves its programs pinned, and the next one resumes them
/// with what they saw meanwhile; a second daemon on pins in use runs unpinned, saying so.
#[test]
fn a_killed_daemon_s_pinned_programs_are_resumed() {
    if !privileged() {
        return;
    }
    let pins = Pins::new("killed");
    let config = format!(
        "pin_dir = \"{}\"\n[journal]\nflush_interval_ms = 200\n",
        pins.0.display()
    );
    let mut d = Daemon::start("pinned-killed", &config);
    assert_eq!(ready_field(&d.log(), "pinned"), "new", "{}", d.log());

    let mut other = Daemon::start("pinned-other", &config);
    let log = other.log();
    assert_eq!(ready_field(&log, "pinned"), "off", "{log}");
    assert!(
        log.contains("another tracer daemon uses the pinned programs in"),
        "{log}"
    );
    let (_, status) = other.stop();
    assert!(status.success());
    assert!(
        pins.0.join("map_EVENTS").exists(),
        "the first daemon's pins stay"
    );

    let before = run_true(20);
    // Longer than the flush interval: what the killed daemon took from the ring is on the
    // disk (what it took and had not yet written is lost, pins or not).
    std::thread::sleep(Duration::from_millis(800));
    d.child.kill().unwrap(); // SIGKILL
    d.child.wait().unwrap();
    assert!(pins.0.join("link_process_exec").exists());
    let meanwhile = run_true(20);
    // A failed exec: seen by a classic tracepoint, whose pinned link is a perf-event one.
    let missing = d.dir.join("no-such-program");
    assert!(Command::new(&missing).status().is_err());
    // Started while no daemon ran, and running still when the next one starts: its exec is
    // in the backlog, and it is not also journaled (or modelled) as found at start.
    let sleeper = KilledOnDrop(Command::new("/bin/sleep").arg("30").spawn().unwrap());
    let sleeper_pid = sleeper.0.id();
    std::thread::sleep(Duration::from_millis(100));
    let (dir, port) = (d.dir.clone(), d.port);
    std::mem::forget(d);

    let mut d = Daemon::start_in(dir, &config, port);
    let log = d.log();
    assert_eq!(ready_field(&log, "pinned"), "resumed", "{log}");
    let drained: u64 = ready_field(&log, "drained").parse().unwrap();
    assert!(drained >= 20, "{log}");
    let (_, status) = d.stop();
    assert!(status.success());
    // Without --detach-on-exit, a stop removes them.
    assert!(!pins.0.exists(), "{}", d.log());
    let (execs, _, _) = journaled_execs(&d.state().join("journal"));
    let lost: Vec<&u32> = before
        .iter()
        .chain(&meanwhile)
        .filter(|p| !execs.contains(p))
        .collect();
    assert!(lost.is_empty(), "lost {lost:?}");
    assert!(execs.contains(&sleeper_pid));
    let boot = journal::find_boot(&d.state().join("journal"), "0").unwrap();
    let mut found_at_start = 0;
    journal::read_boot(&boot, |i| {
        if let Item::Process { info, .. } = i
            && info.pid == sleeper_pid
        {
            found_at_start += 1;
        }
    })
    .unwrap();
    assert_eq!(found_at_start, 0, "the sleeper is in the backlog only");
    let mut refused = 0;
    journal::read_boot(&boot, |i| {
        if let Item::Event(ev) = i
            && let tracer::event::EventKind::ExecFailed { filename, .. } = &ev.kind
            && Path::new(filename) == missing
        {
            refused += 1;
        }
    })
    .unwrap();
    assert_eq!(refused, 1, "the failed exec while no daemon ran");
    drop(sleeper);
}

/// Issue 17: pinned programs loaded with another ring size are replaced too (the ring is
/// the pinned one: its size cannot change under it).
#[test]
fn pinned_programs_with_another_ring_size_are_replaced() {
    if !privileged() {
        return;
    }
    let pins = Pins::new("ring-size");
    let (dir, port) = pins.left_by_a_daemon("pinned-ring-size");
    let mut d = Daemon::start_in(
        dir,
        &format!("{}ring_size = 1048576\n", pins.config()),
        port,
    );
    let log = d.log();
    assert_eq!(ready_field(&log, "pinned"), "replaced", "{log}");
    assert!(
        log.contains("replaced pinned programs of other settings (ring_size or failed_execs)"),
        "{log}"
    );
    let (_, status) = d.stop();
    assert!(status.success());
}

/// A group of sleeping processes, killed with the group when dropped.
struct Herd(Child);

impl Herd {
    fn of(n: usize) -> Self {
        use std::os::unix::process::CommandExt;
        let mut child = Command::new("/bin/sh")
            .arg("-c")
            .arg(format!(
                "for i in $(seq {n}); do sleep 300 & done; echo up; wait"
            ))
            .process_group(0)
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        assert_eq!(line.trim(), "up");
        Self(child)
    }
}

impl Drop for Herd {
    fn drop(&mut self) {
        // SAFETY: kill with our own child's process group.
        unsafe { libc::kill(-(self.0.id() as i32), libc::SIGKILL) };
        let _ = self.0.wait();
    }
}

/// Issue 18: the programs are attached before /proc is read, and what they record
/// meanwhile is kept. With 3000 processes to read and a storm of short sleeps running
/// through the start (a few hundred alive at once: the walk finds many of those started
/// after the attach), every exec from the storm's first one seen on is journaled, and no
/// process is journaled both as found running its new program and with that exec.
#[test]
fn processes_started_while_proc_is_read_are_seen_once() {
    if !privileged() {
        return;
    }
    let _herd = Herd::of(3000);
    let dir = Daemon::fresh_dir("walk");
    let pids = dir.join("storm.pids");
    let stop = dir.join("storm.stop");
    let mut storm = KilledOnDrop(
        Command::new("/bin/sh")
            .arg("-c")
            .arg(format!(
                "while [ ! -e '{}' ]; do /bin/sleep 0.5 & echo $! >> '{}'; /bin/sleep 0.002; done",
                stop.display(),
                pids.display()
            ))
            .spawn()
            .unwrap(),
    );
    let mut d = Daemon::start_in(dir, "", free_port());
    let log = d.log();
    std::fs::write(&stop, "").unwrap();
    assert!(storm.0.wait().unwrap().success());
    std::thread::sleep(Duration::from_millis(300));
    let (_, status) = d.stop();
    assert!(status.success(), "{}", d.log());

    let storm_pids: Vec<u32> = std::fs::read_to_string(&pids)
        .unwrap()
        .lines()
        .map(|l| l.parse().unwrap())
        .collect();
    let boot = journal::find_boot(&d.state().join("journal"), "0").unwrap();
    let (mut execs, mut found_sleeping, mut found) = (
        std::collections::HashSet::new(),
        std::collections::HashSet::new(),
        0usize,
    );
    journal::read_boot(&boot, |i| match i {
        Item::Event(ev) if ev.kind_name() == "exec" => {
            execs.insert(ev.tgid);
        }
        Item::Process { info, .. } => {
            found += 1;
            if info.exe.as_deref().is_some_and(|e| e.ends_with("/sleep")) {
                found_sleeping.insert(info.pid);
            }
        }
        _ => {}
    })
    .unwrap();
    assert!(found >= 3000, "the herd is found at start: {found}");
    let storm_found = storm_pids
        .iter()
        .filter(|p| found_sleeping.contains(p))
        .count();
    let twice: Vec<&u32> = found_sleeping.intersection(&execs).collect();
    assert!(twice.is_empty(), "found running and exec'd: {twice:?}");
    let first = storm_pids
        .iter()
        .position(|p| execs.contains(p))
        .expect("the storm's execs after the attach are journaled");
    let lost: Vec<&u32> = storm_pids[first..]
        .iter()
        .filter(|p| !execs.contains(p))
        .collect();
    let early = ready_field(&log, "attach_ms");
    eprintln!(
        "storm: {} execs, the first journaled is #{first}, {} lost after it; {storm_found} found at start asleep; attached in {early} ms",
        storm_pids.len(),
        lost.len(),
    );
    assert!(lost.is_empty(), "lost after the first seen: {lost:?}");
    assert!(
        storm_pids.len() > first + 10,
        "the storm ran on after the start"
    );
}
