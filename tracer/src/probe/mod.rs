//! Loading the embedded kernel programs, attaching them, and reading their ring buffer.

pub mod btf;
pub mod pin;
pub mod tracefs;

use std::{
    collections::HashSet,
    io,
    os::fd::AsRawFd,
    path::PathBuf,
    time::{Duration, Instant},
};

use aya::{
    Ebpf, EbpfLoader,
    maps::{Array, HashMap as BpfHashMap, Map, MapData, PerCpuArray, RingBuf},
    programs::{ProgramError, RawTracePoint, TracePoint, links::FdLink},
};
use tokio::io::{Interest, unix::AsyncFd};
use tracer_common::{
    Config, DAEMON_IGNORE_TGID, DAEMON_LAST_READ, DAEMON_SETTINGS, DAEMON_STAMP, STAT_DROPS,
    STAT_ERRORS,
};

pub use self::pin::Pinned;
use self::{
    btf::Btf,
    pin::{LINK, MAP, PROG, PinDir},
    tracefs::TraceFs,
};
use crate::{
    clock::BootClock,
    decode::{DecodeError, decode},
    event::{Event, EventKind},
};

/// The kernel programs, built by build.rs for the BPF target.
static EBPF_OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/tracer"));

const VMLINUX_BTF: &str = "/sys/kernel/btf/vmlinux";

/// `SIGNAL_GROUP_EXIT` in include/linux/sched/signal.h (unchanged since 2.6; a #define, so
/// not in BTF).
const SIGNAL_GROUP_EXIT: u32 = 0x4;

/// Classic tracepoints: (program, category, event). Program names fit the kernel's 15
/// characters, so `bpftool prog` and the benchmark's per-program costs tell them apart.
const TRACEPOINTS: [(&str, &str, &str); 6] = [
    ("execve_failed", "syscalls", "sys_exit_execve"),
    ("execveat_failed", "syscalls", "sys_exit_execveat"),
    ("cgroup_mkdir", "cgroup", "cgroup_mkdir"),
    ("cgroup_rmdir", "cgroup", "cgroup_rmdir"),
    ("cgroup_attach", "cgroup", "cgroup_attach_task"),
    ("mark_victim", "oom", "mark_victim"),
];

/// The access-check tracepoints (program, event), in the syscalls category: attached with
/// the failed-exec ones, which already put every syscall on the slow path. A kernel
/// without one of them (arm64 has no access(2)) goes without it.
const ACCESS_TRACEPOINTS: [(&str, &str); 3] = [
    ("access_fail", "sys_exit_access"),
    ("faccessat_fail", "sys_exit_faccessat"),
    ("faccessat2_fail", "sys_exit_faccessat2"),
];

/// `MNT_NOEXEC` (include/linux/mount.h) and `SB_I_NOEXEC` (include/linux/fs.h): #defines,
/// so not in BTF; unchanged since they were introduced.
const MNT_NOEXEC: u32 = 0x04;
const SB_I_NOEXEC: u32 = 0x02;

/// Raw tracepoints: (program, tracepoint). The hot ones: no record is built for them.
const RAW_TRACEPOINTS: [(&str, &str); 4] = [
    ("process_exec", "sched_process_exec"),
    ("process_exit", "sched_process_exit"),
    ("process_fork", "sched_process_fork"),
    ("signal_generate", "signal_generate"),
];

