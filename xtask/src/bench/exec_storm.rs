//! `bench exec-storm`: the setups measured side by side, their interleaved rounds, and the
//! table of the results.

use std::{
    path::Path,
    process::{Command, Stdio},
};

use anyhow::{Context as _, bail};

use super::{
    Sample, bpftrace,
    daemon::{self, DaemonStats},
    interrupt_and_collect, kernel_cost, median, peers, storm, wait_for_line,
};

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Setup {
    None,
    Tracer,
    Daemon,
    Bpftrace,
    /// auditd with execve and execveat rules.
    Auditd,
    /// libbpf-tools' execsnoop -x.
    Execsnoop,
    /// Two storms at once, no tracer.
    None2,
    /// Two storms at once under the daemon.
    Daemon2,
    /// The daemon with `failed_execs = false`: no syscall tracepoint.
    DaemonLean,
    /// The daemon of the `--baseline` binary.
    BaselineDaemon,
    /// Two storms at once under the `--baseline` binary's daemon.
    BaselineDaemon2,
}

impl Setup {
    fn label(self) -> &'static str {
        match self {
            Setup::None => "no tracer",
            Setup::Tracer => "tracer events --json > /dev/null",
            Setup::Daemon => "tracer daemon + 1 stream client",
            Setup::Bpftrace => "bpftrace one-liner > /dev/null",
            Setup::Auditd => "auditd, execve + execveat rules",
            Setup::Execsnoop => "libbpf-tools execsnoop -x",
            Setup::None2 => "2 parallel storms, no tracer",
            Setup::Daemon2 => "2 parallel storms, tracer daemon",
            Setup::DaemonLean => "tracer daemon, failed_execs = false",
            Setup::BaselineDaemon => "baseline daemon + 1 stream client",
            Setup::BaselineDaemon2 => "2 parallel storms, baseline daemon",
        }
    }

    /// Storms run at once.
    fn storms(self) -> u32 {
        match self {
            Setup::None2 | Setup::Daemon2 | Setup::BaselineDaemon2 => 2,
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

/// The whole `bench exec-storm`: the rounds and their table, the kernel-side cost, and
/// the daemon's own figures.
pub(super) fn run(
    n: u32,
    rounds: u32,
    tracer: &Path,
    baseline: Option<&Path>,
) -> anyhow::Result<()> {
    let mut setups = setups();
    if baseline.is_some() {
        let at = setups
            .iter()
            .position(|s| *s == Setup::Daemon)
            .map_or(setups.len(), |i| i + 1);
        setups.insert(at, Setup::BaselineDaemon);
        setups.push(Setup::BaselineDaemon2);
    }
    let bins = Bins { tracer, baseline };
    let samples = run_rounds(n, rounds, &setups, &bins)?;
    print_table(n, rounds, &setups, &samples);
    let none: Vec<f64> = samples
        .iter()
        .filter(|(s, _)| *s == Setup::None)
        .map(|(_, v)| v.rate)
        .collect();
    kernel_cost::run(n.min(5000), bins.tracer, median(none))?;
    print_daemon_summary(&samples);
    Ok(())
}

/// The setups of one round, in order; each peer's only when it is installed.
fn setups() -> Vec<Setup> {
    let mut setups = vec![Setup::None, Setup::Tracer, Setup::Daemon, Setup::DaemonLean];
    for (setup, program) in [
        (Setup::Bpftrace, "bpftrace"),
        (Setup::Execsnoop, "execsnoop"),
        (Setup::Auditd, "auditd"),
    ] {
        if peers::installed(program) {
            setups.push(setup);
        } else {
            eprintln!(
                "bench: {program} is not installed (scripts/setup.sh installs it); comparing without it"
            );
        }
    }
    setups.extend([Setup::None2, Setup::Daemon2]);
    setups
}

/// Every setup once per round, `rounds` times; each sample as it is taken, on stderr.
/// The binaries measured: this build's, and the `--baseline` one.
struct Bins<'a> {
    tracer: &'a Path,
    baseline: Option<&'a Path>,
}

fn run_rounds(
    n: u32,
    rounds: u32,
    setups: &[Setup],
    bins: &Bins,
) -> anyhow::Result<Vec<(Setup, Sample)>> {
    let mut samples: Vec<(Setup, Sample)> = Vec::new();
    for round in 1..=rounds {
        for &setup in setups {
            let s = measure(setup, n, bins)?;
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
    Ok(samples)
}

/// The daemon's figures over the rounds (the medians), for one storm and for two.
fn print_daemon_summary(samples: &[(Setup, Sample)]) {
    for (setup, what) in [
        (Setup::Daemon, "one storm"),
        (Setup::Daemon2, "two parallel storms"),
        (Setup::BaselineDaemon, "baseline binary, one storm"),
        (
            Setup::BaselineDaemon2,
            "baseline binary, two parallel storms",
        ),
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
}

/// Each round's rate of `s` over its rate of `of`, then the median: the machine's speed
/// drifts between rounds more than the differences measured here.
fn ratio(samples: &[(Setup, Sample)], s: Setup, of: Setup) -> f64 {
    let rates = |x: Setup| {
        samples
            .iter()
            .filter(move |(y, _)| *y == x)
            .map(|(_, v)| v.rate)
    };
    median(rates(s).zip(rates(of)).map(|(a, b)| a / b).collect())
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
        let vs = ratio(samples, s, s.baseline());
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
    print_vs_peers(setups, samples);
}

/// The daemon's throughput against each peer's, both relative to no tracer.
fn print_vs_peers(setups: &[Setup], samples: &[(Setup, Sample)]) {
    let peers: Vec<Setup> = [Setup::Bpftrace, Setup::Execsnoop, Setup::Auditd]
        .into_iter()
        .filter(|p| setups.contains(p))
        .collect();
    if !peers.is_empty() {
        println!();
    }
    let daemon = ratio(samples, Setup::Daemon, Setup::None);
    for p in peers {
        let theirs = ratio(samples, p, Setup::None);
        println!(
            "tracer daemon's throughput relative to {}'s: {:.3} (the daemon slows the storm {:.1}%, it {:.1}%)",
            p.label(),
            ratio(samples, Setup::Daemon, p),
            100.0 * (1.0 - daemon),
            100.0 * (1.0 - theirs)
        );
    }
}

fn measure(setup: Setup, n: u32, bins: &Bins) -> anyhow::Result<Sample> {
    let tracer = bins.tracer;
    match setup {
        Setup::None | Setup::None2 => Ok(Sample {
            rate: storm(n, setup.storms())?,
            seen: None,
            lost: None,
            daemon: None,
        }),
        Setup::Daemon | Setup::Daemon2 => daemon::measure(n, setup.storms(), tracer, None),
        Setup::DaemonLean => daemon::measure(n, 1, tracer, Some(daemon::LEAN_CONFIG)),
        Setup::Tracer => measure_tracer_events(n, tracer),
        Setup::Bpftrace => bpftrace::measure(n),
        Setup::Auditd => peers::measure_auditd(n),
        Setup::Execsnoop => peers::measure_execsnoop(n),
        Setup::BaselineDaemon | Setup::BaselineDaemon2 => {
            let baseline = bins.baseline.context("no --baseline binary")?;
            daemon::measure(n, setup.storms(), baseline, None)
        }
    }
}

/// `tracer events --json --standalone` during one storm: its rate, and what its summary
/// line says it saw and lost.
fn measure_tracer_events(n: u32, tracer: &Path) -> anyhow::Result<Sample> {
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
