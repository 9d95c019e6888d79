//! `bench scale`: how tracer's costs grow with the host. Each curve has three points or
//! more, measured in one run: the daemon's start-up (start → attached) and peak RSS with
//! many processes and cgroups present at start; its resident memory with many live
//! processes and 32 stream clients; the answer time of `tracer units` and `tracer why`
//! through the daemon with many live units (scope cgroups with a process each, as
//! systemd's transient scopes are); the replay rate of `tracer events -b` and
//! `tracer boot` over journals of growing size; the boot plot's render time and size.
//!
//! Each curve is printed with its growth between successive points (the exponent k of
//! y ∝ x^k: 1 is linear, below it the fixed part dominates; above 1.15 it is called worse
//! than linear).

use std::{
    io::{BufRead as _, BufReader, Read as _, Write as _},
    os::unix::net::UnixStream,
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail};

use super::{daemon::DaemonRun, median, status_kib, storm};

/// One curve: what grows (x), what is measured (y), the points.
struct Curve {
    title: &'static str,
    x: &'static str,
    y: &'static str,
    points: Vec<(f64, f64)>,
    /// What else each point measured, said beside it.
    notes: Vec<String>,
    /// y is a rate of the work x stands for: the growth is then that of the time taken,
    /// x / y.
    rate: bool,
}

impl Curve {
    fn new(title: &'static str, x: &'static str, y: &'static str) -> Self {
        Self {
            title,
            x,
            y,
            points: Vec::new(),
            notes: Vec::new(),
            rate: false,
        }
    }

    /// A curve whose y is a rate (events a second over x MiB).
    fn of_rate(title: &'static str, x: &'static str, y: &'static str) -> Self {
        Self {
            rate: true,
            ..Self::new(title, x, y)
        }
    }

    fn add(&mut self, x: f64, y: f64, note: String) {
        eprintln!(
            "bench: {}: {} {x} → {} {y:.2} {note}",
            self.title, self.x, self.y
        );
        self.points.push((x, y));
        self.notes.push(note);
    }

    /// The exponent between successive points: log(y2/y1) / log(x2/x1), of the time
    /// taken (x / y) for a rate.
    fn exponents(&self) -> Vec<f64> {
        let cost = |(x, y): (f64, f64)| if self.rate { x / y } else { y };
        self.points
            .windows(2)
            .map(|w| (cost(w[1]) / cost(w[0])).ln() / (w[1].0 / w[0].0).ln())
            .collect()
    }

    fn print(&self) {
        println!();
        println!("{}", self.title);
        println!();
        println!("| {} | {} | |", self.x, self.y);
        println!("|---:|---:|---|");
        for ((x, y), note) in self.points.iter().zip(&self.notes) {
            println!("| {x} | {y:.2} | {note} |");
        }
        let k = self.exponents();
        let worst = k.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        println!();
        println!(
            "growth {}between successive points: {} ({})",
            if self.rate { "of the time taken " } else { "" },
            k.iter()
                .map(|k| format!("x^{k:.2}"))
                .collect::<Vec<_>>()
                .join(", "),
            if worst > 1.15 {
                "worse than linear"
            } else {
                "no worse than linear"
            }
        );
    }
}

/// The groups of curves, by the names `--only` takes.
pub(super) const GROUPS: [&str; 5] = ["startup", "memory", "answers", "plot", "replay"];

pub(super) fn run(tracer: &Path, only: &[String]) -> anyhow::Result<()> {
    for g in only {
        if !GROUPS.contains(&g.as_str()) {
            bail!("no curves named {g}: choose among {}", GROUPS.join(", "));
        }
    }
    let wanted = |g: &str| only.is_empty() || only.iter().any(|o| o == g);
    let _pids = PidMax::at_least(80_000)?;
    out_of_pids_limits(40_000)?;
    let mut curves = Vec::new();
    if wanted("startup") {
        curves.push(startup_with_processes(tracer, &[1_000, 10_000, 30_000])?);
        curves.push(startup_with_cgroups(tracer, &[100, 1_000, 10_000])?);
    }
    if wanted("memory") {
        curves.push(rss_with_live_processes(tracer, &[100, 1_000, 10_000])?);
    }
    if wanted("answers") {
        curves.extend(answers(tracer, &[100, 1_000, 5_000])?);
    }
    if wanted("plot") {
        curves.extend(plot(tracer, &[50, 200, 1_000])?);
    }
    if wanted("replay") {
        curves.extend(replay(tracer, &[1, 10, 100])?);
    }
    for c in &curves {
        c.print();
    }
    Ok(())
}

