//! `cargo xtask bench exec-storm`: what tracing costs a fork+exec+exit storm of /bin/true,
//! measured side by side in one interleaved run: no tracer, `tracer events --json`, the
//! daemon, the daemon with `failed_execs = false`, and an equivalent bpftrace one-liner on
//! the same tracepoints; then no tracer and the daemon again with two storms in parallel
//! (both cores busy). Then, apart from the timed rounds, where the kernel-side cost of an
//! exec goes: each program's run time, and the syscall slow path.
//!
//! `cargo xtask bench soak`: the daemon under a long storm (two in parallel, plus cgroups
//! created and removed), its resident memory sampled over time.

use std::{
    io::{BufRead, BufReader, Read},
    path::Path,
    process::{Child, ChildStderr, Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail};
use clap::Subcommand;

#[derive(Subcommand)]
pub enum Bench {
    /// fork+exec+exit of /bin/true N times per run, interleaved over ROUNDS rounds.
    ExecStorm {
        #[arg(short, long, default_value_t = 20_000)]
        n: u32,
        #[arg(long, default_value_t = 3)]
        rounds: u32,
    },
    /// The daemon (journal, metrics, one stream client, unit model) under STORMS parallel
    /// storms run in a scope unit of their own, with a scope cgroup created and removed
    /// every 10 execs, until it has seen EVENTS events or DURATION has passed; its RSS
    /// sampled every SAMPLE seconds.
    Soak {
        /// Stop once the daemon has counted this many events (default 1000000 when no
        /// --duration is given).
        #[arg(long)]
        events: Option<u64>,
        /// Stop after this long: 600, 600s, 10m, 1h.
        #[arg(long, value_parser = parse_duration)]
        duration: Option<Duration>,
        #[arg(long, default_value_t = 2)]
        storms: u32,
        /// Seconds between RSS samples.
        #[arg(long, default_value_t = 5)]
        sample: u64,
    },
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    let (num, unit) = s
        .find(|c: char| !c.is_ascii_digit())
        .map_or((s, ""), |i| s.split_at(i));
    let n: u64 = num.parse().map_err(|_| format!("not a duration: {s}"))?;
    let secs = match unit {
        "" | "s" => n,
        "m" | "min" => n * 60,
        "h" => n * 3600,
        _ => return Err(format!("not a duration: {s} (use 600, 600s, 10m or 1h)")),
    };
    Ok(Duration::from_secs(secs))
}

/// The bpftrace program equivalent to what `tracer events` reports about processes.
const BPFTRACE_PROGRAM: &str = r#"
tracepoint:sched:sched_process_exec { printf("exec %d %d %s %s\n", pid, curtask->real_parent->tgid, comm, str(args->filename)); }
tracepoint:sched:sched_process_fork { printf("fork %d %d\n", args->parent_pid, args->child_pid); }
tracepoint:sched:sched_process_exit { printf("exit %d %d\n", pid, curtask->exit_code); }
"#;

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Setup {
    None,
    Tracer,
    Daemon,
    Bpftrace,
    /// Two storms at once, no tracer.
    None2,
    /// Two storms at once under the daemon.
    Daemon2,
    /// The daemon with `failed_execs = false`: no syscall tracepoint.
    DaemonLean,
}

impl Setup {
    fn label(self) -> &'static str {
        match self {
            Setup::None => "no tracer",
            Setup::Tracer => "tracer events --json > /dev/null",
            Setup::Daemon => "tracer daemon + 1 stream client",
            Setup::Bpftrace => "bpftrace one-liner > /dev/null",
            Setup::None2 => "2 parallel storms, no tracer",
            Setup::Daemon2 => "2 parallel storms, tracer daemon",
            Setup::DaemonLean => "tracer daemon, failed_execs = false",
        }
    }

    /// Storms run at once.
    fn storms(self) -> u32 {
        match self {
            Setup::None2 | Setup::Daemon2 => 2,
            _ => 1,
        }
    }

    /// What its rate is compared with.
    fn baseline(self) -> Setup {
        if self.storms() == 2 {
            Setup::None2
        } else {
            Setup::None
        }
    }
}

struct Sample {
    rate: f64,
    /// Events the tracer reported seeing (all of the machine's, not only the storm's).
    seen: Option<u64>,
    /// Records the kernel side could not deliver (full ring buffer, lost events).
    lost: Option<u64>,
    daemon: Option<DaemonStats>,
}

