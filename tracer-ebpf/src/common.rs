//! Maps, the run-time configuration, and the helpers every program shares.

use core::ffi::c_void;

use aya_ebpf::{
    bindings::{BPF_RB_AVAIL_DATA, BPF_RB_FORCE_WAKEUP, BPF_RB_NO_WAKEUP},
    helpers::{
        bpf_get_current_comm, bpf_probe_read_kernel,
        generated::{
            bpf_get_current_cgroup_id, bpf_ktime_get_boot_ns,
            bpf_probe_read_kernel as raw_read_kernel, bpf_probe_read_user as raw_read_user,
        },
    },
    macros::map,
    maps::{Array, PerCpuArray, RingBuf},
};
use tracer_common::{
    COMM_LEN, Config, HEADER_SIZE, Header, RecordKind, SCRATCH_SIZE, STAT_COUNT, STAT_DROPS,
    STAT_ERRORS,
};

/// Offsets and settings written by userspace before load (see `tracer_common::Config`).
#[unsafe(no_mangle)]
static CONFIG: Config = unsafe { core::mem::zeroed() };

/// Every record goes here. Userspace sets the size at load time.
#[map]
pub static EVENTS: RingBuf = RingBuf::with_byte_size(1 << 22, 0);

/// Whether the reader sleeps until woken (1) or reads on its own timer (0): set by
/// userspace, see [`wakeup`].
#[map]
static READER_ASLEEP: Array<u32> = Array::with_max_entries(1, 0);

/// Per-CPU counters, indexed by `STAT_*`.
#[map]
static STATS: PerCpuArray<u64> = PerCpuArray::with_max_entries(STAT_COUNT, 0);

/// Per-CPU buffer a variable-length record is assembled in (the BPF stack is 512 bytes).
#[map]
static SCRATCH: PerCpuArray<[u8; SCRATCH_SIZE]> = PerCpuArray::with_max_entries(1, 0);

/// The configuration. The volatile read of the address keeps the compiler from folding the
/// (zero) initial values into the code: the real values are only known at load time.
#[inline(always)]
pub fn cfg() -> &'static Config {
    unsafe { &*core::ptr::read_volatile(&&raw const CONFIG) }
}

#[inline(always)]
pub fn count(stat: u32) {
    if let Some(p) = STATS.get_ptr_mut(stat) {
        unsafe { *p += 1 };
    }
}

/// Counts a record that could not be written because the ring buffer was full.
#[inline(always)]
pub fn count_drop() {
    count(STAT_DROPS)
}

/// Counts a record lost because a kernel read failed.
#[inline(always)]
pub fn count_error() {
    count(STAT_ERRORS)
}

/// True when the process is the tracer itself (its own events are dropped here).
#[inline(always)]
pub fn ignored(tgid: u32) -> bool {
    let me = cfg().ignore_tgid;
    me != 0 && me == tgid
}

/// The header for an event in the current task.
#[inline(always)]
pub fn header(kind: RecordKind, pid_tgid: u64) -> Header {
    Header {
        kind: kind as u32,
        flags: 0,
        ts_ns: unsafe { bpf_ktime_get_boot_ns() },
        pid: pid_tgid as u32,
        tgid: (pid_tgid >> 32) as u32,
        cgroup_id: unsafe { bpf_get_current_cgroup_id() },
        comm: bpf_get_current_comm().unwrap_or([0; COMM_LEN]),
    }
}

/// Reads a `T` at `base + off` in kernel memory.
#[inline(always)]
pub unsafe fn read_field<T>(base: *const u8, off: u32) -> Result<T, i32> {
    unsafe { bpf_probe_read_kernel(base.wrapping_add(off as usize) as *const T) }
}

/// `task->real_parent->tgid`.
#[inline(always)]
pub unsafe fn parent_tgid(task: *const u8) -> u32 {
    let c = cfg();
    unsafe {
        match read_field::<*const u8>(task, c.task_real_parent) {
            Ok(parent) => read_field::<u32>(parent, c.task_tgid).unwrap_or(0),
            Err(_) => 0,
        }
    }
}

