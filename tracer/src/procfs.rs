//! The start-up snapshot: every process running before the programs were attached, from
//! /proc, so units that started before the tracer are known too (marked found at start).

use std::{fs, path::Path};

/// One running process as /proc shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProcInfo {
    pub pid: u32,
    pub ppid: u32,
    /// Start time, CLOCK_BOOTTIME ns (from /proc/PID/stat's clock ticks).
    pub start_ns: u64,
    pub comm: String,
    /// /proc/PID/exe, when readable.
    pub exe: Option<String>,
    pub cmdline: Vec<String>,
    /// Its cgroup2 path (the `0::` line of /proc/PID/cgroup).
    pub cgroup: Option<String>,
}

/// (comm, ppid, starttime in clock ticks) from the text of /proc/PID/stat. The comm is in
/// parentheses and may itself hold spaces and parentheses: the fields resume after the
/// last `)`.
pub fn parse_stat(text: &str) -> Option<(String, u32, u64)> {
    let open = text.find('(')?;
    let close = text.rfind(')')?;
    let comm = text.get(open + 1..close)?.to_owned();
    let rest: Vec<&str> = text.get(close + 1..)?.split_whitespace().collect();
    // rest[0] is the state (field 3); ppid is field 4, starttime field 22.
    let ppid = rest.get(1)?.parse().ok()?;
    let start = rest.get(19)?.parse().ok()?;
    Some((comm, ppid, start))
}

/// (user + system CPU time, resident set) in clock ticks and pages, from the text of
/// /proc/PID/stat (fields 14, 15 and 24).
pub fn parse_stat_usage(text: &str) -> Option<(u64, u64)> {
    let rest: Vec<&str> = text
        .get(text.rfind(')')? + 1..)?
        .split_whitespace()
        .collect();
    let field = |n: usize| rest.get(n - 3)?.parse::<u64>().ok();
    Some((field(14)? + field(15)?, field(24)?))
}

/// The `0::/path` line of /proc/PID/cgroup.
pub fn parse_cgroup(text: &str) -> Option<String> {
    text.lines()
        .find_map(|l| l.strip_prefix("0::"))
        .map(str::to_owned)
}

fn read_process(dir: &Path, pid: u32, ticks_per_sec: u64) -> Option<ProcInfo> {
    let stat = fs::read_to_string(dir.join("stat")).ok()?;
    let (comm, ppid, start) = parse_stat(&stat)?;
    // Kernel threads (children of kthreadd, and kthreadd itself) are not processes of units.
    if pid == 2 || ppid == 2 {
        return None;
    }
    let cmdline = fs::read(dir.join("cmdline")).unwrap_or_default();
    let cmdline: Vec<String> = cmdline
        .split(|&b| b == 0)
        .filter(|a| !a.is_empty())
        .map(|a| String::from_utf8_lossy(a).into_owned())
        .collect();
    Some(ProcInfo {
        pid,
        ppid,
        start_ns: start.saturating_mul(1_000_000_000) / ticks_per_sec.max(1),
        comm,
        exe: fs::read_link(dir.join("exe"))
            .ok()
            .map(|p| p.to_string_lossy().into_owned()),
        cmdline,
        cgroup: fs::read_to_string(dir.join("cgroup"))
            .ok()
            .as_deref()
            .and_then(parse_cgroup),
    })
}

/// Every process now; processes that vanish while being read are skipped.
pub fn snapshot() -> Vec<ProcInfo> {
    // SAFETY: sysconf has no preconditions.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u64;
    let Ok(entries) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    let mut procs: Vec<ProcInfo> = entries
        .flatten()
        .filter_map(|e| {
            let pid: u32 = e.file_name().to_str()?.parse().ok()?;
            read_process(&e.path(), pid, ticks)
        })
        .collect();
    procs.sort_by_key(|p| (p.start_ns, p.pid));
    procs
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_lines_with_awkward_comms() {
        let line = "1234 (my (odd) name) S 1 1234 1234 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 5678 1000 200 18446744073709551615";
        assert_eq!(parse_stat(line), Some(("my (odd) name".into(), 1, 5678)));
        assert_eq!(parse_stat("garbage"), None);
        assert_eq!(parse_stat_usage(line), Some((3, 200)));
        assert_eq!(
            parse_stat_usage(&line[..line.len() - 25]),
            None,
            "cut before field 24"
        );
        assert_eq!(parse_stat_usage("garbage"), None);
        assert_eq!(
            parse_cgroup("0::/system.slice/a.service\n"),
            Some("/system.slice/a.service".into())
        );
        assert_eq!(
            parse_cgroup("12:pids:/\n0::/init.scope\n"),
            Some("/init.scope".into())
        );
    }

    #[test]
    fn snapshot_sees_this_process() {
        let me = std::process::id();
        let all = snapshot();
        let mine = all.iter().find(|p| p.pid == me).expect("this process");
        // SAFETY: getppid has no preconditions.
        assert_eq!(mine.ppid, unsafe { libc::getppid() } as u32);
        assert!(mine.start_ns > 0);
        assert!(mine.exe.is_some());
        assert!(all.iter().all(|p| p.ppid != 2), "no kernel threads");
    }
}
