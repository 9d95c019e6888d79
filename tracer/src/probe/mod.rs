//! Loading the embedded kernel programs, attaching them, and reading their ring buffer.

pub mod btf;
pub mod tracefs;

use std::{
    collections::HashSet,
    io,
    os::fd::AsRawFd,
    time::{Duration, Instant},
};

use aya::{
    Ebpf, EbpfLoader,
    maps::{Array, HashMap as BpfHashMap, MapData, PerCpuArray, RingBuf},
    programs::{ProgramError, RawTracePoint, TracePoint},
};
use tokio::io::{Interest, unix::AsyncFd};
use tracer_common::{Config, STAT_DROPS, STAT_ERRORS};

use self::{btf::Btf, tracefs::TraceFs};
use crate::{
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
}

impl Default for ProbeOptions {
    fn default() -> Self {
        Self {
            ring_size: 4 << 20,
            ignore_self: true,
            batch_delay: Duration::from_millis(10),
            failed_execs: true,
            managers: vec![1],
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
    // Owns the programs and their links: dropping it detaches everything.
    _ebpf: Ebpf,
    ring: AsyncFd<RingBuf<MapData>>,
    stats: PerCpuArray<MapData, u64>,
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
    /// Loads and attaches every program. Must be called inside a tokio runtime.
    pub fn load(opts: &ProbeOptions) -> Result<Self, ProbeError> {
        let started = Instant::now();
        check_privileges()?;
        if opts.ring_size < 4096 || !opts.ring_size.is_power_of_two() {
            return Err(ProbeError::RingSize(opts.ring_size));
        }
        let tracefs = TraceFs::find_or_mount()?;

        let ignore_tgid = if opts.ignore_self {
            std::process::id()
        } else {
            0
        };
        let config = {
            // The kernel's BTF (5 MiB on 6.18) is only read here, and freed before the
            // programs load.
            let vmlinux = std::fs::read(VMLINUX_BTF).map_err(ProbeError::MissingBtf)?;
            Config {
                wake_bytes: opts.ring_size / 4,
                ..kernel_config(&Btf::parse(&vmlinux)?, &tracefs, ignore_tgid)?
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
        let (failed_execs, access_checks) = attach_all(
            &mut ebpf,
            opts.failed_execs,
            &tracefs,
            config.tp_sys_exit_ret,
        )?;
        let (ring, stats, asleep) = take_maps(&mut ebpf)?;
        let managers = ebpf
            .take_map("MANAGERS")
            .ok_or(ProbeError::Missing("MANAGERS map"))?;
        let managers = BpfHashMap::try_from(managers).map_err(|source| ProbeError::Map {
            name: "MANAGERS",
            source,
        })?;
        tracing::info!(
            elapsed_ms = started.elapsed().as_millis() as u64,
            ring_fd = ring.get_ref().as_raw_fd(),
            failed_execs,
            access_checks,
            "programs attached"
        );
        let mut managers = Managers {
            map: managers,
            watched: HashSet::new(),
        };
        for &pid in &opts.managers {
            managers.watch(pid);
        }
        Ok(Self {
            _ebpf: ebpf,
            ring,
            stats,
            asleep,
            sleeping: true,
            malformed: 0,
            batch_delay: opts.batch_delay,
            next_read: None,
            failed_execs,
            access_checks,
            managers: Some(managers),
        })
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
/// failed execs are caught, and whether failed access checks are.
fn attach_all(
    ebpf: &mut Ebpf,
    failed_execs: bool,
    tracefs: &TraceFs,
    sys_exit_ret: u32,
) -> Result<(bool, bool), ProbeError> {
    let mut caught = failed_execs;
    for (program, category, event) in TRACEPOINTS {
        if category != "syscalls" {
            attach_tracepoint(ebpf, program, category, event)
                .map_err(|source| program_error(program, source))?;
        } else if failed_execs && let Err(e) = attach_tracepoint(ebpf, program, category, event) {
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
        if let Err(e) = attach_tracepoint(ebpf, program, "syscalls", event) {
            tracing::warn!(
                "failed access checks are not seen on this kernel: {}",
                program_error(program, e)
            );
            access = false;
        }
    }
    for (program, tracepoint) in RAW_TRACEPOINTS {
        attach_raw_tracepoint(ebpf, program, tracepoint)
            .map_err(|source| program_error(program, source))?;
    }
    Ok((caught, access))
}

/// The ring buffer, the per-CPU counters, the reader-asleep flag.
type ReaderMaps = (
    AsyncFd<RingBuf<MapData>>,
    PerCpuArray<MapData, u64>,
    Array<MapData, u32>,
);

/// The maps the reader uses: the ring buffer (registered with the runtime), the
/// per-CPU counters, and the reader-asleep flag (set: the first read sleeps until a
/// record arrives).
fn take_maps(ebpf: &mut Ebpf) -> Result<ReaderMaps, ProbeError> {
    let ring = ebpf
        .take_map("EVENTS")
        .ok_or(ProbeError::Missing("EVENTS map"))?;
    let ring = RingBuf::try_from(ring).map_err(|source| ProbeError::Map {
        name: "EVENTS",
        source,
    })?;
    // SAFETY: the ring buffer's fd stays open for as long as the AsyncFd owns it.
    let ring = unsafe { AsyncFd::register_with_interest(ring, Interest::READABLE) }
        .map_err(|e| ProbeError::Io(e.into()))?;
    let stats = ebpf
        .take_map("STATS")
        .ok_or(ProbeError::Missing("STATS map"))?;
    let stats = PerCpuArray::try_from(stats).map_err(|source| ProbeError::Map {
        name: "STATS",
        source,
    })?;
    let asleep = ebpf
        .take_map("READER_ASLEEP")
        .ok_or(ProbeError::Missing("READER_ASLEEP map"))?;
    let mut asleep = Array::try_from(asleep).map_err(|source| ProbeError::Map {
        name: "READER_ASLEEP",
        source,
    })?;
    asleep.set(0, 1, 0).map_err(|source| ProbeError::Map {
        name: "READER_ASLEEP",
        source,
    })?;
    Ok((ring, stats, asleep))
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

fn attach_tracepoint(
    ebpf: &mut Ebpf,
    program: &str,
    category: &str,
    event: &str,
) -> Result<(), ProgramError> {
    let tp: &mut TracePoint = ebpf
        .program_mut(program)
        .ok_or(ProgramError::NotLoaded)?
        .try_into()?;
    tp.load()?;
    tp.attach(category, event)?;
    Ok(())
}

fn attach_raw_tracepoint(
    ebpf: &mut Ebpf,
    program: &str,
    tracepoint: &str,
) -> Result<(), ProgramError> {
    let tp: &mut RawTracePoint = ebpf
        .program_mut(program)
        .ok_or(ProgramError::NotLoaded)?
        .try_into()?;
    tp.load()?;
    tp.attach(tracepoint)?;
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
fn kernel_config(btf: &Btf, tracefs: &TraceFs, ignore_tgid: u32) -> Result<Config, ProbeError> {
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
        ignore_tgid,
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
