//! `bench soak`: the daemon under a long storm, its RSS sampled over time, with CPU per
//! event, drops and latency at the end.

use std::{
    path::{Path, PathBuf},
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    thread::JoinHandle,
    time::{Duration, Instant},
};

use anyhow::Context as _;

use super::{
    cpu_seconds,
    daemon::{DaemonRun, metric_sum},
    exec_true, percentile, run_seconds, status_kib,
};

/// How long the soak runs, and how.
struct Plan {
    events: Option<u64>,
    duration: Option<Duration>,
    storms: u32,
    sample: Duration,
}

/// What the storm threads share with the sampler.
#[derive(Clone, Default)]
struct Counters {
    stop: Arc<AtomicBool>,
    execs: Arc<AtomicU64>,
    cgroups: Arc<AtomicU64>,
}

/// The daemon under a long storm: RSS over time, CPU per event, drops, latency.
pub(super) fn run(
    tracer: &Path,
    events: Option<u64>,
    duration: Option<Duration>,
    storms: u32,
    sample: Duration,
) -> anyhow::Result<()> {
    let plan = Plan {
        events,
        duration,
        storms,
        sample,
    };
    // Transient scopes come and go, as `systemd-run --scope` makes them: every one is a
    // unit run the model sees begin and end.
    let churn_root = cgroup2_mount().map(|m| m.join("tracer-bench-soak.slice"));
    if let Some(root) = &churn_root {
        let _ = std::fs::create_dir(root);
    }
    let d = DaemonRun::start(tracer, None)?;
    let pid = d.pid();
    announce(&d, &plan, churn_root.is_some());
    let (scope, home) = enter_scope(churn_root.as_deref())?;
    let counters = Counters::default();
    let (cpu_before, run_before) = (cpu_seconds(pid), run_seconds(pid));
    let rss_start = status_kib(pid, "VmRSS:");
    let start = Instant::now();
    let threads = spawn_storms(storms, churn_root.as_ref(), &counters);
    let (rss, seen) = sample_until(&d, &plan, &counters, &threads, start, cpu_before);
    counters.stop.store(true, Ordering::Relaxed);
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
    leave_scope(churn_root.as_deref(), scope.as_deref(), home.as_deref());
    let seen = metric_sum(&metrics, "tracer_events_total").max(seen);
    let dropped = metric_sum(&metrics, "tracer_events_dropped_total");
    let (early, late) = rss_quarters(&rss);
    let (execs, cgroups) = (
        counters.execs.load(Ordering::Relaxed),
        counters.cgroups.load(Ordering::Relaxed),
    );
    println!();
    println!(
        "soak: {elapsed:.0} s, {storms} storms, {} execs ({:.0}/s), {} cgroups made and removed; daemon saw {seen} events, {dropped} dropped; {:.2} µs CPU per event ({:.2} by schedstat); RSS {:.1} MiB after attach, peak {:.1} MiB; mean RSS {:.1} MiB in the second quarter, {:.1} MiB in the last ({:+.1}%); exec → stream line p50 {:.1} ms, p99 {:.1} ms",
        execs,
        execs as f64 / elapsed,
        cgroups,
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

/// The cgroup2 mount, from /proc/self/mountinfo.
fn cgroup2_mount() -> Option<PathBuf> {
    let text = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
    text.lines().find_map(|l| {
        let (pre, post) = l.split_once(" - ")?;
        (post.split_whitespace().next()? == "cgroup2")
            .then(|| pre.split_whitespace().nth(4).map(PathBuf::from))?
    })
}

/// Says on stderr what runs, and until when.
fn announce(d: &DaemonRun, plan: &Plan, churn: bool) {
    eprintln!(
        "bench: soak: daemon attached {:.0} ms after its start ({:.0} ms spawn → ready line); {} storms in a scope{}; until {}",
        d.attach_ms,
        d.ready_ms,
        plan.storms,
        if churn {
            ", a cgroup created and removed every 10 execs"
        } else {
            ""
        },
        match (plan.events, plan.duration) {
            (Some(e), Some(t)) => format!("{e} events or {} s", t.as_secs()),
            (Some(e), None) => format!("{e} events"),
            (None, Some(t)) => format!("{} s", t.as_secs()),
            (None, None) => "interrupted".into(),
        }
    );
}

/// Moves the bench into a scope of its own below `churn_root`, as a shell loop in a login
/// session runs: the unit model places every process of the storms in that unit's run.
/// The scope, and the cgroup the bench was in (to go back to).
fn enter_scope(churn_root: Option<&Path>) -> anyhow::Result<(Option<PathBuf>, Option<String>)> {
    let scope = churn_root.map(|r| r.join("bench-storm.scope"));
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
    Ok((scope, home))
}

/// Moves the bench back to `home` and removes the scope and `churn_root`.
fn leave_scope(churn_root: Option<&Path>, scope: Option<&Path>, home: Option<&str>) {
    if let (Some(root), Some(scope)) = (churn_root, scope) {
        if let Some(home) = home {
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
}

/// `storms` threads of sequential fork+exec+exit until `counters.stop`; the first also
/// creates and removes a cgroup below `churn_root` every 10 execs.
fn spawn_storms(
    storms: u32,
    churn_root: Option<&PathBuf>,
    counters: &Counters,
) -> Vec<JoinHandle<anyhow::Result<()>>> {
    (0..storms)
        .map(|i| {
            let Counters {
                stop,
                execs,
                cgroups,
            } = counters.clone();
            let churn = churn_root.cloned().filter(|_| i == 0);
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
        .collect()
}

/// Prints a row every `plan.sample` until the plan's events or duration are reached or a
/// storm thread ends; the RSS samples (elapsed s, KiB) and the events last counted.
fn sample_until(
    d: &DaemonRun,
    plan: &Plan,
    counters: &Counters,
    threads: &[JoinHandle<anyhow::Result<()>>],
    start: Instant,
    cpu_before: f64,
) -> (Vec<(f64, u64)>, u64) {
    let pid = d.pid();
    println!(
        "| elapsed s | events (daemon) | execs | cgroups made+removed | RSS KiB | CPU µs/event so far |"
    );
    println!("|---:|---:|---:|---:|---:|---:|");
    let mut rss: Vec<(f64, u64)> = Vec::new();
    let mut seen;
    loop {
        std::thread::sleep(plan.sample);
        let t = start.elapsed();
        seen = d.metric("tracer_events_total");
        let r = status_kib(pid, "VmRSS:");
        rss.push((t.as_secs_f64(), r));
        let cpu = cpu_seconds(pid) - cpu_before;
        println!(
            "| {:.0} | {seen} | {} | {} | {r} | {:.2} |",
            t.as_secs_f64(),
            counters.execs.load(Ordering::Relaxed),
            counters.cgroups.load(Ordering::Relaxed),
            cpu * 1e6 / seen.max(1) as f64
        );
        if plan.events.is_some_and(|e| seen >= e) || plan.duration.is_some_and(|dur| t >= dur) {
            break;
        }
        if threads.iter().any(|t| t.is_finished()) {
            break;
        }
    }
    (rss, seen)
}

/// Flat memory: the mean RSS of the second quarter of the samples and of the last (the
/// first quarter is the warm-up); NaN for both with fewer than four samples.
fn rss_quarters(rss: &[(f64, u64)]) -> (f64, f64) {
    let q = rss.len() / 4;
    let mean = |s: &[(f64, u64)]| s.iter().map(|x| x.1 as f64).sum::<f64>() / s.len().max(1) as f64;
    if q > 0 {
        (mean(&rss[q..2 * q]), mean(&rss[rss.len() - q..]))
    } else {
        (f64::NAN, f64::NAN)
    }
}