/// What the daemon cost during one storm.
#[derive(Clone, Copy, Debug)]
struct DaemonStats {
    /// user + system CPU of the daemon per event, µs (utime + stime of /proc/PID/stat,
    /// counted in 10 ms ticks).
    cpu_per_event_us: f64,
    /// The same from /proc/PID/schedstat's run time, counted in ns.
    cpu_ns_per_event_us: f64,
    /// Peak resident set size, KiB.
    peak_rss_kib: u64,
    /// Exec (kernel timestamp) to the line reaching the stream client, ms.
    latency_p50_ms: f64,
    latency_p99_ms: f64,
    /// Spawn → programs attached, as the daemon reports it from its own start (ms), and as
    /// seen from outside: spawn → its "attached" line read (ms).
    attach_ms: f64,
    ready_ms: f64,
}

pub fn run(bench: Bench) -> anyhow::Result<()> {
    let (n, rounds) = match bench {
        Bench::ExecStorm { n, rounds } => (n, rounds),
        Bench::Soak {
            events,
            duration,
            storms,
            sample,
        } => {
            let tracer = crate::build_release()?;
            let events = events.or(if duration.is_none() {
                Some(1_000_000)
            } else {
                None
            });
            return soak(
                &tracer,
                events,
                duration,
                storms,
                Duration::from_secs(sample),
            );
        }
    };
    let tracer = crate::build_release()?;
    let mut setups = vec![Setup::None, Setup::Tracer, Setup::Daemon, Setup::DaemonLean];
    if Command::new("bpftrace")
        .arg("--version")
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
    {
        setups.push(Setup::Bpftrace);
    } else {
        eprintln!(
            "bench: bpftrace is not installed (scripts/setup.sh installs it); comparing without it"
        );
    }
    setups.extend([Setup::None2, Setup::Daemon2]);
    let mut samples: Vec<(Setup, Sample)> = Vec::new();
    for round in 1..=rounds {
        for &setup in &setups {
            let s = measure(setup, n, &tracer)?;
            eprintln!(
                "bench: round {round}/{rounds} {:<34} {:>8.0} exec/s  seen {:?} lost {:?}",
                setup.label(),
                s.rate,
                s.seen,
                s.lost
            );
            if let Some(d) = s.daemon {
                eprintln!(
                    "bench:   daemon {:.2} µs CPU/event ({:.2} by schedstat), peak RSS {} KiB, stream latency p50 {:.1} ms p99 {:.1} ms, attached {:.0} ms after start ({:.0} ms spawn → ready line)",
                    d.cpu_per_event_us,
                    d.cpu_ns_per_event_us,
                    d.peak_rss_kib,
                    d.latency_p50_ms,
                    d.latency_p99_ms,
                    d.attach_ms,
                    d.ready_ms
                );
            }
            samples.push((setup, s));
        }
    }
    print_table(n, rounds, &setups, &samples);
    let none: Vec<f64> = samples
        .iter()
        .filter(|(s, _)| *s == Setup::None)
        .map(|(_, v)| v.rate)
        .collect();
    kernel_cost(n.min(5000), &tracer, median(none))?;
    for (setup, what) in [
        (Setup::Daemon, "one storm"),
        (Setup::Daemon2, "two parallel storms"),
    ] {
        let daemon: Vec<DaemonStats> = samples
            .iter()
            .filter(|(s, _)| *s == setup)
            .filter_map(|(_, s)| s.daemon)
            .collect();
        if daemon.is_empty() {
            continue;
        }
        let med = |f: fn(&DaemonStats) -> f64| median(daemon.iter().map(f).collect());
        println!();
        println!(
            "tracer daemon (journal, unit model, metrics, one stream client), {what}, median of {}: {:.2} µs CPU per event (utime+stime; {:.2} µs by schedstat), peak RSS {:.1} MiB, exec → stream line p50 {:.1} ms, p99 {:.1} ms; programs attached {:.0} ms after the daemon started ({:.0} ms from spawn to its ready line)",
            daemon.len(),
            med(|d| d.cpu_per_event_us),
            med(|d| d.cpu_ns_per_event_us),
            med(|d| d.peak_rss_kib as f64) / 1024.0,
            med(|d| d.latency_p50_ms),
            med(|d| d.latency_p99_ms),
            med(|d| d.attach_ms),
            med(|d| d.ready_ms),
        );
    }
    Ok(())
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    let m = v.len() / 2;
    if v.len() % 2 == 1 {
        v[m]
    } else {
        (v[m - 1] + v[m]) / 2.0
    }
}