/// Start → attached and peak RSS with N of something present at start, made by
/// `present(n)` and held until it is dropped.
fn startup_with<T>(
    tracer: &Path,
    c: &mut Curve,
    ns: &[usize],
    present: impl Fn(usize) -> anyhow::Result<T>,
) -> anyhow::Result<()> {
    for &n in ns {
        let held = present(n)?;
        let d = DaemonRun::start(tracer, None)?;
        std::thread::sleep(Duration::from_secs(1));
        let hwm = status_kib(d.pid(), "VmHWM:");
        let note = format!(
            "peak RSS {:.1} MiB, {:.0} ms spawn → ready line",
            hwm as f64 / 1024.0,
            d.ready_ms
        );
        c.add(n as f64, d.attach_ms, note);
        d.finish()?;
        drop(held);
    }
    Ok(())
}

/// Start → attached and peak RSS with N idle processes present.
fn startup_with_processes(tracer: &Path, ns: &[usize]) -> anyhow::Result<Curve> {
    let mut c = Curve::new(
        "daemon start-up with processes present",
        "processes",
        "ms start → attached",
    );
    startup_with(tracer, &mut c, ns, |n| Herd::spawn(n, |_| None))?;
    Ok(c)
}

/// Start → attached and peak RSS with N empty cgroups present.
fn startup_with_cgroups(tracer: &Path, ns: &[usize]) -> anyhow::Result<Curve> {
    let mut c = Curve::new(
        "daemon start-up with cgroups present",
        "cgroups",
        "ms start → attached",
    );
    startup_with(tracer, &mut c, ns, |n| {
        Cgroups::make("tracer-bench-scale", n, "cg", "")
    })?;
    Ok(c)
}

/// The daemon's resident memory once N processes were started while it ran and live on,
/// with 32 stream clients reading every event and a storm of 2000 execs through them.
fn rss_with_live_processes(tracer: &Path, ns: &[usize]) -> anyhow::Result<Curve> {
    let mut c = Curve::new(
        "daemon memory with live processes and 32 stream clients",
        "live processes",
        "MiB RSS",
    );
    for &n in ns {
        let d = DaemonRun::start(tracer, None)?;
        let socket = d.dir().join("run/tracer.sock");
        let clients = (0..32)
            .map(|_| StreamReader::subscribe(&socket))
            .collect::<anyhow::Result<Vec<_>>>()?;
        let herd = Herd::spawn(n, |_| None)?;
        storm(2000, 1)?;
        std::thread::sleep(Duration::from_secs(1));
        let rss = status_kib(d.pid(), "VmRSS:");
        let hwm = status_kib(d.pid(), "VmHWM:");
        let lines: u64 = clients.into_iter().map(StreamReader::finish).sum();
        c.add(
            n as f64,
            rss as f64 / 1024.0,
            format!(
                "peak {:.1} MiB; the clients read {lines} lines in all",
                hwm as f64 / 1024.0
            ),
        );
        drop(herd);
        d.finish()?;
    }
    Ok(c)
}

