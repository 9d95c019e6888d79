//! The tracer daemon under test: started with everything on, watched from outside (its
//! ready line, /proc, /metrics, one stream client), and what it cost during a storm.

use std::{
    io::{BufRead, BufReader, Read, Write as _},
    os::unix::net::UnixStream,
    path::{Path, PathBuf},
    process::{Child, ChildStderr, Command, Stdio},
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    thread::JoinHandle,
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail};

use super::{
    Sample, boottime_ns, cpu_seconds, percentile, read_stderr_until, run_seconds, status_kib, storm,
};

/// The daemon's configuration without failed execs.
pub(super) const LEAN_CONFIG: &str = "failed_execs = false\n";

/// What the daemon cost during one storm.
#[derive(Clone, Copy, Debug)]
pub(super) struct DaemonStats {
    /// user + system CPU of the daemon per event, µs (utime + stime of /proc/PID/stat,
    /// counted in 10 ms ticks).
    pub(super) cpu_per_event_us: f64,
    /// The same from /proc/PID/schedstat's run time, counted in ns.
    pub(super) cpu_ns_per_event_us: f64,
    /// Peak resident set size, KiB.
    pub(super) peak_rss_kib: u64,
    /// Exec (kernel timestamp) to the line reaching the stream client, ms.
    pub(super) latency_p50_ms: f64,
    pub(super) latency_p99_ms: f64,
    /// Spawn → programs attached, as the daemon reports it from its own start (ms), and as
    /// seen from outside: spawn → its "attached" line read (ms).
    pub(super) attach_ms: f64,
    pub(super) ready_ms: f64,
}

/// A running daemon with everything on: journal, unit model, /metrics scraped every
/// second, one stream client measuring exec → line latency.
pub(super) struct DaemonRun {
    child: Child,
    dir: PathBuf,
    port: u16,
    stop: Arc<AtomicBool>,
    client: JoinHandle<Vec<f64>>,
    scraper: JoinHandle<()>,
    /// The daemon's own account: its start → programs attached, ms.
    pub(super) attach_ms: f64,
    /// Spawn → its "attached" line read, ms.
    pub(super) ready_ms: f64,
}

