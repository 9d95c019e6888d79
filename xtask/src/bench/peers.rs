//! What people run instead of tracer, each during one storm: auditd with execve and
//! execveat rules, and libbpf-tools' execsnoop (failed execs included). bpftrace's
//! one-liner is in [`super::bpftrace`].

use std::{
    io::{BufRead as _, BufReader},
    path::Path,
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail};

use super::{Sample, interrupt_and_collect, signal_and_collect, storm, wait_for_perf_events};

/// Whether `program` is on this machine (scripts/setup.sh installs the peers).
pub(super) fn installed(program: &str) -> bool {
    ["/usr/sbin", "/sbin", "/usr/bin"]
        .iter()
        .any(|d| Path::new(d).join(program).exists())
}

/// The key the bench's audit rules carry, to count their records.
const AUDIT_KEY: &str = "tracer-bench";

/// auditd during one storm: Debian's auditd with its configuration and rules as shipped
/// (a backlog of 8192, auditd waiting up to 60 s rather than dropping, logs written with
/// `flush = INCREMENTAL_ASYNC`), plus an execve and an execveat rule; only the log's place
/// differs (a directory of the bench's own, its rotation off so that every record can be
/// counted). Seen: the SYSCALL records with the bench's key; lost: the kernel's count.
pub(super) fn measure_auditd(n: u32) -> anyhow::Result<Sample> {
    let dir = std::env::temp_dir().join(format!("tracer-bench-audit-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir)?;
    let log = dir.join("audit.log");
    let shipped = std::fs::read_to_string("/etc/audit/auditd.conf")
        .context("reading /etc/audit/auditd.conf (scripts/setup.sh installs auditd)")?;
    std::fs::write(dir.join("auditd.conf"), audit_config(&shipped, &log))?;
    // auditd refuses a configuration another user could change.
    let mode = |p: &Path, m: u32| {
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(m))
    };
    mode(&dir, 0o700)?;
    mode(&dir.join("auditd.conf"), 0o640)?;
    let mut child = Command::new("auditd")
        .args(["-n", "-c"])
        .arg(&dir)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .context("starting auditd")?;
    let result = (|| -> anyhow::Result<(f64, u64)> {
        wait_for_auditd(child.id())?;
        auditctl(&["-R", "/etc/audit/audit.rules"])?;
        for syscall in ["execve", "execveat"] {
            auditctl(&[
                "-a",
                "always,exit",
                "-F",
                "arch=b64",
                "-S",
                syscall,
                "-k",
                AUDIT_KEY,
            ])?;
        }
        let lost_before = audit_status("lost")?;
        let rate = storm(n, 1)?;
        let lost = audit_status("lost")? - lost_before;
        auditctl(&["-D"])?;
        Ok((rate, lost))
    })();
    // Rules gone and auditing off whatever happened: the next setups run without it.
    let _ = auditctl(&["-D"]);
    let _ = auditctl(&["-e", "0"]);
    let mut err = BufReader::new(child.stderr.take().context("no stderr pipe")?);
    // (auditd ignores SIGINT.)
    let rest = signal_and_collect(&mut child, &mut err, libc::SIGTERM)?;
    let (rate, lost) = result.with_context(|| format!("auditd said: {rest}"))?;
    let seen = count_lines(&log, |l| {
        l.starts_with("type=SYSCALL") && l.contains(&format!("key=\"{AUDIT_KEY}\""))
    })?;
    let _ = std::fs::remove_dir_all(&dir);
    Ok(Sample {
        rate,
        seen: Some(seen),
        lost: Some(lost),
        daemon: None,
    })
}

/// Debian's auditd.conf with the log in `log` and no rotation.
fn audit_config(shipped: &str, log: &Path) -> String {
    let mut out = String::new();
    for line in shipped.lines() {
        let key = line.split('=').next().unwrap_or("").trim();
        match key {
            "log_file" => out.push_str(&format!("log_file = {}\n", log.display())),
            "max_log_file_action" => out.push_str("max_log_file_action = IGNORE\n"),
            _ => {
                out.push_str(line);
                out.push('\n');
            }
        }
    }
    out
}

fn auditctl(args: &[&str]) -> anyhow::Result<String> {
    let out = Command::new("auditctl")
        .args(args)
        .output()
        .context("running auditctl")?;
    if !out.status.success() {
        bail!(
            "auditctl {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// A field of `auditctl -s` ("lost 0", "pid 1234").
fn audit_status(field: &str) -> anyhow::Result<u64> {
    let status = auditctl(&["-s"])?;
    status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.trim().parse().ok())
        .with_context(|| format!("no {field} in auditctl -s: {status}"))
}

/// Until the kernel names `pid` as its audit daemon.
fn wait_for_auditd(pid: u32) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(30);
    while audit_status("pid").ok() != Some(u64::from(pid)) {
        if Instant::now() > deadline {
            bail!("auditd (pid {pid}) did not register with the kernel within 30 s");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(())
}

fn count_lines(path: &Path, keep: impl Fn(&str) -> bool) -> anyhow::Result<u64> {
    let f = std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let mut n = 0;
    for line in BufReader::new(f).lines() {
        n += u64::from(keep(&line?));
    }
    Ok(n)
}

/// libbpf-tools' execsnoop during one storm, failed execs included (`-x`), its output
/// written to memory (/dev/shm, as cheap as /dev/null) and counted after (a line per exec
/// it saw); lost: what it says the perf buffer lost.
pub(super) fn measure_execsnoop(n: u32) -> anyhow::Result<Sample> {
    let shm = Path::new("/dev/shm");
    let out = if shm.is_dir() {
        shm.to_owned()
    } else {
        std::env::temp_dir()
    }
    .join(format!("tracer-bench-execsnoop-{}", std::process::id()));
    let mut child = Command::new("execsnoop")
        .arg("-x")
        .stdout(std::fs::File::create(&out)?)
        .stderr(Stdio::piped())
        .spawn()
        .context("starting execsnoop")?;
    // Two tracepoints (execve's entry and exit), then a perf buffer of one event per CPU:
    // once all are open it is tracing.
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    wait_for_perf_events(&mut child, "execsnoop", 2 + cpus)?;
    let rate = storm(n, 1)?;
    let mut err = BufReader::new(child.stderr.take().context("no stderr pipe")?);
    let rest = interrupt_and_collect(&mut child, &mut err)?;
    // "Lost 12 events on CPU #1!"
    let lost = rest
        .lines()
        .filter_map(|l| {
            l.strip_prefix("Lost ")?
                .split_whitespace()
                .next()?
                .parse::<u64>()
                .ok()
        })
        .sum();
    // One header line, then a line per exec.
    let seen = count_lines(&out, |_| true)?.saturating_sub(1);
    let _ = std::fs::remove_file(&out);
    Ok(Sample {
        rate,
        seen: Some(seen),
        lost: Some(lost),
        daemon: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_audit_config_moves_the_log_and_keeps_the_rest() {
        let shipped = "local_events = yes\nlog_file = /var/log/audit/audit.log\nflush = INCREMENTAL_ASYNC\nmax_log_file_action = ROTATE\n";
        let got = audit_config(shipped, Path::new("/tmp/x/audit.log"));
        assert_eq!(
            got,
            "local_events = yes\nlog_file = /tmp/x/audit.log\nflush = INCREMENTAL_ASYNC\nmax_log_file_action = IGNORE\n"
        );
    }
}