/// With N live units (a scope cgroup with one process each, made while the daemon runs):
/// `tracer units --json` and `tracer why` through the daemon (the median of 5 each).
fn answers(tracer: &Path, ns: &[usize]) -> anyhow::Result<[Curve; 2]> {
    let mut units = Curve::new("tracer units --json through the daemon", "live units", "ms");
    let mut why = Curve::new("tracer why UNIT through the daemon", "live units", "ms");
    for &n in ns {
        let d = DaemonRun::start(tracer, None)?;
        let tree = Cgroups::make("tracer-bench.slice", n, "tracer-bench-", ".scope")?;
        let herd = Herd::spawn(n, |i| Some(tree.procs(i)))?;
        std::thread::sleep(Duration::from_secs(2));
        let socket = d.dir().join("run/tracer.sock");
        let ask = |args: &[&str]| -> anyhow::Result<(f64, usize)> {
            let mut times = Vec::new();
            let mut bytes = 0;
            for _ in 0..5 {
                let t = Instant::now();
                let out = Command::new(tracer)
                    .args(args)
                    .env("TRACER_SOCKET", &socket)
                    .output()
                    .context("running tracer")?;
                times.push(t.elapsed().as_secs_f64() * 1e3);
                if !out.status.success() {
                    bail!(
                        "tracer {}: {}",
                        args.join(" "),
                        String::from_utf8_lossy(&out.stderr)
                    );
                }
                bytes = out.stdout.len();
                // (Within the daemon's 10 reports a second.)
                std::thread::sleep(Duration::from_millis(150));
            }
            Ok((median(times), bytes))
        };
        let (ms, bytes) = ask(&["units", "--json"])?;
        units.add(n as f64, ms, format!("{} KiB of JSON", bytes / 1024));
        let unit = format!("tracer-bench-{}.scope", n / 2);
        let (ms, _) = ask(&["why", &unit, "--json"])?;
        why.add(n as f64, ms, format!("of {unit}"));
        drop(herd);
        drop(tree);
        d.finish()?;
    }
    Ok([units, why])
}