fn print_table(n: u32, rounds: u32, setups: &[Setup], samples: &[(Setup, Sample)]) {
    let rate = |s: Setup| {
        median(
            samples
                .iter()
                .filter(|(x, _)| *x == s)
                .map(|(_, v)| v.rate)
                .collect(),
        )
    };
    // Each round's rate over its own baseline's, then the median: the machine's speed
    // drifts between rounds more than the differences measured here.
    let ratio = |s: Setup, of: Setup| {
        let rates = |x: Setup| {
            samples
                .iter()
                .filter(move |(y, _)| *y == x)
                .map(|(_, v)| v.rate)
        };
        median(rates(s).zip(rates(of)).map(|(a, b)| a / b).collect())
    };
    println!();
    println!(
        "exec storm: {n} × fork+exec+exit of /bin/true, {rounds} interleaved rounds; exec/s: the median; vs none: the median of each round's ratio"
    );
    println!();
    println!(
        "| setup | exec/s | vs none | slowdown | events seen (≥ {} per storm) | lost |",
        3 * u64::from(n)
    );
    println!("|---|---:|---:|---:|---:|---:|");
    for &s in setups {
        let r = rate(s);
        let vs = ratio(s, s.baseline());
        let of = |f: fn(&Sample) -> Option<u64>| {
            let v: Vec<u64> = samples
                .iter()
                .filter(|(x, _)| *x == s)
                .filter_map(|(_, v)| f(v))
                .collect();
            if v.is_empty() {
                "-".to_owned()
            } else {
                v.iter().map(u64::to_string).collect::<Vec<_>>().join(", ")
            }
        };
        println!(
            "| {} | {:.0} | {:.3} | {:.1}% | {} | {} |",
            s.label(),
            r,
            vs,
            100.0 * (1.0 - vs),
            of(|v| v.seen),
            of(|v| v.lost),
        );
    }
    if setups.contains(&Setup::Bpftrace) {
        let b = ratio(Setup::Bpftrace, Setup::None);
        println!();
        for (s, what) in [
            (Setup::Tracer, "tracer events"),
            (Setup::Daemon, "tracer daemon"),
        ] {
            println!(
                "{what}'s throughput relative to bpftrace's: {:.3} ({what} slows the storm {:.1}%, bpftrace {:.1}%)",
                ratio(s, Setup::Bpftrace),
                100.0 * (1.0 - ratio(s, Setup::None)),
                100.0 * (1.0 - b)
            );
        }
    }
}

/// One fork+exec+exit of /bin/true.
fn exec_true() -> anyhow::Result<()> {
    let status = Command::new("/bin/true")
        .status()
        .context("running /bin/true")?;
    if !status.success() {
        bail!("/bin/true failed: {status}");
    }
    Ok(())
}

/// The storm itself: `storms` threads each running N sequential fork+exec+exit of
/// /bin/true; the rate of all of them together.
fn storm(n: u32, storms: u32) -> anyhow::Result<f64> {
    let start = Instant::now();
    let threads: Vec<_> = (0..storms)
        .map(|_| std::thread::spawn(move || (0..n).try_for_each(|_| exec_true())))
        .collect();
    for t in threads {
        t.join()
            .map_err(|_| anyhow::anyhow!("a storm thread panicked"))??;
    }
    Ok(f64::from(n * storms) / start.elapsed().as_secs_f64())
}