/// The per-CPU scratch buffer.
#[inline(always)]
pub fn scratch() -> Option<&'static mut [u8; SCRATCH_SIZE]> {
    SCRATCH.get_ptr_mut(0).map(|p| unsafe { &mut *p })
}

/// Writes `value` at byte `off` of the scratch buffer.
#[inline(always)]
pub fn put<T>(buf: &mut [u8; SCRATCH_SIZE], off: usize, value: T) {
    if off + size_of::<T>() <= SCRATCH_SIZE {
        unsafe { (buf.as_mut_ptr().add(off) as *mut T).write_unaligned(value) };
    }
}

/// Writes the header at the start of the scratch buffer.
#[inline(always)]
pub fn put_header(buf: &mut [u8; SCRATCH_SIZE], hdr: Header) {
    put(buf, 0, hdr);
}

const _: () = assert!(HEADER_SIZE < SCRATCH_SIZE);

/// Copies `min(len, MAX)` bytes from kernel memory at `src` to `buf[off..]`; returns the
/// number of bytes copied (0 when the read failed).
#[inline(always)]
pub fn copy_kernel<const MAX: usize>(
    buf: &mut [u8; SCRATCH_SIZE],
    off: usize,
    src: *const u8,
    len: usize,
) -> usize {
    copy::<MAX, false>(buf, off, src, len)
}

/// Like [`copy_kernel`] for user memory.
#[inline(always)]
pub fn copy_user<const MAX: usize>(
    buf: &mut [u8; SCRATCH_SIZE],
    off: usize,
    src: *const u8,
    len: usize,
) -> usize {
    copy::<MAX, true>(buf, off, src, len)
}

#[inline(always)]
fn copy<const MAX: usize, const USER: bool>(
    buf: &mut [u8; SCRATCH_SIZE],
    off: usize,
    src: *const u8,
    len: usize,
) -> usize {
    let n = if len > MAX { MAX } else { len };
    // Both bounds are spelled out for the verifier: the destination stays inside the map value.
    if n == 0 || off > SCRATCH_SIZE - MAX {
        return 0;
    }
    let dst = unsafe { buf.as_mut_ptr().add(off) } as *mut c_void;
    let ret = unsafe {
        if USER {
            raw_read_user(dst, n as u32, src as *const c_void)
        } else {
            raw_read_kernel(dst, n as u32, src as *const c_void)
        }
    };
    if ret < 0 { 0 } else { n }
}

/// Whether a record wakes the reader. While records flow, the reader reads on a timer and
/// is not woken per record (a wake-up is two context switches on the reader's side and an
/// IPI on the writer's); it is woken when it sleeps, or when the ring is a quarter full.
#[inline(always)]
fn wakeup() -> u64 {
    if READER_ASLEEP.get(0).is_some_and(|&v| v != 0)
        || EVENTS.query(BPF_RB_AVAIL_DATA.into()) > u64::from(cfg().wake_bytes)
    {
        BPF_RB_FORCE_WAKEUP.into()
    } else {
        BPF_RB_NO_WAKEUP.into()
    }
}

/// Sends the first `len` bytes of the scratch buffer as one record.
#[inline(always)]
pub fn submit(buf: &[u8; SCRATCH_SIZE], len: usize) {
    if len > SCRATCH_SIZE {
        count_error();
        return;
    }
    if EVENTS.output::<[u8]>(&buf[..len], wakeup()).is_err() {
        count_drop();
    }
}

/// Sends a fixed-size record.
#[inline(always)]
pub fn submit_fixed<T: 'static>(record: T) {
    match EVENTS.reserve::<T>(0) {
        Some(mut entry) => {
            entry.write(record);
            entry.submit(wakeup());
        }
        None => count_drop(),
    }
}