/// `tracer boot --plot FILE.svg` over a recorded boot (systemd 252's, from the fixtures)
/// with N more services started beside one of its own: healthy.service's first start
/// (its cgroup made, its process moved in and exec'd) repeated under other names, pids
/// and cgroup ids.
fn plot(tracer: &Path, ns: &[usize]) -> anyhow::Result<[Curve; 2]> {
    let mut time = Curve::new("tracer boot --events --plot FILE.svg", "units", "ms");
    let mut size = Curve::new("the boot plot's size", "units", "KiB");
    let fixture = crate::root().join("tests/fixtures/vm-bookworm-systemd252.jsonl");
    let boot = std::fs::read_to_string(&fixture)
        .with_context(|| format!("reading {}", fixture.display()))?;
    const UNIT: &str = "/system.slice/healthy.service";
    // Its first run: the cgroup made, the process moved in, its exec.
    let first_run: Vec<&str> = boot
        .lines()
        .filter(|l| l.contains(&format!("\"{UNIT}\"")))
        .take_while(|l| !l.contains("\"kind\":\"exit\""))
        .filter(|l| !l.contains("\"comm\":\"systemctl\""))
        .take(4)
        .collect();
    let field = |l: &str, key: &str| -> Option<u64> {
        let rest = l.split(&format!("\"{key}\":")).nth(1)?;
        rest.split([',', '}']).next()?.parse().ok()
    };
    let exec = first_run
        .iter()
        .find(|l| l.contains("\"kind\":\"exec\""))
        .context("no exec of healthy.service in the fixture")?;
    let (pid, cgid) = (
        field(exec, "pid").context("no pid")?,
        field(exec, "cgroup_id").context("no cgroup_id")?,
    );
    let dir = std::env::temp_dir().join(format!("tracer-bench-plot-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    for &n in ns {
        let mut lines: Vec<String> = boot.lines().map(str::to_owned).collect();
        for i in 0..n {
            let (new_pid, new_cgid) = (1_000_000 + i, 1_000_000 + i);
            for l in &first_run {
                lines.push(
                    l.replace(UNIT, &format!("/system.slice/tracer-bench-{i}.service"))
                        .replace(
                            &format!("\"cgroup_id\":{cgid},"),
                            &format!("\"cgroup_id\":{new_cgid},"),
                        )
                        .replace(
                            &format!("\"cgroup_target_id\":{cgid},"),
                            &format!("\"cgroup_target_id\":{new_cgid},"),
                        )
                        .replace(&format!("\"pid\":{pid},"), &format!("\"pid\":{new_pid},"))
                        .replace(&format!("\"tgid\":{pid},"), &format!("\"tgid\":{new_pid},"))
                        .replace(
                            &format!("\"target_pid\":{pid},"),
                            &format!("\"target_pid\":{new_pid},"),
                        ),
                );
            }
        }
        lines.sort_by_key(|l| field(l, "ts_ns").unwrap_or(0));
        let events = dir.join(format!("boot-{n}.jsonl"));
        std::fs::write(&events, lines.join("\n") + "\n")?;
        let svg = dir.join(format!("plot-{n}.svg"));
        let mut times = Vec::new();
        for _ in 0..3 {
            let t = Instant::now();
            let out = Command::new(tracer)
                .args(["boot", "--events"])
                .arg(&events)
                .arg("--plot")
                .arg(&svg)
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .output()
                .context("running tracer boot")?;
            times.push(t.elapsed().as_secs_f64() * 1e3);
            if !out.status.success() {
                bail!(
                    "tracer boot --plot: {}",
                    String::from_utf8_lossy(&out.stderr)
                );
            }
        }
        let text = std::fs::read_to_string(&svg).unwrap_or_default();
        let kib = text.len() as f64 / 1024.0;
        let drawn = text.matches("tracer-bench-").count();
        time.add(
            n as f64,
            median(times),
            format!("{kib:.0} KiB, median of 3"),
        );
        size.add(
            n as f64,
            kib,
            format!("the bench's units named {drawn} times"),
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
    Ok([time, size])
}

/// Journals of 1, 10, 100 MiB (a daemon's recording of a storm, its frames repeated to
/// the size): `tracer events -b --json` (lines counted), `tracer events -b -n 1` (every
/// record read and decoded, one printed) and `tracer boot`, each timed.
fn replay(tracer: &Path, mibs: &[u64]) -> anyhow::Result<[Curve; 3]> {
    let mut json = Curve::of_rate(
        "replay: tracer events -b --json > pipe",
        "journal MiB",
        "million events/s",
    );
    let mut read = Curve::of_rate(
        "replay: tracer events -b -n 1 (every record read)",
        "journal MiB",
        "million events/s",
    );
    let mut boot = Curve::of_rate("replay: tracer boot -b", "journal MiB", "million events/s");
    // A recording to repeat: the daemon's journal of one storm.
    let d = DaemonRun::start(tracer, None)?;
    storm(5000, 1)?;
    std::thread::sleep(Duration::from_secs(1));
    let (boot_id, frames, header) = recorded_frames(&d.dir().join("state/journal"))?;
    d.finish()?;
    let root = std::env::temp_dir().join(format!("tracer-bench-replay-{}", std::process::id()));
    for &mib in mibs {
        let _ = std::fs::remove_dir_all(&root);
        let dir = root.join("journal").join(&boot_id);
        std::fs::create_dir_all(&dir)?;
        write_journal(&dir, &header, &frames, mib << 20)?;
        let state = root.to_str().context("temp dir not UTF-8")?;
        let t = Instant::now();
        let mut child = Command::new(tracer)
            .args(["events", "-b", "0", "--json", "--state-dir", state])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()?;
        let mut events = 0u64;
        for line in BufReader::new(child.stdout.take().context("no stdout")?).lines() {
            line?;
            events += 1;
        }
        child.wait()?;
        let secs = t.elapsed().as_secs_f64();
        json.add(
            mib as f64,
            events as f64 / secs / 1e6,
            format!("{events} events in {secs:.2} s"),
        );
        let timed = |args: &[&str]| -> anyhow::Result<f64> {
            let t = Instant::now();
            let out = Command::new(tracer)
                .args(args)
                .args(["--state-dir", state])
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .output()?;
            if !out.status.success() {
                bail!(
                    "tracer {}: {}",
                    args.join(" "),
                    String::from_utf8_lossy(&out.stderr)
                );
            }
            Ok(t.elapsed().as_secs_f64())
        };
        let secs = timed(&["events", "-b", "0", "-n", "1"])?;
        read.add(
            mib as f64,
            events as f64 / secs / 1e6,
            format!("{secs:.2} s"),
        );
        let secs = timed(&["boot", "--boot", "0"])?;
        boot.add(
            mib as f64,
            events as f64 / secs / 1e6,
            format!("{secs:.2} s"),
        );
    }
    let _ = std::fs::remove_dir_all(&root);
    Ok([json, read, boot])
}

/// The journal segment format's sizes (tracer/src/journal/mod.rs).
const HEADER_LEN: usize = 32;
const FRAME_HEAD: usize = 8;

/// The boot id, the frames (head included) and the first segment's header of the only
/// boot in `journal`.
fn recorded_frames(journal: &Path) -> anyhow::Result<(String, Vec<Vec<u8>>, Vec<u8>)> {
    let boot = std::fs::read_dir(journal)
        .with_context(|| format!("reading {}", journal.display()))?
        .flatten()
        .find(|e| e.path().is_dir())
        .context("no boot in the bench daemon's journal")?;
    let mut segs: Vec<PathBuf> = std::fs::read_dir(boot.path())?
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "tjs"))
        .collect();
    segs.sort();
    let mut frames = Vec::new();
    let mut header = Vec::new();
    for seg in &segs {
        let bytes = std::fs::read(seg)?;
        if bytes.len() < HEADER_LEN {
            continue;
        }
        if header.is_empty() {
            header = bytes[..HEADER_LEN].to_vec();
        }
        let mut at = HEADER_LEN;
        while at + FRAME_HEAD <= bytes.len() {
            let len = u32::from_le_bytes(bytes[at..at + 4].try_into()?) as usize;
            let end = at + FRAME_HEAD + len;
            if end > bytes.len() {
                break;
            }
            frames.push(bytes[at..end].to_vec());
            at = end;
        }
    }
    if frames.is_empty() {
        bail!("the bench daemon's journal has no frames");
    }
    Ok((
        boot.file_name().to_string_lossy().into_owned(),
        frames,
        header,
    ))
}

/// Segments of at most 16 MiB in `dir`, `frames` over and over, to `bytes` in all.
fn write_journal(dir: &Path, header: &[u8], frames: &[Vec<u8>], bytes: u64) -> anyhow::Result<()> {
    const SEGMENT: u64 = 16 << 20;
    let mut total = 0u64;
    let mut n = 1;
    let mut cycle = frames.iter().cycle();
    while total < bytes {
        let mut seg =
            std::io::BufWriter::new(std::fs::File::create(dir.join(format!("{n:08}.tjs")))?);
        seg.write_all(header)?;
        let mut in_seg = header.len() as u64;
        while in_seg < SEGMENT && total + in_seg < bytes {
            let f = cycle.next().context("no frames")?;
            seg.write_all(f)?;
            in_seg += f.len() as u64;
        }
        seg.flush()?;
        total += in_seg;
        n += 1;
    }
    Ok(())
}

/// N child processes that wait (forked, no exec), each first moved into the cgroup whose
/// cgroup.procs `place(i)` names; killed and reaped on drop.
struct Herd(Vec<libc::pid_t>);

impl Herd {
    fn spawn(n: usize, place: impl Fn(usize) -> Option<PathBuf>) -> anyhow::Result<Self> {
        let mut herd = Herd(Vec::with_capacity(n));
        for i in 0..n {
            // SAFETY: the child calls only async-signal-safe functions (pause, _exit).
            let pid = unsafe { libc::fork() };
            match pid {
                -1 => bail!(
                    "fork after {i} processes: {}",
                    std::io::Error::last_os_error()
                ),
                0 => loop {
                    // SAFETY: pause has no preconditions; the parent kills the child.
                    unsafe { libc::pause() };
                },
                pid => {
                    herd.0.push(pid);
                    if let Some(procs) = place(i) {
                        std::fs::write(&procs, pid.to_string())
                            .with_context(|| format!("moving {pid} to {}", procs.display()))?;
                    }
                }
            }
        }
        Ok(herd)
    }
}

impl Drop for Herd {
    fn drop(&mut self) {
        for &pid in &self.0 {
            // SAFETY: kill and reap our own children.
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
        for &pid in &self.0 {
            // SAFETY: as above.
            unsafe { libc::waitpid(pid, std::ptr::null_mut(), 0) };
        }
    }
}

/// N cgroups `PREFIX<i>SUFFIX` under `parent` at the cgroup2 root; removed on drop.
struct Cgroups {
    parent: PathBuf,
    names: Vec<PathBuf>,
}

impl Cgroups {
    fn make(parent: &str, n: usize, prefix: &str, suffix: &str) -> anyhow::Result<Self> {
        let parent = cgroup2_root()?.join(parent);
        std::fs::create_dir_all(&parent).with_context(|| format!("making {}", parent.display()))?;
        let mut tree = Cgroups {
            parent,
            names: Vec::with_capacity(n),
        };
        for i in 0..n {
            let p = tree.parent.join(format!("{prefix}{i}{suffix}"));
            std::fs::create_dir(&p).with_context(|| format!("making {}", p.display()))?;
            tree.names.push(p);
        }
        Ok(tree)
    }

    fn procs(&self, i: usize) -> PathBuf {
        self.names[i].join("cgroup.procs")
    }
}

impl Drop for Cgroups {
    fn drop(&mut self) {
        for p in &self.names {
            // (Its processes are reaped first: the herd is dropped before.)
            let deadline = Instant::now() + Duration::from_secs(5);
            while std::fs::remove_dir(p).is_err() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(10));
            }
        }
        let _ = std::fs::remove_dir(&self.parent);
    }
}