/// Why the probe could not start or read.
#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    #[error(
        "loading eBPF programs needs root, or the capabilities CAP_BPF and CAP_PERFMON \
         (missing: {missing}); run it with sudo"
    )]
    NotPermitted { missing: String },
    #[error(
        "kernel BTF is not available at {VMLINUX_BTF} ({0}): tracer needs a kernel built with \
         CONFIG_DEBUG_INFO_BTF=y"
    )]
    MissingBtf(io::Error),
    #[error("cannot read the kernel's BTF at {VMLINUX_BTF}: {0}")]
    Btf(#[from] btf::BtfError),
    #[error("{0}")]
    TraceFs(String),
    #[error("the {event} tracepoint has no field {field} on this kernel")]
    MissingField { event: String, field: String },
    #[error("ring buffer size {0} is not a power of two of at least 4096 bytes")]
    RingSize(u32),
    #[error("loading the eBPF programs failed: {0}")]
    Load(#[source] aya::EbpfError),
    #[error("loading or attaching the {program} program failed: {source}{hint}")]
    Program {
        program: &'static str,
        #[source]
        source: ProgramError,
        hint: &'static str,
    },
    #[error("the eBPF object has no {0}; it does not match this build")]
    Missing(&'static str),
    #[error("eBPF map {name}: {source}")]
    Map {
        name: &'static str,
        #[source]
        source: aya::maps::MapError,
    },
    #[error("reading the ring buffer: {0}")]
    Io(#[from] io::Error),
    #[error("pinning in bpffs: {0}")]
    Pin(String),
}

/// How to start the probe.
#[derive(Clone, Debug)]
pub struct ProbeOptions {
    /// Ring-buffer size in bytes (a power of two, at least a page).
    pub ring_size: u32,
    /// Drop the calling process's own events in the kernel.
    pub ignore_self: bool,
    /// After a read that returned events, wait this long before the next one, so records
    /// accumulate and are read in one batch; the programs do not wake the reader meanwhile
    /// (unless the ring is a quarter full). When a read finds nothing, the reader sleeps
    /// and the next record wakes it. This bounds the added latency.
    pub batch_delay: Duration,
    /// Catch failed execs (errno and path) with the execve/execveat syscall exit
    /// tracepoints. Enabling any syscall tracepoint puts every syscall of every process on
    /// the kernel's slow path (about 30 ns a syscall measured on 6.18), hence the choice.
    pub failed_execs: bool,
    /// Service managers whose children's failed access checks are recorded from the start
    /// (pid 1; user managers are found as they start, see [`Managers::follow`]).
    pub managers: Vec<u32>,
    /// Pin the programs, their links and maps in this bpffs directory, so that they go on
    /// recording when this process is gone; resume those found there (None: pin nothing,
    /// they detach with the process).
    pub pin_dir: Option<PathBuf>,
}

impl Default for ProbeOptions {
    fn default() -> Self {
        Self {
            ring_size: 4 << 20,
            ignore_self: true,
            batch_delay: Duration::from_millis(10),
            failed_execs: true,
            managers: vec![1],
            pin_dir: None,
        }
    }
}

/// Counters kept by the kernel programs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct KernelStats {
    /// Records lost because the ring buffer was full.
    pub drops: u64,
    /// Records lost because a kernel read failed.
    pub errors: u64,
}

/// The loaded and attached programs and their ring buffer.
pub struct Probe {
    // Owns the programs and their links (None: pinned ones resumed): dropping it detaches
    // everything that is not pinned.
    _ebpf: Option<Ebpf>,
    ring: AsyncFd<RingBuf<MapData>>,
    stats: PerCpuArray<MapData, u64>,
    /// The daemon's slots (`DAEMON_*`): its own tgid, the version stamp.
    daemon: Array<MapData, u64>,
    /// Where the programs are pinned (None: they are not), locked by this process.
    pins: Option<PinDir>,
    pinned: Pinned,
    /// Tells the programs whether the reader sleeps (1: wake it) or reads on a timer (0).
    asleep: Array<MapData, u32>,
    /// What `asleep` says now.
    sleeping: bool,
    /// Records that did not decode (a bug or a version mismatch; logged).
    malformed: u64,
    batch_delay: Duration,
    /// When the next read may start (set after a read that returned events).
    next_read: Option<tokio::time::Instant>,
    failed_execs: bool,
    /// Whether failed access checks are seen (their programs attached).
    access_checks: bool,
    /// The service managers whose children's checks are recorded, until taken.
    managers: Option<Managers>,
}

/// Most service managers watched at once (the size of the `MANAGERS` map).
const MAX_MANAGERS: usize = 256;

impl Probe {
    /// Loads and attaches every program, or, when `pin_dir` is set and holds programs of
    /// this version loaded with these settings, resumes them. Must be called inside a tokio
    /// runtime.
    pub fn load(opts: &ProbeOptions) -> Result<Self, ProbeError> {
        let started = Instant::now();
        check_privileges()?;
        if opts.ring_size < 4096 || !opts.ring_size.is_power_of_two() {
            return Err(ProbeError::RingSize(opts.ring_size));
        }
        let pins = opts.pin_dir.as_deref().map(PinDir::open).transpose()?;
        let stamp = pin::stamp(EBPF_OBJECT);
        let settings = pin::settings(opts.ring_size, opts.failed_execs);
        let mut pinned = if pins.is_some() {
            Pinned::New
        } else {
            Pinned::Off
        };
        // Since when nothing read the ring of pinned programs replaced (boot ns; 0: unknown).
        let mut unread_since = 0;
        if let Some(found) = pins.as_ref().filter(|p| p.has(MAP, "DAEMON")) {
            match examine(found, stamp, settings) {
                Ok(None) => {
                    return Self::resume(opts, pins.expect("examined above"), started);
                }
                Ok(Some((why, last_read))) => {
                    unread_since = last_read;
                    pinned = Pinned::Replaced {
                        why,
                        blind_ms: None,
                    };
                }
                Err(e) => {
                    tracing::warn!(
                        "the pinned programs in {} are unreadable: {e}",
                        found.dir.display()
                    );
                    pinned = Pinned::Replaced {
                        why: "unreadable",
                        blind_ms: None,
                    };
                }
            }
            let n = found.clear()?;
            tracing::info!(
                "removed {n} pinned objects of another version from {}",
                found.dir.display()
            );
        }
        let tracefs = TraceFs::find_or_mount()?;

        let config = {
            // The kernel's BTF (5 MiB on 6.18) is only read here, and freed before the
            // programs load.
            let vmlinux = std::fs::read(VMLINUX_BTF).map_err(ProbeError::MissingBtf)?;
            Config {
                wake_bytes: opts.ring_size / 4,
                ..kernel_config(&Btf::parse(&vmlinux)?, &tracefs)?
            }
        };
        tracing::debug!(?config, "kernel offsets");

        // No kernel BTF needed: the programs carry no CO-RE relocations (their offsets are
        // the CONFIG above) and no BTF tracepoint.
        let mut ebpf = EbpfLoader::new()
            .btf(None)
            .override_global("CONFIG", &config, true)
            .map_max_entries("EVENTS", opts.ring_size)
            .load(EBPF_OBJECT)
            .map_err(ProbeError::Load)?;

        // aya's loader parsed the kernel's BTF (~15 MiB while it lasts, whatever `.btf`
        // says); give that back to the system before the ring buffer is mapped, so the two
        // never add up.
        release_free_memory();
        if let Some(pins) = &pins {
            for name in PINNED_MAPS {
                pin_map(&ebpf, pins, name)?;
            }
        }
        let mut daemon = daemon_map(ebpf.take_map("DAEMON"))?;
        set_slot(&mut daemon, DAEMON_IGNORE_TGID, ignore_tgid(opts))?;
        let (failed_execs, access_checks) = attach_all(
            &mut ebpf,
            opts.failed_execs,
            &tracefs,
            config.tp_sys_exit_ret,
            pins.as_ref(),
        )?;
        if pins.is_some() {
            // Written last: a daemon that finds a stamp finds every program pinned.
            set_slot(&mut daemon, DAEMON_SETTINGS, settings)?;
            set_slot(&mut daemon, DAEMON_STAMP, stamp)?;
        }
        if let Pinned::Replaced { blind_ms, .. } = &mut pinned
            && unread_since != 0
        {
            *blind_ms = Some(BootClock::boot_ns_now().saturating_sub(unread_since) / 1_000_000);
        }
        let maps = take_maps(Source::Loaded(&mut ebpf))?;
        tracing::info!(
            elapsed_ms = started.elapsed().as_millis() as u64,
            ring_fd = maps.ring.get_ref().as_raw_fd(),
            failed_execs,
            access_checks,
            pinned = pinned.word(),
            "programs attached"
        );
        Ok(Self::new(
            Some(ebpf),
            maps,
            daemon,
            opts,
            (failed_execs, access_checks),
            (pins, pinned),
        ))
    }

    /// The pinned programs of this version, resumed: their maps opened, this process's own
    /// events filtered from now on. The records they wrote meanwhile wait in the ring.
    fn resume(opts: &ProbeOptions, pins: PinDir, started: Instant) -> Result<Self, ProbeError> {
        let mut daemon = daemon_map(Some(open_pinned_map(&pins, "DAEMON")?))?;
        set_slot(&mut daemon, DAEMON_IGNORE_TGID, ignore_tgid(opts))?;
        let failed_execs = TRACEPOINTS
            .iter()
            .filter(|(_, category, _)| *category == "syscalls")
            .all(|(program, _, _)| pins.has(LINK, program));
        let access_checks = failed_execs
            && ACCESS_TRACEPOINTS
                .iter()
                .any(|(program, _)| pins.has(LINK, program));
        let maps = take_maps(Source::Pinned(&pins))?;
        tracing::info!(
            elapsed_ms = started.elapsed().as_millis() as u64,
            failed_execs,
            access_checks,
            "resumed the programs pinned in {}",
            pins.dir.display()
        );
        Ok(Self::new(
            None,
            maps,
            daemon,
            opts,
            (failed_execs, access_checks),
            (Some(pins), Pinned::Resumed),
        ))
    }

    fn new(
        ebpf: Option<Ebpf>,
        maps: ReaderMaps,
        daemon: Array<MapData, u64>,
        opts: &ProbeOptions,
        (failed_execs, access_checks): (bool, bool),
        (pins, pinned): (Option<PinDir>, Pinned),
    ) -> Self {
        let mut managers = maps.managers;
        for &pid in &opts.managers {
            managers.watch(pid);
        }
        Self {
            _ebpf: ebpf,
            ring: maps.ring,
            stats: maps.stats,
            asleep: maps.asleep,
            daemon,
            pins,
            pinned,
            sleeping: true,
            malformed: 0,
            batch_delay: opts.batch_delay,
            next_read: None,
            failed_execs,
            access_checks,
            managers: Some(managers),
        }
    }

    /// How the running programs came to be (pinned or not, resumed or replaced).
    pub fn pinned(&self) -> &Pinned {
        &self.pinned
    }

    /// Notes that the ring was read up to now (pinned programs only), so that a daemon
    /// replacing them knows since when nothing read them.
    pub fn mark_read(&mut self) {
        if self.pins.is_some() {
            let _ = set_slot(&mut self.daemon, DAEMON_LAST_READ, BootClock::boot_ns_now());
        }
    }

    /// At the stop: with `keep`, the pinned programs go on recording (the next daemon
    /// drains what they write meanwhile), and this process's events are no longer
    /// filtered; without, the pins are removed and the programs detach with this process.
    /// Returns what was done, for the stop line.
    pub fn leave(&mut self, keep: bool) -> Result<String, ProbeError> {
        let Some(pins) = self.pins.take() else {
            return Ok("detached".into());
        };
        if keep {
            set_slot(&mut self.daemon, DAEMON_LAST_READ, BootClock::boot_ns_now())?;
            set_slot(&mut self.daemon, DAEMON_IGNORE_TGID, 0)?;
            // Recording goes on while nobody reads: the records wake no one.
            let _ = self.asleep.set(0, 0, 0);
            Ok(format!("programs left pinned in {}", pins.dir.display()))
        } else {
            let dir = pins.dir.clone();
            let n = pins.remove()?;
            Ok(format!("removed {n} pinned objects from {}", dir.display()))
        }
    }

    /// Whether failed execs are caught (asked for, and their programs attached).
    pub fn failed_execs(&self) -> bool {
        self.failed_execs
    }

    /// Whether failed access checks in service managers' children are seen.
    pub fn access_checks(&self) -> bool {
        self.access_checks
    }

    /// The service managers whose children's failed checks are recorded, to keep in step
    /// apart from the probe (the reader holds the probe while it reads); once.
    pub fn take_managers(&mut self) -> Option<Managers> {
        self.managers.take()
    }

    /// Waits until records are available, then decodes all of them into `out`.
    /// Cancel-safe: a read dropped while waiting loses nothing.
    pub async fn read(&mut self, out: &mut Vec<Event>) -> Result<(), ProbeError> {
        let mut malformed = 0;
        self.read_raw(|raw| match decode(raw) {
            Ok(ev) => out.push(ev),
            Err(e) => record_malformed(&mut malformed, &e),
        })
        .await?;
        self.malformed += malformed;
        Ok(())
    }

    /// Waits until records are available, then hands each one, as the kernel wrote it,
    /// to `f`; returns how many. Cancel-safe like [`Probe::read`].
    ///
    /// While records flow, it reads every `batch_delay` and the programs do not wake it;
    /// once a read finds nothing, it tells them so and sleeps until the next record.
    pub async fn read_raw(&mut self, mut f: impl FnMut(&[u8])) -> Result<usize, ProbeError> {
        let mut look_now = false;
        loop {
            if look_now {
                look_now = false;
            } else if self.sleeping {
                // Readiness is cleared before draining, so a record that lands after the
                // drain makes the fd readable again.
                self.ring.readable_mut().await?.clear_ready();
            } else if let Some(at) = self.next_read {
                tokio::select! {
                    () = tokio::time::sleep_until(at) => {}
                    // The ring is a quarter full: read now.
                    guard = self.ring.readable_mut() => guard?.clear_ready(),
                }
            }
            self.next_read = None;
            let ring = self.ring.get_mut();
            let mut n = 0;
            while let Some(item) = ring.next() {
                f(&item);
                n += 1;
            }
            if n > 0 {
                if self.sleeping {
                    self.set_sleeping(false)?;
                }
                if !self.batch_delay.is_zero() {
                    self.next_read = Some(tokio::time::Instant::now() + self.batch_delay);
                }
                return Ok(n);
            }
            if !self.sleeping {
                // From now on a record wakes the reader; one written before the programs
                // knew did not: look once more before sleeping.
                self.set_sleeping(true)?;
                look_now = true;
            }
        }
    }

    fn set_sleeping(&mut self, sleeping: bool) -> Result<(), ProbeError> {
        self.asleep
            .set(0, u32::from(sleeping), 0)
            .map_err(|source| ProbeError::Map {
                name: "READER_ASLEEP",
                source,
            })?;
        self.sleeping = sleeping;
        Ok(())
    }

    /// Counts a record that did not decode (the caller decoded it).
    pub fn note_malformed(&mut self, e: &DecodeError) {
        record_malformed(&mut self.malformed, e);
    }

    /// Hands every record available now to `f`, without waiting; returns how many.
    pub fn drain_raw(&mut self, mut f: impl FnMut(&[u8])) -> usize {
        let ring = self.ring.get_mut();
        let mut n = 0;
        while let Some(item) = ring.next() {
            f(&item);
            n += 1;
        }
        n
    }

    /// Decodes whatever records are available now, without waiting.
    pub fn drain(&mut self, out: &mut Vec<Event>) {
        drain(self.ring.get_mut(), &mut self.malformed, out);
    }

    /// The kernel's counters, summed over CPUs.
    pub fn kernel_stats(&self) -> KernelStats {
        let sum = |i: u32| {
            self.stats
                .get(&i, 0)
                .map(|per_cpu| per_cpu.iter().sum())
                .unwrap_or(0)
        };
        KernelStats {
            drops: sum(STAT_DROPS),
            errors: sum(STAT_ERRORS),
        }
    }

    /// Records that did not decode.
    pub fn malformed(&self) -> u64 {
        self.malformed
    }
}

/// The service managers whose children's failed access checks the programs record
/// (`MANAGERS`): pid 1 and the user managers.
pub struct Managers {
    map: BpfHashMap<MapData, u32, u8>,
    /// What the map holds.
    watched: HashSet<u32>,
}

impl Managers {
    /// Records the failed access checks of `pid`'s children from now on; false when
    /// [`MAX_MANAGERS`] are watched already or the map refused it.
    pub fn watch(&mut self, pid: u32) -> bool {
        if self.watched.contains(&pid) {
            return true;
        }
        if self.watched.len() >= MAX_MANAGERS {
            return false;
        }
        match self.map.insert(pid, 1, 0) {
            Ok(()) => {
                self.watched.insert(pid);
                true
            }
            Err(e) => {
                tracing::warn!("cannot watch service manager {pid}: {e}");
                false
            }
        }
    }

    /// Stops recording `pid`'s children's checks.
    pub fn forget(&mut self, pid: u32) {
        if self.watched.remove(&pid) {
            let _ = self.map.remove(&pid);
        }
    }

    /// Keeps the watched managers in step with the events: a user manager (`systemd
    /// --user`) is watched from its exec, a watched process is forgotten at its exit.
    pub fn follow(&mut self, ev: &Event) {
        match &ev.kind {
            EventKind::Exec { filename, argv, .. } if Self::is_user_manager(filename, argv) => {
                self.watch(ev.tgid);
            }
            EventKind::Exit { .. } if ev.tgid != 1 => self.forget(ev.tgid),
            _ => {}
        }
    }

    /// Whether an exec of `filename` with `argv` starts a user manager (`systemd --user`).
    pub fn is_user_manager(filename: &str, argv: &[String]) -> bool {
        filename.rsplit('/').next() == Some("systemd") && argv.iter().skip(1).any(|a| a == "--user")
    }
}

fn drain(ring: &mut RingBuf<MapData>, malformed: &mut u64, out: &mut Vec<Event>) {
    while let Some(item) = ring.next() {
        match decode(&item) {
            Ok(ev) => out.push(ev),
            Err(e) => record_malformed(malformed, &e),
        }
    }
}

/// Attaches every program; the failed-exec and access-check ones only when
/// `failed_execs`, and a kernel that refuses them is warned about, not an error. Whether
/// failed execs are caught, and whether failed access checks are. With `pins`, each
/// program attached and its link are pinned there.
fn attach_all(
    ebpf: &mut Ebpf,
    failed_execs: bool,
    tracefs: &TraceFs,
    sys_exit_ret: u32,
    pins: Option<&PinDir>,
) -> Result<(bool, bool), ProbeError> {
    let mut caught = failed_execs;
    for (program, category, event) in TRACEPOINTS {
        if category != "syscalls" {
            attach_tracepoint(ebpf, program, category, event, pins)?
                .map_err(|source| program_error(program, source))?;
        } else if failed_execs
            && let Err(e) = attach_tracepoint(ebpf, program, category, event, pins)?
        {
            // They need bpf_task_pt_regs (5.15): everything else still works without.
            tracing::warn!(
                "failed execs are not caught on this kernel: {}",
                program_error(program, e)
            );
            caught = false;
        }
    }
    let mut access = caught;
    for (program, event) in ACCESS_TRACEPOINTS.into_iter().filter(|_| caught) {
        // A kernel without this syscall, or with its record laid out otherwise, goes
        // without it.
        match tracefs.format("syscalls", event) {
            Ok(f) if f.optional("ret") == Some(sys_exit_ret) => {}
            _ => {
                tracing::debug!("no {event} tracepoint like sys_exit_execve's here");
                continue;
            }
        }
        if let Err(e) = attach_tracepoint(ebpf, program, "syscalls", event, pins)? {
            tracing::warn!(
                "failed access checks are not seen on this kernel: {}",
                program_error(program, e)
            );
            access = false;
        }
    }
    for (program, tracepoint) in RAW_TRACEPOINTS {
        attach_raw_tracepoint(ebpf, program, tracepoint, pins)?
            .map_err(|source| program_error(program, source))?;
    }
    Ok((caught, access))
}

/// The maps the daemon keeps pinned (the programs hold the others).
const PINNED_MAPS: [&str; 5] = ["DAEMON", "EVENTS", "STATS", "READER_ASLEEP", "MANAGERS"];

/// Where the reader's maps come from: the programs just loaded, or pinned ones.
enum Source<'a> {
    Loaded(&'a mut Ebpf),
    Pinned(&'a PinDir),
}

impl Source<'_> {
    fn map(&mut self, name: &'static str) -> Result<Map, ProbeError> {
        match self {
            Self::Loaded(ebpf) => ebpf
                .take_map(name)
                .ok_or(ProbeError::Missing("one of its maps")),
            Self::Pinned(pins) => open_pinned_map(pins, name),
        }
    }
}

fn open_pinned_map(pins: &PinDir, name: &'static str) -> Result<Map, ProbeError> {
    let data = MapData::from_pin(pins.path(MAP, name))
        .map_err(|source| ProbeError::Map { name, source })?;
    Map::from_map_data(data).map_err(|source| ProbeError::Map { name, source })
}

fn pin_map(ebpf: &Ebpf, pins: &PinDir, name: &'static str) -> Result<(), ProbeError> {
    let map = ebpf
        .map(name)
        .ok_or(ProbeError::Missing("one of its maps"))?;
    map.pin(pins.path(MAP, name))
        .map_err(|e| ProbeError::Pin(format!("pinning the {name} map: {e}")))
}

fn daemon_map(map: Option<Map>) -> Result<Array<MapData, u64>, ProbeError> {
    let map = map.ok_or(ProbeError::Missing("DAEMON map"))?;
    Array::try_from(map).map_err(|source| ProbeError::Map {
        name: "DAEMON",
        source,
    })
}

fn set_slot(daemon: &mut Array<MapData, u64>, slot: u32, value: u64) -> Result<(), ProbeError> {
    daemon
        .set(slot, value, 0)
        .map_err(|source| ProbeError::Map {
            name: "DAEMON",
            source,
        })
}

/// The tgid whose events the programs drop: this process's, unless asked otherwise.
fn ignore_tgid(opts: &ProbeOptions) -> u64 {
    if opts.ignore_self {
        u64::from(std::process::id())
    } else {
        0
    }
}

/// Whether the programs pinned in `pins` are this version's, loaded with these settings:
/// None when they are, else why not and when a daemon last read their ring (0: unknown).
fn examine(
    pins: &PinDir,
    stamp: u64,
    settings: u64,
) -> Result<Option<(&'static str, u64)>, ProbeError> {
    let daemon = daemon_map(Some(open_pinned_map(pins, "DAEMON")?))?;
    let slot = |i| {
        daemon.get(&i, 0).map_err(|source| ProbeError::Map {
            name: "DAEMON",
            source,
        })
    };
    let last_read = slot(DAEMON_LAST_READ)?;
    let why = if slot(DAEMON_STAMP)? != stamp {
        Some("another version")
    } else if slot(DAEMON_SETTINGS)? != settings {
        Some("other settings (ring_size or failed_execs)")
    } else if !RAW_TRACEPOINTS
        .iter()
        .all(|(program, _)| pins.has(LINK, program))
    {
        Some("links missing")
    } else {
        None
    };
    Ok(why.map(|w| (w, last_read)))
}

/// The ring buffer, the per-CPU counters, the reader-asleep flag, the watched managers.
struct ReaderMaps {
    ring: AsyncFd<RingBuf<MapData>>,
    stats: PerCpuArray<MapData, u64>,
    asleep: Array<MapData, u32>,
    managers: Managers,
}

/// The maps the reader uses: the ring buffer (registered with the runtime), the
/// per-CPU counters, the reader-asleep flag (set: the first read sleeps until a record
/// arrives), and the service managers watched (those a previous daemon watched included).
fn take_maps(mut from: Source<'_>) -> Result<ReaderMaps, ProbeError> {
    let ring = RingBuf::try_from(from.map("EVENTS")?).map_err(|source| ProbeError::Map {
        name: "EVENTS",
        source,
    })?;
    // SAFETY: the ring buffer's fd stays open for as long as the AsyncFd owns it.
    let ring = unsafe { AsyncFd::register_with_interest(ring, Interest::READABLE) }
        .map_err(|e| ProbeError::Io(e.into()))?;
    let stats = PerCpuArray::try_from(from.map("STATS")?).map_err(|source| ProbeError::Map {
        name: "STATS",
        source,
    })?;
    let mut asleep =
        Array::try_from(from.map("READER_ASLEEP")?).map_err(|source| ProbeError::Map {
            name: "READER_ASLEEP",
            source,
        })?;
    asleep.set(0, 1, 0).map_err(|source| ProbeError::Map {
        name: "READER_ASLEEP",
        source,
    })?;
    let map: BpfHashMap<MapData, u32, u8> =
        BpfHashMap::try_from(from.map("MANAGERS")?).map_err(|source| ProbeError::Map {
            name: "MANAGERS",
            source,
        })?;
    let watched = map.keys().filter_map(Result::ok).collect();
    Ok(ReaderMaps {
        ring,
        stats,
        asleep,
        managers: Managers { map, watched },
    })
}

/// Returns the heap's free pages to the system (glibc keeps them otherwise).
pub fn release_free_memory() {
    #[cfg(target_env = "gnu")]
    // SAFETY: malloc_trim has no preconditions.
    unsafe {
        libc::malloc_trim(0);
    }
}

fn record_malformed(malformed: &mut u64, e: &DecodeError) {
    *malformed += 1;
    if malformed.is_power_of_two() {
        tracing::warn!(
            total = *malformed,
            "dropped a record that did not decode: {e}"
        );
    }
}

/// Loads and attaches a classic tracepoint program; with `pins`, pins it and its link
/// (a `BPF_LINK_TYPE_PERF_EVENT` link: aya makes one with bpf_link_create where the kernel
/// has them, 5.15 on). The outer error is a pin that failed, the inner one the program.
fn attach_tracepoint(
    ebpf: &mut Ebpf,
    program: &'static str,
    category: &str,
    event: &str,
    pins: Option<&PinDir>,
) -> Result<Result<(), ProgramError>, ProbeError> {
    let attached = program_of::<TracePoint>(ebpf, program).and_then(|tp| {
        tp.load()?;
        let id = tp.attach(category, event)?;
        pins.map(|_| tp.take_link(id)).transpose()
    });
    match attached {
        Ok(Some(link)) => {
            let link = FdLink::try_from(link).map_err(|e| {
                ProbeError::Pin(format!(
                    "the {program} link is not a BPF link ({e}): this kernel cannot pin tracepoint links (5.15 can); set pin_dir = \"\""
                ))
            })?;
            pin_program_and_link(ebpf, program, link, pins).map(Ok)
        }
        Ok(None) => Ok(Ok(())),
        Err(e) => Ok(Err(e)),
    }
}

/// Like [`attach_tracepoint`] for a raw tracepoint (a `BPF_LINK_TYPE_RAW_TRACEPOINT` link).
fn attach_raw_tracepoint(
    ebpf: &mut Ebpf,
    program: &'static str,
    tracepoint: &str,
    pins: Option<&PinDir>,
) -> Result<Result<(), ProgramError>, ProbeError> {
    let attached = program_of::<RawTracePoint>(ebpf, program).and_then(|tp| {
        tp.load()?;
        let id = tp.attach(tracepoint)?;
        pins.map(|_| tp.take_link(id)).transpose()
    });
    match attached {
        Ok(Some(link)) => pin_program_and_link(ebpf, program, link.into(), pins).map(Ok),
        Ok(None) => Ok(Ok(())),
        Err(e) => Ok(Err(e)),
    }
}

/// The program called `name`, as its type.
fn program_of<'a, P>(ebpf: &'a mut Ebpf, name: &str) -> Result<&'a mut P, ProgramError>
where
    &'a mut P: TryFrom<&'a mut aya::programs::Program, Error = ProgramError>,
{
    ebpf.program_mut(name)
        .ok_or(ProgramError::NotLoaded)?
        .try_into()
}

/// Pins the program and its link: the pinned link keeps the program attached once this
/// process's descriptors are closed.
fn pin_program_and_link(
    ebpf: &mut Ebpf,
    program: &str,
    link: FdLink,
    pins: Option<&PinDir>,
) -> Result<(), ProbeError> {
    let pins = pins.ok_or(ProbeError::Missing("pin directory"))?;
    ebpf.program_mut(program)
        .ok_or(ProbeError::Missing("one of its programs"))?
        .pin(pins.path(PROG, program))
        .map_err(|e| ProbeError::Pin(format!("pinning the {program} program: {e}")))?;
    link.pin(pins.path(LINK, program))
        .map_err(|e| ProbeError::Pin(format!("pinning the {program} link: {e}")))?;
    Ok(())
}

fn program_error(program: &'static str, source: ProgramError) -> ProbeError {
    let text = format!("{source:?}");
    let hint = if text.contains("PermissionDenied") || text.contains("Operation not permitted") {
        " (tracer needs root, or CAP_BPF and CAP_PERFMON)"
    } else {
        ""
    };
    ProbeError::Program {
        program,
        source,
        hint,
    }
}

/// The offsets the programs need on this kernel.
fn kernel_config(btf: &Btf, tracefs: &TraceFs) -> Result<Config, ProbeError> {
    let task = |m| btf.member_offset("task_struct", m);
    let signal = |m| btf.member_offset("signal_struct", m);
    let mm = |m| btf.member_offset("mm_struct", m);
    let exit = tracefs.format("sched", "sched_process_exit")?;
    let sys_exit = tracefs.format("syscalls", "sys_exit_execve")?;
    let sys_exitat = tracefs.format("syscalls", "sys_exit_execveat")?;
    let mkdir = tracefs.format("cgroup", "cgroup_mkdir")?;
    let rmdir = tracefs.format("cgroup", "cgroup_rmdir")?;
    let attach = tracefs.format("cgroup", "cgroup_attach_task")?;
    let oom = tracefs.format("oom", "mark_victim")?;
    // The programs use one set of offsets for mkdir and rmdir, and one for both syscall exits.
    for field in ["root", "level", "id", "path"] {
        if mkdir.offset(field)? != rmdir.offset(field)? {
            return Err(ProbeError::TraceFs(format!(
                "cgroup_mkdir and cgroup_rmdir lay out {field} differently on this kernel"
            )));
        }
    }
    if sys_exit.offset("ret")? != sys_exitat.offset("ret")? {
        return Err(ProbeError::TraceFs(
            "sys_exit_execve and sys_exit_execveat lay out ret differently on this kernel".into(),
        ));
    }
    // The access programs use the same `ret` offset; one laid out otherwise is left out
    // at attach time (see `access_tracepoints`).
    let [arg0, arg1, arg2, arg3] = syscall_arg_regs(btf)?;
    let file = |m| btf.member_offset("file", m);
    let path = |m| btf.member_offset("path", m);
    let inode = |m| btf.member_offset("inode", m);
    Ok(Config {
        signal_group_exit: SIGNAL_GROUP_EXIT,
        task_pid: task("pid")?,
        task_tgid: task("tgid")?,
        task_real_parent: task("real_parent")?,
        task_group_leader: task("group_leader")?,
        task_signal: task("signal")?,
        task_mm: task("mm")?,
        task_exit_code: task("exit_code")?,
        signal_live: signal("live")?,
        signal_flags: signal("flags")?,
        signal_group_exit_code: signal("group_exit_code")?,
        mm_arg_start: mm("arg_start")?,
        mm_arg_end: mm("arg_end")?,
        binprm_filename: btf.member_offset("linux_binprm", "filename")?,
        siginfo_code: btf.member_offset("kernel_siginfo", "si_code")?,
        // The raw tracepoint gained the argument together with the record's field.
        exit_group_dead_arg: u32::from(exit.optional("group_dead").is_some()),
        tp_sys_exit_ret: sys_exit.offset("ret")?,
        regs_arg0: arg0,
        regs_arg1: arg1,
        regs_arg2: arg2,
        regs_arg3: arg3,
        task_files: task("files")?,
        files_fdt: btf.member_offset("files_struct", "fdt")?,
        fdt_max_fds: btf.member_offset("fdtable", "max_fds")?,
        fdt_fd: btf.member_offset("fdtable", "fd")?,
        file_inode: file("f_inode")?,
        file_path_mnt: file("f_path")? + path("mnt")?,
        file_path_dentry: file("f_path")? + path("dentry")?,
        inode_mode: inode("i_mode")?,
        inode_uid: inode("i_uid")?,
        inode_gid: inode("i_gid")?,
        vfsmount_flags: btf.member_offset("vfsmount", "mnt_flags")?,
        vfsmount_sb: btf.member_offset("vfsmount", "mnt_sb")?,
        sb_iflags: btf.member_offset("super_block", "s_iflags")?,
        dentry_name: btf.member_offset("dentry", "d_name")? + btf.member_offset("qstr", "name")?,
        mnt_noexec: MNT_NOEXEC,
        sb_i_noexec: SB_I_NOEXEC,
        tp_cgroup_root: mkdir.offset("root")?,
        tp_cgroup_level: mkdir.offset("level")?,
        tp_cgroup_id: mkdir.offset("id")?,
        tp_cgroup_path: mkdir.offset("path")?,
        tp_attach_root: attach.offset("dst_root")?,
        tp_attach_level: attach.offset("dst_level")?,
        tp_attach_id: attach.offset("dst_id")?,
        tp_attach_pid: attach.offset("pid")?,
        tp_attach_path: attach.offset("dst_path")?,
        tp_oom_pid: oom.offset("pid")?,
        wake_bytes: 0,
        // Renamed in Linux 5.5; both are CLOCK_BOOTTIME, set at fork.
        task_start_boottime: task("start_boottime").or_else(|_| task("real_start_time"))?,
        pad: 0,
    })
}

/// Where a syscall's first four arguments are in `struct pt_regs`, the task's saved user
/// registers, when the syscall exit tracepoint runs (they are as the task entered the
/// syscall: the argument registers are not written on the way).
#[cfg(target_arch = "x86_64")]
fn syscall_arg_regs(btf: &Btf) -> Result<[u32; 4], ProbeError> {
    let r = |m| btf.member_offset("pt_regs", m);
    Ok([r("di")?, r("si")?, r("dx")?, r("r10")?])
}

#[cfg(target_arch = "aarch64")]
fn syscall_arg_regs(btf: &Btf) -> Result<[u32; 4], ProbeError> {
    // x0 holds the return value by then; orig_x0 keeps the first argument. xN is regs[N].
    let regs = btf.member_offset("pt_regs", "regs")?;
    Ok([
        btf.member_offset("pt_regs", "orig_x0")?,
        regs + 8,
        regs + 16,
        regs + 24,
    ])
}

const CAP_SYS_ADMIN: u32 = 21;
const CAP_PERFMON: u32 = 38;
const CAP_BPF: u32 = 39;

/// Fails early, with the capabilities named, when the process cannot load programs.
fn check_privileges() -> Result<(), ProbeError> {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let eff = effective_caps(&status);
    match missing_caps(eff) {
        None => Ok(()),
        Some(missing) => Err(ProbeError::NotPermitted { missing }),
    }
}

/// CapEff from /proc/self/status (0 when absent).
fn effective_caps(status: &str) -> u64 {
    status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
        .unwrap_or(0)
}

/// Which of the needed capabilities a CapEff mask lacks (CAP_SYS_ADMIN covers both).
fn missing_caps(eff: u64) -> Option<String> {
    let has = |cap: u32| eff & (1 << cap) != 0;
    if has(CAP_SYS_ADMIN) || (has(CAP_BPF) && has(CAP_PERFMON)) {
        return None;
    }
    let missing: Vec<&str> = [(CAP_BPF, "CAP_BPF"), (CAP_PERFMON, "CAP_PERFMON")]
        .into_iter()
        .filter(|(cap, _)| !has(*cap))
        .map(|(_, name)| name)
        .collect();
    Some(missing.join(", "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn privileges_from_capeff() {
        assert_eq!(
            effective_caps("Name:\tx\nCapEff:\t000001ffffffffff\n"),
            0x1ff_ffff_ffff
        );
        assert_eq!(effective_caps("CapEff:\t0000000000000000\n"), 0);
        assert_eq!(missing_caps(0x1ff_ffff_ffff), None);
        assert_eq!(missing_caps(1 << CAP_SYS_ADMIN), None);
        assert_eq!(missing_caps((1 << CAP_BPF) | (1 << CAP_PERFMON)), None);
        assert_eq!(missing_caps(0).as_deref(), Some("CAP_BPF, CAP_PERFMON"));
        assert_eq!(missing_caps(1 << CAP_BPF).as_deref(), Some("CAP_PERFMON"));
    }
}