fn measure(setup: Setup, n: u32, tracer: &Path) -> anyhow::Result<Sample> {
    match setup {
        Setup::None | Setup::None2 => Ok(Sample {
            rate: storm(n, setup.storms())?,
            seen: None,
            lost: None,
            daemon: None,
        }),
        Setup::Daemon | Setup::Daemon2 => measure_daemon(n, setup.storms(), tracer, None),
        Setup::DaemonLean => measure_daemon(n, 1, tracer, Some(LEAN_CONFIG)),
        Setup::Tracer => {
            let mut child = Command::new(tracer)
                .args(["events", "--json", "--standalone"])
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .context("starting tracer")?;
            let mut err = wait_for_line(&mut child, "streaming")?;
            let rate = storm(n, 1)?;
            let rest = interrupt_and_collect(&mut child, &mut err)?;
            // "tracer: S events seen, W shown, D dropped (ring buffer full), E lost to kernel read errors, M malformed"
            let summary = rest
                .lines()
                .find(|l| l.contains("events seen"))
                .with_context(|| format!("no summary from tracer; it said: {rest}"))?;
            let nums: Vec<u64> = summary
                .split(|c: char| !c.is_ascii_digit())
                .filter_map(|w| w.parse().ok())
                .collect();
            let [seen, _shown, dropped, errors, malformed] = nums[..] else {
                bail!("unexpected tracer summary: {summary}");
            };
            Ok(Sample {
                rate,
                seen: Some(seen),
                lost: Some(dropped + errors + malformed),
                daemon: None,
            })
        }
        Setup::Bpftrace => {
            let mut child = Command::new("bpftrace")
                .args(["-o", "/dev/null", "-e", BPFTRACE_PROGRAM])
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .context("starting bpftrace")?;
            wait_for_perf_events(&mut child, 3)?;
            let rate = storm(n, 1)?;
            let mut err = BufReader::new(child.stderr.take().context("no stderr pipe")?);
            let rest = interrupt_and_collect(&mut child, &mut err)?;
            let lost = rest
                .lines()
                .filter(|l| l.contains("Lost"))
                .filter_map(|l| l.split_whitespace().find_map(|w| w.parse::<u64>().ok()))
                .sum();
            Ok(Sample {
                rate,
                seen: None,
                lost: Some(lost),
                daemon: None,
            })
        }
    }
}

/// Waits until the child holds `want` perf-event fds: bpftrace attaches each tracepoint
/// program through one, so then it is tracing (with -o it prints nothing to say so).
fn wait_for_perf_events(child: &mut Child, want: usize) -> anyhow::Result<()> {
    let fds = format!("/proc/{}/fd", child.id());
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(status) = child.try_wait()? {
            bail!("bpftrace exited ({status}) before it was attached");
        }
        let perf = std::fs::read_dir(&fds)
            .map(|d| {
                d.flatten()
                    .filter(|e| {
                        std::fs::read_link(e.path())
                            .is_ok_and(|l| l.to_string_lossy().contains("perf_event"))
                    })
                    .count()
            })
            .unwrap_or(0);
        if perf >= want {
            // The attach ioctl follows the open at once; leave it a moment.
            std::thread::sleep(Duration::from_millis(200));
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("bpftrace did not attach within a minute");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Reads the child's stderr until a line containing `marker` (it is attached and running).
fn wait_for_line(child: &mut Child, marker: &str) -> anyhow::Result<BufReader<ChildStderr>> {
    let mut err = BufReader::new(child.stderr.take().context("no stderr pipe")?);
    let mut line = String::new();
    loop {
        line.clear();
        if err.read_line(&mut line)? == 0 {
            let status = child.wait()?;
            bail!("the tracer exited ({status}) before it was ready");
        }
        if line.contains(marker) {
            return Ok(err);
        }
    }
}

/// SIGINT, wait, and return what the child wrote to stderr after the ready line.
fn interrupt_and_collect(
    child: &mut Child,
    err: &mut BufReader<ChildStderr>,
) -> anyhow::Result<String> {
    // SAFETY: kill with a pid we own.
    unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGINT) };
    let mut rest = String::new();
    err.read_to_string(&mut rest)?;
    child.wait()?;
    Ok(rest)
}

fn boottime_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: a valid timespec pointer.
    unsafe { libc::clock_gettime(libc::CLOCK_BOOTTIME, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// Time a process has run on a CPU (schedstat's first field), seconds; what utime + stime
/// add up to, without their 10 ms ticks.
fn run_seconds(pid: u32) -> f64 {
    std::fs::read_to_string(format!("/proc/{pid}/schedstat"))
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse::<u64>().ok())
        .map_or(f64::NAN, |ns| ns as f64 / 1e9)
}

/// (utime + stime) of a process, seconds.
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<u64> = rest
        .split_whitespace()
        .map(|v| v.parse().unwrap_or(0))
        .collect();
    // After the comm: state is field 3, utime 14, stime 15.
    let ticks = f.get(11).copied().unwrap_or(0) + f.get(12).copied().unwrap_or(0);
    // SAFETY: sysconf has no preconditions.
    ticks as f64 / unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64
}

fn status_kib(pid: u32, key: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix(key))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

/// A running daemon with everything on: journal, unit model, /metrics scraped every
/// second, one stream client measuring exec → line latency.
struct DaemonRun {
    child: Child,
    dir: std::path::PathBuf,
    port: u16,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    client: std::thread::JoinHandle<Vec<f64>>,
    scraper: std::thread::JoinHandle<()>,
    /// The daemon's own account: its start → programs attached, ms.
    attach_ms: f64,
    /// Spawn → its "attached" line read, ms.
    ready_ms: f64,
}

