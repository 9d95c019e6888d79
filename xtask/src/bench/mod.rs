//! `cargo xtask bench exec-storm`: what tracing costs a fork+exec+exit storm of /bin/true,
//! measured side by side in one interleaved run: no tracer, `tracer events --json`, the
//! daemon, the daemon with `failed_execs = false`, and an equivalent bpftrace one-liner on
//! the same tracepoints; then no tracer and the daemon again with two storms in parallel
//! (both cores busy). Then, apart from the timed rounds, where the kernel-side cost of an
//! exec goes: each program's run time, and the syscall slow path.
//!
//! `cargo xtask bench scale`: how the costs grow with processes, cgroups, units, clients
//! and journal size ([`scale`]).
//!
//! `cargo xtask bench soak`: the daemon under a long storm (two in parallel, plus cgroups
//! created and removed), its resident memory sampled over time.
//!
//! Here: the subcommand, the storm itself, and what the tools share (child processes, /proc
//! readers, statistics). The setups and their table are in [`exec_storm`], the daemon
//! under test in [`daemon`], the bpftrace comparison in [`bpftrace`], the kernel-side
//! cost in [`kernel_cost`], the long run in [`soak`].

mod bpftrace;
mod daemon;
mod exec_storm;
mod kernel_cost;
mod peers;
mod scale;
mod soak;

use std::{
    io::{BufRead, BufReader, Read},
    process::{Child, ChildStderr, Command},
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
        /// Another tracer binary (an earlier build) whose daemon is measured in the same
        /// rounds, beside this build's: the same run with both binaries.
        #[arg(long, value_name = "BIN")]
        baseline: Option<std::path::PathBuf>,
    },
    /// How the costs grow with the host: start-up with 1k-30k processes and 100-10k
    /// cgroups present, memory with 100-10k live processes and 32 stream clients, answers
    /// with 100-5000 units, the boot plot with 50-1000, replay of 1-100 MiB journals.
    Scale {
        /// Only these groups of curves (repeatable): startup, memory, answers, plot,
        /// replay.
        #[arg(long)]
        only: Vec<String>,
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

pub fn run(bench: Bench) -> anyhow::Result<()> {
    match bench {
        Bench::ExecStorm {
            n,
            rounds,
            baseline,
        } => {
            let tracer = crate::build_release()?;
            exec_storm::run(n, rounds, &tracer, baseline.as_deref())
        }
        Bench::Scale { only } => scale::run(&crate::build_release()?, &only),
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
            soak::run(
                &tracer,
                events,
                duration,
                storms,
                Duration::from_secs(sample),
            )
        }
    }
}

/// One setup's run of the storm.
struct Sample {
    rate: f64,
    /// Events the tracer reported seeing (all of the machine's, not only the storm's).
    seen: Option<u64>,
    /// Records the kernel side could not deliver (full ring buffer, lost events).
    lost: Option<u64>,
    daemon: Option<daemon::DaemonStats>,
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

/// Reads the child's stderr until a line containing `marker` (it is attached and running).
fn wait_for_line(child: &mut Child, marker: &str) -> anyhow::Result<BufReader<ChildStderr>> {
    read_stderr_until(child, "the tracer", |l| l.contains(marker).then_some(()))
        .map(|(err, ())| err)
}

/// Reads the child's stderr (`who`, for the error when it exits first) until `ready`
/// returns something for a line; the rest of its stderr, and what `ready` returned.
fn read_stderr_until<T>(
    child: &mut Child,
    who: &str,
    ready: impl Fn(&str) -> Option<T>,
) -> anyhow::Result<(BufReader<ChildStderr>, T)> {
    let mut err = BufReader::new(child.stderr.take().context("no stderr pipe")?);
    let mut line = String::new();
    loop {
        line.clear();
        if err.read_line(&mut line)? == 0 {
            let status = child.wait()?;
            bail!("{who} exited ({status}) before it was ready");
        }
        if let Some(found) = ready(&line) {
            return Ok((err, found));
        }
    }
}

/// SIGINT, wait, and return what the child wrote to stderr after the ready line.
fn interrupt_and_collect(
    child: &mut Child,
    err: &mut BufReader<ChildStderr>,
) -> anyhow::Result<String> {
    signal_and_collect(child, err, libc::SIGINT)
}

/// `signal`, wait, and return what the child wrote to stderr after the ready line.
fn signal_and_collect(
    child: &mut Child,
    err: &mut BufReader<ChildStderr>,
    signal: libc::c_int,
) -> anyhow::Result<String> {
    // SAFETY: kill with a pid we own.
    unsafe { libc::kill(child.id() as libc::pid_t, signal) };
    let mut rest = String::new();
    err.read_to_string(&mut rest)?;
    child.wait()?;
    Ok(rest)
}

/// Waits until the child (`who`) holds `want` perf-event fds: tools built on libbpf or
/// bpftrace attach each tracepoint program through one (and open one per CPU for a perf
/// buffer), so then it is tracing, whether or not it prints anything to say so.
fn wait_for_perf_events(child: &mut Child, who: &str, want: usize) -> anyhow::Result<()> {
    let fds = format!("/proc/{}/fd", child.id());
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(status) = child.try_wait()? {
            bail!("{who} exited ({status}) before it was attached");
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
            bail!("{who} did not attach within a minute");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
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

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
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
