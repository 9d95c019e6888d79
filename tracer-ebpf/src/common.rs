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
    COMM_LEN, Config, DAEMON_IGNORE_TGID, DAEMON_SLOTS, HEADER_SIZE, Header, RecordKind,
    SCRATCH_SIZE, STAT_COUNT, STAT_DROPS, STAT_ERRORS,
};

/// Offsets and settings written by userspace before load (see `tracer_common::Config`).
// SAFETY: `no_mangle`: userspace finds the global by this exact name to write it before
// load, and no other symbol in the object is called CONFIG. `zeroed`: `Config` is
// `repr(C)` with only `u32` fields, for which all-zero bytes are a valid value (its
// `Default`).
#[unsafe(no_mangle)]
static CONFIG: Config = unsafe { core::mem::zeroed() };

/// Every record goes here. Userspace sets the size at load time.
#[map]
pub static EVENTS: RingBuf = RingBuf::with_byte_size(1 << 22, 0);

/// Whether the reader sleeps until woken (1) or reads on its own timer (0): set by
/// userspace, see [`wakeup`].
#[map]
static READER_ASLEEP: Array<u32> = Array::with_max_entries(1, 0);

/// What the daemon of the moment says, indexed by `DAEMON_*`: a map, not a global, because
/// the programs outlive their daemon when pinned, and the next one has another pid. The
/// programs read only its own tgid; the other slots are userspace's (the version stamp).
#[map]
static DAEMON: Array<u64> = Array::with_max_entries(DAEMON_SLOTS, 0);

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
    // SAFETY: the volatile read is of a local that holds `&raw const CONFIG`, so it is
    // valid and aligned; the pointer it yields is that of a static, valid for 'static. The
    // shared reference is sound because nothing writes CONFIG while a program runs:
    // userspace writes it before load and the kernel then freezes the map behind it
    // (.rodata) read-only, and the programs only read it.
    unsafe { &*core::ptr::read_volatile(&&raw const CONFIG) }
}

#[inline(always)]
pub fn count(stat: u32) {
    if let Some(p) = STATS.get_ptr_mut(stat) {
        // SAFETY: the lookup helper returned a non-null, aligned pointer to this CPU's
        // slot `stat` of STATS (it returns None for an index past the end, and the
        // verifier makes the program check for that), valid while the program runs. Only
        // programs on this CPU touch the slot, one at a time: tracepoint programs run
        // with preemption off. (One nesting from interrupt context could at worst lose a
        // count, never write outside the slot.)
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
    // (An array lookup: the verifier inlines it, no helper call.)
    DAEMON
        .get(DAEMON_IGNORE_TGID)
        .is_some_and(|&me| me != 0 && me == u64::from(tgid))
}

/// The header for an event in the current task.
#[inline(always)]
pub fn header(kind: RecordKind, pid_tgid: u64) -> Header {
    Header {
        kind: kind as u32,
        flags: 0,
        // SAFETY: a helper without arguments that only reads the clock; the binding is
        // `unsafe` as every raw helper binding is.
        ts_ns: unsafe { bpf_ktime_get_boot_ns() },
        pid: pid_tgid as u32,
        tgid: (pid_tgid >> 32) as u32,
        // SAFETY: a helper without arguments that reads the current task's cgroup id;
        // it is available to tracing programs (the verifier refuses the load otherwise).
        cgroup_id: unsafe { bpf_get_current_cgroup_id() },
        comm: bpf_get_current_comm().unwrap_or([0; COMM_LEN]),
    }
}

/// Reads a `T` at `base + off` in kernel memory.
///
/// Any `base` is fine, null and dangling included: the read goes through the
/// `bpf_probe_read_kernel` helper, which checks the address and fails (`Err`, nothing
/// read) where plain access would fault. A wrong offset reads the wrong bytes, which is why
/// the offsets come from the running kernel's BTF.
///
/// # Safety
///
/// Every bit pattern must be a valid `T` (integers, raw pointers): the value is a copy of
/// whatever bytes the kernel holds there.
#[inline(always)]
pub unsafe fn read_field<T>(base: *const u8, off: u32) -> Result<T, i32> {
    // SAFETY: the helper may be given any address (see above); `wrapping_add` computes it
    // without the in-bounds requirement of `add`; the caller guarantees that the bytes read
    // are a valid `T`.
    unsafe { bpf_probe_read_kernel(base.wrapping_add(off as usize) as *const T) }
}

/// `task->real_parent->tgid`; 0 when a read fails. Safe for any `task`: both reads go
/// through [`read_field`], so a wrong pointer gives a wrong or zero answer, never a fault.
#[inline(always)]
pub fn parent_tgid(task: *const u8) -> u32 {
    let c = cfg();
    // SAFETY: `read_field` as its contract asks: a raw pointer and a `u32`, for which
    // every bit pattern is valid.
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
    // SAFETY: the lookup helper returned a non-null, aligned pointer to this CPU's
    // SCRATCH_SIZE-byte value (index 0 of a one-entry map), valid while the program runs
    // (the 'static is a lifetime the program never outlives). The `&mut` is unique: each
    // program calls `scratch` once per run, the programs that do (exec, failed exec, cgroup)
    // fire only in process context and run with preemption off, so on one CPU no two of
    // them hold the buffer at once, and other CPUs have values of their own.
    SCRATCH.get_ptr_mut(0).map(|p| unsafe { &mut *p })
}

/// Writes `value` at byte `off` of the scratch buffer.
#[inline(always)]
pub fn put<T>(buf: &mut [u8; SCRATCH_SIZE], off: usize, value: T) {
    if off + size_of::<T>() <= SCRATCH_SIZE {
        // SAFETY: the check above keeps `off` and the `size_of::<T>()` bytes written from
        // it inside `buf`, which is valid for writes (a `&mut`); `write_unaligned` needs no
        // alignment.
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
    // SAFETY: off <= SCRATCH_SIZE - MAX (checked above), so `dst` is inside `buf`.
    let dst = unsafe { buf.as_mut_ptr().add(off) } as *mut c_void;
    // SAFETY: the destination holds the `n <= MAX` bytes written, since off + MAX <=
    // SCRATCH_SIZE (the verifier checks the same against the map value's size). The source
    // may be any address: the helpers check it, and on a fault fail (ret < 0, handled
    // below) with the destination zeroed.
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
