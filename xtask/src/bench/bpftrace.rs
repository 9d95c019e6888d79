//! The comparison: a bpftrace one-liner on the same tracepoints, during one storm.

use std::{
    io::BufReader,
    process::{Command, Stdio},
};

use anyhow::Context as _;

use super::{Sample, interrupt_and_collect, storm, wait_for_perf_events};

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
    wait_for_perf_events(&mut child, "bpftrace", 3)?;
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
