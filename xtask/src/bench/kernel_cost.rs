//! Where the kernel-side cost of an exec goes, measured apart from the throughput rounds
//! (per-program statistics add two clock reads to every run): each program's run time
//! (kernel.bpf_stats_enabled, for one storm of N under the daemon), and the syscall slow
//! path every syscall takes while a syscall tracepoint is enabled.

use std::{
    path::Path,
    process::{Command, Stdio},
    time::{Duration, Instant, SystemTime},
};

use super::{
    daemon::{DaemonRun, LEAN_CONFIG},
    storm,
};

/// A program's name, run count and run time (ns).
type ProgramStats = (String, u64, u64);

/// What [`run`] measured.
struct KernelCost {
    /// One getppid() round trip, ns: without tracer, under the daemon, under the daemon
    /// with `failed_execs = false`.
    plain: f64,
    traced: f64,
    lean_ns: f64,
    /// Each program's runs and run time during the storm; None without per-program
    /// statistics.
    programs: Option<Vec<ProgramStats>>,
    /// Syscalls per exec of the storm; None without strace.
    per_exec: Option<f64>,
}

/// Measures and prints the kernel-side cost of one storm of `n`; `rate_none` is the
/// storm's rate without tracer, exec/s.
pub(super) fn run(n: u32, tracer: &Path, rate_none: f64) -> anyhow::Result<()> {
    let plain = syscall_ns();
    let since = SystemTime::now() - Duration::from_secs(1);
    let d = DaemonRun::start(tracer, None)?;
    let traced = syscall_ns();
    let programs = program_runs(n, since)?;
    d.finish()?;
    let lean = DaemonRun::start(tracer, Some(LEAN_CONFIG))?;
    let lean_ns = syscall_ns();
    lean.finish()?;
    let per_exec = syscalls_per_exec(n.min(1000));
    print_report(
        n,
        rate_none,
        &KernelCost {
            plain,
            traced,
            lean_ns,
            programs,
            per_exec,
        },
    );
    Ok(())
}

/// The runs and run time of each program loaded since `since` during one storm of `n`,
/// with the kernel's per-program statistics on; None when they cannot be turned on.
fn program_runs(n: u32, since: SystemTime) -> anyhow::Result<Option<Vec<ProgramStats>>> {
    match aya::sys::enable_stats(aya::sys::Stats::RunTime) {
        Ok(fd) => {
            let before = program_stats(since);
            storm(n, 1)?;
            let after = program_stats(since);
            drop(fd);
            Ok(Some(
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
            ))
        }
        Err(e) => {
            eprintln!("bench: per-program statistics unavailable ({e})");
            Ok(None)
        }
    }
}

fn print_report(n: u32, rate_none: f64, cost: &KernelCost) {
    let KernelCost {
        plain,
        traced,
        lean_ns,
        ref programs,
        per_exec,
    } = *cost;
    println!();
    println!(
        "kernel side, per exec of the storm (one storm of {n} under the daemon with kernel.bpf_stats_enabled, apart from the rounds above):"
    );
    let programs_ns = match programs {
        Some(programs) => print_programs(n, programs),
        None => 0.0,
    };
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
}

/// The table of each program's cost per exec; the programs' total, ns per exec.
fn print_programs(n: u32, programs: &[ProgramStats]) -> f64 {
    let mut programs_ns = 0.0;
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
    programs_ns
}

/// Programs' run counts and run time (ns), by name, of those loaded since `since`.
fn program_stats(since: SystemTime) -> Vec<ProgramStats> {
    let mut v: Vec<ProgramStats> = aya::programs::loaded_programs()
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