impl DaemonRun {
    /// Starts the daemon, with `config` as its tracer.toml when given.
    pub(super) fn start(tracer: &Path, config: Option<&str>) -> anyhow::Result<Self> {
        let dir = std::env::temp_dir().join(format!("tracer-bench-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir)?;
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let config_file = dir.join("tracer.toml");
        std::fs::write(&config_file, config.unwrap_or(""))?;
        let spawned = Instant::now();
        let mut child = spawn(tracer, &config_file, &dir, port)?;
        let (mut err, attach_ms) = wait_ready(&mut child)?;
        let ready_ms = spawned.elapsed().as_secs_f64() * 1e3;
        // Keep draining its stderr so it never blocks on a full pipe.
        std::thread::spawn(move || std::io::copy(&mut err, &mut std::io::sink()));
        let stream = subscribe(&dir.join("run/tracer.sock"), &mut child)?;
        let stop = Arc::new(AtomicBool::new(false));
        let client = spawn_client(stream, stop.clone());
        let scraper = spawn_scraper(port, stop.clone());
        std::thread::sleep(Duration::from_millis(300));
        Ok(Self {
            child,
            dir,
            port,
            stop,
            client,
            scraper,
            attach_ms,
            ready_ms,
        })
    }

    /// Its files: tracer.toml, state/ (the journal), run/ (the socket).
    pub(super) fn dir(&self) -> &Path {
        &self.dir
    }

    pub(super) fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sum of a metric's series in the daemon's /metrics now.
    pub(super) fn metric(&self, name: &str) -> u64 {
        metric_sum(&scrape(self.port).unwrap_or_default(), name)
    }

    /// Stops the client and the daemon; the /metrics page just before, and the latencies.
    pub(super) fn finish(mut self) -> anyhow::Result<(String, Vec<f64>)> {
        let metrics = scrape(self.port).unwrap_or_default();
        self.stop.store(true, Ordering::Relaxed);
        let mut lat = self.client.join().unwrap_or_default();
        let _ = self.scraper.join();
        // SAFETY: kill with our own child's pid.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        self.child.wait()?;
        let _ = std::fs::remove_dir_all(&self.dir);
        lat.sort_by(f64::total_cmp);
        Ok((metrics, lat))
    }
}

/// `tracer daemon` with its files in `dir` and /metrics on `port`, stderr piped.
fn spawn(tracer: &Path, config_file: &Path, dir: &Path, port: u16) -> anyhow::Result<Child> {
    Command::new(tracer)
        .arg("daemon")
        .arg("--config")
        .arg(config_file)
        .arg("--state-dir")
        .arg(dir.join("state"))
        .arg("--runtime-dir")
        .arg(dir.join("run"))
        .arg("--metrics-listen")
        .arg(format!("127.0.0.1:{port}"))
        .stderr(Stdio::piped())
        .spawn()
        .context("starting tracer daemon")
}

/// Reads the daemon's stderr up to its ready line; the rest of its stderr, and the
/// attach time the line reports.
fn wait_ready(child: &mut Child) -> anyhow::Result<(BufReader<ChildStderr>, f64)> {
    read_stderr_until(child, "the daemon", parse_ready_line)
}

/// The daemon's ready line, "tracer daemon: ready: attach_ms=N ...": None for any other
/// line; for the ready line, N (its start → programs attached, ms), NaN when N is not a
/// number. The one place that knows the line's form. (Daemons before the key=value line
/// said "tracer daemon: attached in N ms; ...": read too, so that an older binary can be
/// measured beside a newer one.)
fn parse_ready_line(line: &str) -> Option<f64> {
    let number = |rest: &str| {
        rest.split_whitespace()
            .next()
            .and_then(|n| n.parse().ok())
            .unwrap_or(f64::NAN)
    };
    if let Some((_, fields)) = line.split_once("tracer daemon: ready:") {
        let ms = fields
            .split_whitespace()
            .find_map(|f| f.strip_prefix("attach_ms="));
        return Some(ms.map_or(f64::NAN, number));
    }
    line.split_once("attached in").map(|(_, rest)| number(rest))
}

/// Connects to the daemon's socket (waiting up to 30 s for it) and asks for every event;
/// kills the daemon when it does not come up.
fn subscribe(socket: &Path, child: &mut Child) -> anyhow::Result<UnixStream> {
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut stream = loop {
        if let Ok(s) = UnixStream::connect(socket) {
            break s;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            bail!("the daemon did not come up");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    stream.write_all(b"{\"op\":\"events\",\"filter\":{}}\n")?;
    Ok(stream)
}

/// The stream client: until `stop`, each exec line's latency (its kernel timestamp to
/// now), ms.
fn spawn_client(stream: UnixStream, stop: Arc<AtomicBool>) -> JoinHandle<Vec<f64>> {
    std::thread::spawn(move || {
        stream
            .set_read_timeout(Some(Duration::from_millis(200)))
            .ok();
        let mut reader = BufReader::new(stream);
        let mut lat = Vec::new();
        let mut line = String::new();
        while !stop.load(Ordering::Relaxed) {
            match reader.read_line(&mut line) {
                Ok(0) => break,
                Ok(_) if line.ends_with('\n') => {
                    if let Some(ts) = exec_ts_ns(&line) {
                        lat.push(boottime_ns().saturating_sub(ts) as f64 / 1e6);
                    }
                    line.clear();
                }
                _ => {}
            }
        }
        lat
    })
}

/// The kernel timestamp of a stream line that is an exec event.
fn exec_ts_ns(line: &str) -> Option<u64> {
    if !line.contains("\"kind\":\"exec\"") {
        return None;
    }
    line.split("\"ts_ns\":")
        .nth(1)
        .and_then(|r| r.split([',', '}']).next())
        .and_then(|v| v.parse::<u64>().ok())
}

/// Scrapes /metrics every second until `stop`, as a Prometheus would.
fn spawn_scraper(port: u16, stop: Arc<AtomicBool>) -> JoinHandle<()> {
    std::thread::spawn(move || {
        while !stop.load(Ordering::Relaxed) {
            let _ = scrape(port);
            std::thread::sleep(Duration::from_secs(1));
        }
    })
}

/// GET /metrics.
fn scrape(port: u16) -> std::io::Result<String> {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port))?;
    s.write_all(b"GET /metrics HTTP/1.0\r\n\r\n")?;
    let mut out = String::new();
    s.read_to_string(&mut out)?;
    Ok(out)
}

pub(super) fn metric_sum(metrics: &str, name: &str) -> u64 {
    metrics
        .lines()
        .filter(|l| l.starts_with(name))
        .filter_map(|l| l.split_whitespace().last()?.parse::<f64>().ok())
        .sum::<f64>() as u64
}

/// The daemon (everything on, or as `config` says) during `storms` parallel storms of N
/// execs.
pub(super) fn measure(
    n: u32,
    storms: u32,
    tracer: &Path,
    config: Option<&str>,
) -> anyhow::Result<Sample> {
    let d = DaemonRun::start(tracer, config)?;
    let pid = d.pid();
    let (attach_ms, ready_ms) = (d.attach_ms, d.ready_ms);
    let (cpu_before, run_before) = (cpu_seconds(pid), run_seconds(pid));
    let rate = storm(n, storms)?;
    // Let the last batch through before measuring.
    std::thread::sleep(Duration::from_millis(300));
    let cpu = cpu_seconds(pid) - cpu_before;
    let run = run_seconds(pid) - run_before;
    let peak_rss_kib = status_kib(pid, "VmHWM:");
    let (metrics, lat) = d.finish()?;
    Ok(Sample {
        rate,
        seen: Some(metric_sum(&metrics, "tracer_events_total")),
        lost: Some(metric_sum(&metrics, "tracer_events_dropped_total")),
        daemon: Some(DaemonStats {
            cpu_per_event_us: cpu * 1e6 / (3.0 * f64::from(n) * f64::from(storms)),
            cpu_ns_per_event_us: run * 1e6 / (3.0 * f64::from(n) * f64::from(storms)),
            peak_rss_kib,
            latency_p50_ms: percentile(&lat, 0.50),
            latency_p99_ms: percentile(&lat, 0.99),
            attach_ms,
            ready_ms,
        }),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ready_line_gives_the_attach_time() {
        let line = "tracer daemon: ready: attach_ms=33 processes=120 cgroups=80 journal=/var/lib/tracer/journal/x socket=/run/tracer/tracer.sock metrics=none failed_execs=caught\n";
        assert_eq!(parse_ready_line(line), Some(33.0));
        let line = "tracer daemon: attached in 87 ms; 312 processes and 41 cgroups found at start; journal /var/lib/tracer; socket /run/tracer/tracer.sock\n";
        assert_eq!(parse_ready_line(line), Some(87.0));
        assert_eq!(
            parse_ready_line("tracer daemon: attached in 4.5 ms\n"),
            Some(4.5)
        );
    }

    #[test]
    fn other_lines_are_not_the_ready_line() {
        assert_eq!(parse_ready_line(""), None);
        assert_eq!(parse_ready_line("tracer daemon: loading programs\n"), None);
    }

    #[test]
    fn a_ready_line_without_a_time_is_still_ready() {
        assert!(parse_ready_line("tracer daemon: attached in ? ms\n").is_some_and(f64::is_nan));
        assert!(parse_ready_line("attached in\n").is_some_and(f64::is_nan));
        assert!(parse_ready_line("tracer daemon: ready: processes=1\n").is_some_and(f64::is_nan));
    }
}