impl DaemonRun {
    /// Starts the daemon, with `config` as its tracer.toml when given.
    fn start(tracer: &Path, config: Option<&str>) -> anyhow::Result<Self> {
        use std::{io::Write as _, os::unix::net::UnixStream};
        let dir = std::env::temp_dir().join(format!("tracer-bench-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir)?;
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let config_file = dir.join("tracer.toml");
        std::fs::write(&config_file, config.unwrap_or(""))?;
        let spawned = Instant::now();
        let mut child = Command::new(tracer)
            .arg("daemon")
            .arg("--config")
            .arg(&config_file)
            .arg("--state-dir")
            .arg(dir.join("state"))
            .arg("--runtime-dir")
            .arg(dir.join("run"))
            .arg("--metrics-listen")
            .arg(format!("127.0.0.1:{port}"))
            .stderr(Stdio::piped())
            .spawn()
            .context("starting tracer daemon")?;
        // "tracer daemon: attached in N ms; ..."
        let mut err = BufReader::new(child.stderr.take().context("no stderr pipe")?);
        let mut line = String::new();
        while !line.contains("attached in") {
            line.clear();
            if err.read_line(&mut line)? == 0 {
                let status = child.wait()?;
                bail!("the daemon exited ({status}) before it was ready");
            }
        }
        let ready_ms = spawned.elapsed().as_secs_f64() * 1e3;
        let attach_ms = line
            .split("attached in ")
            .nth(1)
            .and_then(|r| r.split_whitespace().next()?.parse().ok())
            .unwrap_or(f64::NAN);
        // Keep draining its stderr so it never blocks on a full pipe.
        std::thread::spawn(move || std::io::copy(&mut err, &mut std::io::sink()));
        let socket = dir.join("run/tracer.sock");
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut stream = loop {
            if let Ok(s) = UnixStream::connect(&socket) {
                break s;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                bail!("the daemon did not come up");
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        stream.write_all(b"{\"op\":\"events\",\"filter\":{}}\n")?;
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let client = {
            let stop = stop.clone();
            std::thread::spawn(move || {
                stream
                    .set_read_timeout(Some(Duration::from_millis(200)))
                    .ok();
                let mut reader = BufReader::new(stream);
                let mut lat = Vec::new();
                let mut line = String::new();
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    match reader.read_line(&mut line) {
                        Ok(0) => break,
                        Ok(_) if line.ends_with('\n') => {
                            if line.contains("\"kind\":\"exec\"")
                                && let Some(ts) = line
                                    .split("\"ts_ns\":")
                                    .nth(1)
                                    .and_then(|r| r.split([',', '}']).next())
                                    .and_then(|v| v.parse::<u64>().ok())
                            {
                                lat.push(boottime_ns().saturating_sub(ts) as f64 / 1e6);
                            }
                            line.clear();
                        }
                        _ => {}
                    }
                }
                lat
            })
        };
        let scraper = {
            let stop = stop.clone();
            std::thread::spawn(move || {
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    let _ = scrape(port);
                    std::thread::sleep(Duration::from_secs(1));
                }
            })
        };
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

    fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sum of a metric's series in the daemon's /metrics now.
    fn metric(&self, name: &str) -> u64 {
        metric_sum(&scrape(self.port).unwrap_or_default(), name)
    }

    /// Stops the client and the daemon; the /metrics page just before, and the latencies.
    fn finish(mut self) -> anyhow::Result<(String, Vec<f64>)> {
        let metrics = scrape(self.port).unwrap_or_default();
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
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

fn metric_sum(metrics: &str, name: &str) -> u64 {
    metrics
        .lines()
        .filter(|l| l.starts_with(name))
        .filter_map(|l| l.split_whitespace().last()?.parse::<f64>().ok())
        .sum::<f64>() as u64
}

/// The daemon's configuration without failed execs.
const LEAN_CONFIG: &str = "failed_execs = false\n";

/// The daemon (everything on, or as `config` says) during `storms` parallel storms of N
/// execs.
fn measure_daemon(
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

/// The cgroup2 mount, from /proc/self/mountinfo.
fn cgroup2_mount() -> Option<std::path::PathBuf> {
    let text = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
    text.lines().find_map(|l| {
        let (pre, post) = l.split_once(" - ")?;
        (post.split_whitespace().next()? == "cgroup2")
            .then(|| pre.split_whitespace().nth(4).map(std::path::PathBuf::from))?
    })
}

/// The daemon under a long storm: RSS over time, CPU per event, drops, latency.
fn soak(
    tracer: &Path,
    events: Option<u64>,
    duration: Option<Duration>,
    storms: u32,
    sample: Duration,
) -> anyhow::Result<()> {
    use std::sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    };
    // Transient scopes come and go, as `systemd-run --scope` makes them: every one is a
    // unit run the model sees begin and end.
    let churn_root = cgroup2_mount().map(|m| m.join("tracer-bench-soak.slice"));
    if let Some(root) = &churn_root {
        let _ = std::fs::create_dir(root);
    }
    let d = DaemonRun::start(tracer, None)?;
    let pid = d.pid();
    eprintln!(
        "bench: soak: daemon attached {:.0} ms after its start ({:.0} ms spawn → ready line); {storms} storms in a scope{}; until {}",
        d.attach_ms,
        d.ready_ms,
        if churn_root.is_some() {
            ", a cgroup created and removed every 10 execs"
        } else {
            ""
        },
        match (events, duration) {
            (Some(e), Some(t)) => format!("{e} events or {} s", t.as_secs()),
            (Some(e), None) => format!("{e} events"),
            (None, Some(t)) => format!("{} s", t.as_secs()),
            (None, None) => "interrupted".into(),
        }
    );
    // The storms run in a scope of their own, as a shell loop in a login session does: the
    // unit model places every process of them in that unit's run.
    let scope = churn_root.as_ref().map(|r| r.join("bench-storm.scope"));
    let home = std::fs::read_to_string("/proc/self/cgroup")
        .ok()
        .and_then(|t| {
            t.lines()
                .find_map(|l| l.strip_prefix("0::").map(str::to_owned))
        });
    if let Some(scope) = &scope
        && std::fs::create_dir(scope).is_ok()
    {
        std::fs::write(scope.join("cgroup.procs"), std::process::id().to_string())
            .context("moving the bench into its scope")?;
    }
    let stop = Arc::new(AtomicBool::new(false));
    let execs = Arc::new(AtomicU64::new(0));
    let cgroups = Arc::new(AtomicU64::new(0));
    let (cpu_before, run_before) = (cpu_seconds(pid), run_seconds(pid));
    let rss_start = status_kib(pid, "VmRSS:");
    let start = Instant::now();
    let threads: Vec<_> = (0..storms)
        .map(|i| {
            let (stop, execs, cgroups) = (stop.clone(), execs.clone(), cgroups.clone());
            let churn = churn_root.clone().filter(|_| i == 0);
            std::thread::spawn(move || -> anyhow::Result<()> {
                let mut k = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    exec_true()?;
                    execs.fetch_add(1, Ordering::Relaxed);
                    k += 1;
                    if let Some(root) = &churn
                        && k.is_multiple_of(10)
                    {
                        let cg = root.join(format!("run-bench{k}.scope"));
                        if std::fs::create_dir(&cg).is_ok() && std::fs::remove_dir(&cg).is_ok() {
                            cgroups.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                }
                Ok(())
            })
        })
        .collect();
    println!(
        "| elapsed s | events (daemon) | execs | cgroups made+removed | RSS KiB | CPU µs/event so far |"
    );
    println!("|---:|---:|---:|---:|---:|---:|");
    let mut rss: Vec<(f64, u64)> = Vec::new();
    let mut seen;
    loop {
        std::thread::sleep(sample);
        let t = start.elapsed();
        seen = d.metric("tracer_events_total");
        let r = status_kib(pid, "VmRSS:");
        rss.push((t.as_secs_f64(), r));
        let cpu = cpu_seconds(pid) - cpu_before;
        println!(
            "| {:.0} | {seen} | {} | {} | {r} | {:.2} |",
            t.as_secs_f64(),
            execs.load(Ordering::Relaxed),
            cgroups.load(Ordering::Relaxed),
            cpu * 1e6 / seen.max(1) as f64
        );
        if events.is_some_and(|e| seen >= e) || duration.is_some_and(|dur| t >= dur) {
            break;
        }
        if threads.iter().any(|t| t.is_finished()) {
            break;
        }
    }
    stop.store(true, Ordering::Relaxed);
    for t in threads {
        t.join()
            .map_err(|_| anyhow::anyhow!("a storm thread panicked"))??;
    }
    let elapsed = start.elapsed().as_secs_f64();
    std::thread::sleep(Duration::from_millis(500));
    let cpu = cpu_seconds(pid) - cpu_before;
    let run = run_seconds(pid) - run_before;
    let peak = status_kib(pid, "VmHWM:");
    let (metrics, lat) = d.finish()?;
    if let (Some(root), Some(scope)) = (&churn_root, &scope) {
        if let Some(home) = &home {
            let back = root
                .parent()
                .map(|m| m.join(home.trim_start_matches('/')).join("cgroup.procs"));
            if let Some(back) = back {
                let _ = std::fs::write(back, std::process::id().to_string());
            }
        }
        let _ = std::fs::remove_dir(scope);
        let _ = std::fs::remove_dir(root);
    }
    let seen = metric_sum(&metrics, "tracer_events_total").max(seen);
    let dropped = metric_sum(&metrics, "tracer_events_dropped_total");
    // Flat memory: the mean RSS of the last quarter of the samples against the second
    // quarter's (the first quarter is the warm-up).
    let q = rss.len() / 4;
    let mean = |s: &[(f64, u64)]| s.iter().map(|x| x.1 as f64).sum::<f64>() / s.len().max(1) as f64;
    let (early, late) = if q > 0 {
        (mean(&rss[q..2 * q]), mean(&rss[rss.len() - q..]))
    } else {
        (f64::NAN, f64::NAN)
    };
    println!();
    println!(
        "soak: {elapsed:.0} s, {storms} storms, {} execs ({:.0}/s), {} cgroups made and removed; daemon saw {seen} events, {dropped} dropped; {:.2} µs CPU per event ({:.2} by schedstat); RSS {:.1} MiB after attach, peak {:.1} MiB; mean RSS {:.1} MiB in the second quarter, {:.1} MiB in the last ({:+.1}%); exec → stream line p50 {:.1} ms, p99 {:.1} ms",
        execs.load(Ordering::Relaxed),
        execs.load(Ordering::Relaxed) as f64 / elapsed,
        cgroups.load(Ordering::Relaxed),
        cpu * 1e6 / seen.max(1) as f64,
        run * 1e6 / seen.max(1) as f64,
        rss_start as f64 / 1024.0,
        peak as f64 / 1024.0,
        early / 1024.0,
        late / 1024.0,
        100.0 * (late / early - 1.0),
        percentile(&lat, 0.50),
        percentile(&lat, 0.99),
    );
    Ok(())
}

/// GET /metrics.
fn scrape(port: u16) -> std::io::Result<String> {
    use std::io::Write as _;
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port))?;
    s.write_all(b"GET /metrics HTTP/1.0\r\n\r\n")?;
    let mut out = String::new();
    s.read_to_string(&mut out)?;
    Ok(out)
}

/// Programs' run counts and run time (ns), by name, of those loaded since `since`.
fn program_stats(since: std::time::SystemTime) -> Vec<(String, u64, u64)> {
    let mut v: Vec<(String, u64, u64)> = aya::programs::loaded_programs()
        .flatten()
        .filter(|p| p.loaded_at().is_some_and(|t| t >= since))
        .map(|p| {
            (
                p.name_as_str().unwrap_or("?").to_owned(),
                p.run_count(),
                p.run_time().as_nanos() as u64,
            )
        })
        .collect();
    v.sort();
    v
}

/// One getppid() round trip, ns: the best of three runs of two million.
fn syscall_ns() -> f64 {
    const N: u32 = 2_000_000;
    (0..3)
        .map(|_| {
            let t = Instant::now();
            for _ in 0..N {
                // SAFETY: getppid has no arguments and no effects.
                unsafe { libc::syscall(libc::SYS_getppid) };
            }
            t.elapsed().as_nanos() as f64 / f64::from(N)
        })
        .fold(f64::INFINITY, f64::min)
}

/// Syscalls the storm makes per exec (parent and child together), counted by strace
/// attached to this process; None without strace.
fn syscalls_per_exec(n: u32) -> Option<f64> {
    let out = std::env::temp_dir().join(format!("tracer-bench-strace-{}", std::process::id()));
    let mut child = Command::new("strace")
        .args(["-f", "-c", "-o"])
        .arg(&out)
        .arg("-p")
        .arg(std::process::id().to_string())
        .stderr(Stdio::null())
        .spawn()
        .ok()?;
    let traced = || {
        std::fs::read_to_string("/proc/self/status")
            .ok()
            .and_then(|t| {
                t.lines()
                    .find_map(|l| l.strip_prefix("TracerPid:"))
                    .map(|v| v.trim() != "0")
            })
            .unwrap_or(false)
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    while !traced() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    let ran = traced() && storm(n, 1).is_ok();
    // SAFETY: kill with our own child's pid; SIGINT makes strace detach and write its table.
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    let _ = child.wait();
    let table = std::fs::read_to_string(&out).unwrap_or_default();
    let _ = std::fs::remove_file(&out);
    // "100.00    0.109998           6     15935       102 total"
    let calls: f64 = table
        .lines()
        .find(|l| l.trim_end().ends_with("total"))?
        .split_whitespace()
        .nth(3)?
        .parse()
        .ok()?;
    ran.then(|| calls / f64::from(n))
}

/// Where the kernel-side cost of an exec goes, measured apart from the throughput rounds
/// (per-program statistics add two clock reads to every run): each program's run time
/// (kernel.bpf_stats_enabled, for one storm of N under the daemon), and the syscall slow
/// path every syscall takes while a syscall tracepoint is enabled.
fn kernel_cost(n: u32, tracer: &Path, rate_none: f64) -> anyhow::Result<()> {
    let plain = syscall_ns();
    let since = std::time::SystemTime::now() - Duration::from_secs(1);
    let d = DaemonRun::start(tracer, None)?;
    let traced = syscall_ns();
    let programs = match aya::sys::enable_stats(aya::sys::Stats::RunTime) {
        Ok(fd) => {
            let before = program_stats(since);
            storm(n, 1)?;
            let after = program_stats(since);
            drop(fd);
            Some(
                after
                    .into_iter()
                    .map(|(name, runs, ns)| {
                        let (r0, n0) = before
                            .iter()
                            .find(|(b, ..)| *b == name)
                            .map_or((0, 0), |(_, r, t)| (*r, *t));
                        (name, runs - r0, ns - n0)
                    })
                    .filter(|(_, runs, _)| *runs > 0)
                    .collect::<Vec<_>>(),
            )
        }
        Err(e) => {
            eprintln!("bench: per-program statistics unavailable ({e})");
            None
        }
    };
    d.finish()?;
    let lean = DaemonRun::start(tracer, Some(LEAN_CONFIG))?;
    let lean_ns = syscall_ns();
    lean.finish()?;
    let per_exec = syscalls_per_exec(n.min(1000));

    println!();
    println!(
        "kernel side, per exec of the storm (one storm of {n} under the daemon with kernel.bpf_stats_enabled, apart from the rounds above):"
    );
    let mut programs_ns = 0.0;
    if let Some(programs) = &programs {
        println!();
        println!("| program | runs per exec | ns per run | ns per exec |");
        println!("|---|---:|---:|---:|");
        for (name, runs, ns) in programs {
            let per = *ns as f64 / f64::from(n);
            programs_ns += per;
            println!(
                "| {name} | {:.2} | {:.0} | {per:.0} |",
                *runs as f64 / f64::from(n),
                *ns as f64 / *runs as f64
            );
        }
        println!("| all programs | | | {programs_ns:.0} |");
    }
    println!();
    let extra = traced - plain;
    println!(
        "a syscall (getppid): {plain:.0} ns without tracer, {traced:.0} ns under the daemon (+{extra:.0} ns: the execve/execveat exit tracepoints put every syscall on the slow path), {lean_ns:.0} ns with failed_execs = false (+{:.0} ns)",
        lean_ns - plain
    );
    let cycle_ns = 1e9 / rate_none;
    match per_exec {
        Some(calls) => {
            let slow = calls * extra;
            println!(
                "the storm makes {calls:.0} syscalls per exec (strace -c): +{:.1} µs per exec on the slow path",
                slow / 1e3
            );
            println!(
                "together {:.1} µs per exec in the kernel = {:.1}% of the storm's {:.0} µs per exec without tracer (programs {:.1}%, syscall slow path {:.1}%)",
                (programs_ns + slow) / 1e3,
                100.0 * (programs_ns + slow) / cycle_ns,
                cycle_ns / 1e3,
                100.0 * programs_ns / cycle_ns,
                100.0 * slow / cycle_ns
            );
        }
        None => println!(
            "(strace is not installed: syscalls per exec not counted; programs alone are {:.1}% of the storm's {:.0} µs per exec)",
            100.0 * programs_ns / cycle_ns,
            cycle_ns / 1e3
        ),
    }
    Ok(())
}
