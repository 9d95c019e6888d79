//! `cargo xtask bench exec-storm`: what tracing costs a fork+exec+exit storm of /bin/true,
//! measured side by side in one interleaved run: no tracer, `tracer events --json`, and an
//! equivalent bpftrace one-liner on the same tracepoints.

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
    Bpftrace,
}

impl Setup {
    fn label(self) -> &'static str {
        match self {
            Setup::None => "no tracer",
            Setup::Tracer => "tracer events --json > /dev/null",
            Setup::Bpftrace => "bpftrace one-liner > /dev/null",
        }
    }
}

struct Sample {
    rate: f64,
    /// Events the tracer reported seeing (all of the machine's, not only the storm's).
    seen: Option<u64>,
    /// Records the kernel side could not deliver (full ring buffer, lost events).
    lost: Option<u64>,
}

pub fn run(bench: Bench) -> anyhow::Result<()> {
    let Bench::ExecStorm { n, rounds } = bench;
    let tracer = crate::build_release()?;
    let mut setups = vec![Setup::None, Setup::Tracer];
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
            samples.push((setup, s));
        }
    }
    print_table(n, rounds, &setups, &samples);
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
    let base = rate(Setup::None);
    println!();
    println!(
        "exec storm: {n} × fork+exec+exit of /bin/true, {rounds} interleaved rounds, median exec/s"
    );
    println!();
    println!(
        "| setup | exec/s | vs none | slowdown | events seen (≥ {}) | lost |",
        3 * u64::from(n)
    );
    println!("|---|---:|---:|---:|---:|---:|");
    for &s in setups {
        let r = rate(s);
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
            r / base,
            100.0 * (1.0 - r / base),
            of(|v| v.seen),
            of(|v| v.lost),
        );
    }
    if setups.contains(&Setup::Bpftrace) {
        let (t, b) = (rate(Setup::Tracer), rate(Setup::Bpftrace));
        println!();
        println!(
            "tracer's throughput relative to bpftrace's: {:.3} (tracer slows the storm {:.1}%, bpftrace {:.1}%)",
            t / b,
            100.0 * (1.0 - t / base),
            100.0 * (1.0 - b / base)
        );
    }
}

/// The storm itself: N sequential fork+exec+exit of /bin/true.
fn storm(n: u32) -> anyhow::Result<f64> {
    let start = Instant::now();
    for _ in 0..n {
        let status = Command::new("/bin/true")
            .status()
            .context("running /bin/true")?;
        if !status.success() {
            bail!("/bin/true failed: {status}");
        }
    }
    Ok(f64::from(n) / start.elapsed().as_secs_f64())
}

fn measure(setup: Setup, n: u32, tracer: &Path) -> anyhow::Result<Sample> {
    match setup {
        Setup::None => Ok(Sample {
            rate: storm(n)?,
            seen: None,
            lost: None,
        }),
        Setup::Tracer => {
            let mut child = Command::new(tracer)
                .args(["events", "--json"])
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .context("starting tracer")?;
            let mut err = wait_for_line(&mut child, "streaming")?;
            let rate = storm(n)?;
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
            let rate = storm(n)?;
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
