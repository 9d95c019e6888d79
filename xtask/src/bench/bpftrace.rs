//! The comparison: a bpftrace one-liner on the same tracepoints, during one storm.

use std::{
    io::BufReader,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail};

use super::{Sample, interrupt_and_collect, storm};

/// The bpftrace program equivalent to what `tracer events` reports about processes.
const BPFTRACE_PROGRAM: &str = r#"
tracepoint:sched:sched_process_exec { printf("exec %d %d %s %s\n", pid, curtask->real_parent->tgid, comm, str(args->filename)); }
tracepoint:sched:sched_process_fork { printf("fork %d %d\n", args->parent_pid, args->child_pid); }
tracepoint:sched:sched_process_exit { printf("exit %d %d\n", pid, curtask->exit_code); }
"#;

/// bpftrace during one storm: the rate, and the events it says it lost.
pub(super) fn measure(n: u32) -> anyhow::Result<Sample> {
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