/// Where cgroup2 is mounted (/sys/fs/cgroup, or /sys/fs/cgroup/unified on hybrid hosts).
fn cgroup2_root() -> anyhow::Result<PathBuf> {
    let mounts = std::fs::read_to_string("/proc/self/mountinfo")?;
    mounts
        .lines()
        .find_map(|l| {
            let (left, right) = l.split_once(" - ")?;
            let mount = left.split_whitespace().nth(4)?;
            (right.split_whitespace().next()? == "cgroup2").then(|| PathBuf::from(mount))
        })
        .context("no cgroup2 mount in /proc/self/mountinfo")
}

/// A stream client that reads every line until told to stop.
struct StreamReader(std::thread::JoinHandle<u64>, UnixStream);

impl StreamReader {
    fn subscribe(socket: &Path) -> anyhow::Result<Self> {
        let mut s = UnixStream::connect(socket)
            .with_context(|| format!("connecting to {}", socket.display()))?;
        s.write_all(b"{\"op\":\"events\",\"filter\":{}}\n")?;
        let mut r = s.try_clone()?;
        let t = std::thread::spawn(move || {
            let mut buf = vec![0; 64 * 1024];
            let mut lines = 0u64;
            while let Ok(n) = r.read(&mut buf) {
                if n == 0 {
                    break;
                }
                lines += buf[..n].iter().filter(|&&b| b == b'\n').count() as u64;
            }
            lines
        });
        Ok(Self(t, s))
    }

    fn finish(self) -> u64 {
        let _ = self.1.shutdown(std::net::Shutdown::Both);
        self.0.join().unwrap_or(0)
    }
}

/// Moves this process to the root of each cgroup hierarchy where a pids.max on its way
/// is below `need` (a session's or a service's TasksMax, a container's limit): the herds
/// of processes are the bench's load, not the host's.
fn out_of_pids_limits(need: u64) -> anyhow::Result<()> {
    let mounts = std::fs::read_to_string("/proc/self/mountinfo")?;
    let own = std::fs::read_to_string("/proc/self/cgroup")?;
    for l in mounts.lines() {
        let Some((left, right)) = l.split_once(" - ") else {
            continue;
        };
        let mut r = right.split_whitespace();
        let (fstype, opts) = (r.next().unwrap_or(""), r.nth(1).unwrap_or(""));
        // The pids controller's hierarchy: cgroup2, or cgroup v1 with the pids option.
        let id = match fstype {
            "cgroup2" => "0::".to_owned(),
            "cgroup" if opts.split(',').any(|o| o == "pids") => {
                let Some(line) = own.lines().find(|c| {
                    c.split(':')
                        .nth(1)
                        .is_some_and(|ctl| ctl.split(',').any(|x| x == "pids"))
                }) else {
                    continue;
                };
                format!("{}:", line.split(':').take(2).collect::<Vec<_>>().join(":"))
            }
            _ => continue,
        };
        let Some(mount) = left.split_whitespace().nth(4) else {
            continue;
        };
        let Some(path) = own.lines().find_map(|c| c.strip_prefix(&id)) else {
            continue;
        };
        let mut dir = PathBuf::from(mount);
        let mut limited = false;
        for part in path.split('/').filter(|p| !p.is_empty()) {
            dir.push(part);
            let max = std::fs::read_to_string(dir.join("pids.max")).unwrap_or_default();
            limited |= max.trim().parse::<u64>().is_ok_and(|m| m < need);
        }
        if limited {
            let procs = Path::new(mount).join("cgroup.procs");
            std::fs::write(&procs, std::process::id().to_string())
                .with_context(|| format!("moving the bench to {}", procs.display()))?;
            eprintln!("bench: moved to {mount}'s root: pids.max on {path} is below {need}");
        }
    }
    Ok(())
}

/// kernel.pid_max raised to at least N for the bench, put back after.
struct PidMax(Option<String>);

impl PidMax {
    fn at_least(n: u64) -> anyhow::Result<Self> {
        const PATH: &str = "/proc/sys/kernel/pid_max";
        let was = std::fs::read_to_string(PATH)?;
        if was.trim().parse::<u64>().unwrap_or(0) >= n {
            return Ok(Self(None));
        }
        std::fs::write(PATH, n.to_string()).context("raising kernel.pid_max")?;
        Ok(Self(Some(was)))
    }
}

impl Drop for PidMax {
    fn drop(&mut self) {
        if let Some(was) = &self.0 {
            let _ = std::fs::write("/proc/sys/kernel/pid_max", was.trim());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn growth_is_the_exponent_between_points() {
        let mut c = Curve::new("t", "x", "y");
        c.add(1.0, 10.0, String::new());
        c.add(10.0, 100.0, String::new());
        c.add(100.0, 200.0, String::new());
        let k = c.exponents();
        assert!((k[0] - 1.0).abs() < 1e-9, "{k:?}");
        assert!((k[1] - 2f64.log10()).abs() < 1e-9, "{k:?}");
        // A rate that holds is linear time; one that halves with ten times the work is
        // worse than linear.
        let mut r = Curve::of_rate("r", "x", "y");
        r.add(1.0, 2.0, String::new());
        r.add(10.0, 2.0, String::new());
        r.add(100.0, 1.0, String::new());
        let k = r.exponents();
        assert!((k[0] - 1.0).abs() < 1e-9, "{k:?}");
        assert!((k[1] - (1.0 + 2f64.log10())).abs() < 1e-9, "{k:?}");
    }

    #[test]
    fn a_journal_is_written_to_its_size_in_whole_frames() {
        let dir = std::env::temp_dir().join(format!("xtask-scale-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let header = vec![7u8; HEADER_LEN];
        let frame = |len: u32| {
            let mut f = len.to_le_bytes().to_vec();
            f.extend([0; 4]);
            f.extend(vec![1u8; len as usize]);
            f
        };
        let frames = vec![frame(100), frame(50)];
        write_journal(&dir, &header, &frames, 1000).unwrap();
        let bytes = std::fs::read(dir.join("00000001.tjs")).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
        assert!(
            bytes.len() >= 1000 && bytes.len() < 1000 + 108,
            "{}",
            bytes.len()
        );
        assert_eq!(&bytes[..HEADER_LEN], &header[..]);
        // Frames follow one another whole: 108, 58, 108, ...
        assert_eq!(u32::from_le_bytes(bytes[32..36].try_into().unwrap()), 100);
        assert_eq!(u32::from_le_bytes(bytes[140..144].try_into().unwrap()), 50);
    }
}
