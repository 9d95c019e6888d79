//! Records shared by tracer's kernel programs (`tracer-ebpf`) and its userspace (`tracer`).
//!
//! Every record the kernel writes to the ring buffer starts with a [`Header`], followed by
//! the kind's fixed part and then, for kinds that carry strings, the strings back to back
//! with their lengths in the fixed part (no NUL terminators, no padding). The layouts are
//! `#[repr(C)]` with fixed-width fields in the CPU's byte order and no implicit padding; the
//! layout tables below pin every field's offset and every size at compile time, so the two
//! sides cannot drift, and make the structs [`Plain`]: userspace reads and writes records
//! as the bytes of these structs, with no offsets of its own.
#![no_std]

use core::mem::offset_of;

/// Length of a task's `comm`, as the kernel defines `TASK_COMM_LEN`.
pub const COMM_LEN: usize = 16;
/// Longest exec filename a record carries (bytes); longer ones are truncated and flagged.
pub const MAX_FILENAME: usize = 512;
/// Longest argument block (NUL-separated argv) an exec record carries (bytes).
pub const MAX_ARGV: usize = 512;
/// Longest cgroup path a record carries (bytes).
pub const MAX_CGROUP_PATH: usize = 512;
/// Longest path argument, and longest file name, an access-check record carries (bytes).
pub const MAX_ACCESS_NAME: usize = 256;
/// Size of the per-CPU scratch buffer a record is assembled in before it is output.
/// It holds the header, the largest fixed part and both strings.
pub const SCRATCH_SIZE: usize = 2048;

/// The kind of a record, the first field of every [`Header`].
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RecordKind {
    /// A successful exec (`sched_process_exec`): [`ExecFixed`], filename, argv.
    Exec = 1,
    /// A failed execve/execveat: [`ExecFixed`] with `ret` < 0, filename.
    ExecFailed = 2,
    /// A process (thread group) ended: [`ExitFixed`], then [`ExitStart`] (records
    /// written before it existed end after the fixed part).
    Exit = 3,
    /// A new process (not a thread) was forked: [`ForkFixed`].
    Fork = 4,
    /// A cgroup2 directory was created: [`CgroupFixed`], path.
    CgroupMkdir = 5,
    /// A cgroup2 directory was removed: [`CgroupFixed`], path.
    CgroupRmdir = 6,
    /// A task was attached to a cgroup2 cgroup: [`CgroupFixed`], path.
    CgroupAttach = 7,
    /// A terminating signal was sent to another process: [`SignalFixed`]; the header is
    /// the sender.
    Signal = 8,
    /// The OOM killer chose a victim: [`OomFixed`]; the header is the task it ran in.
    OomKill = 9,
    /// An executable-access check (access, faccessat, faccessat2 with X_OK) failed in a
    /// process a service manager spawned: [`AccessFixed`], the path argument, the name of
    /// the file the check went through (when it went through a descriptor).
    AccessFailed = 10,
}

impl RecordKind {
    /// The kind for a raw header value, if it is one this version knows.
    pub const fn from_u32(v: u32) -> Option<Self> {
        Some(match v {
            1 => Self::Exec,
            2 => Self::ExecFailed,
            3 => Self::Exit,
            4 => Self::Fork,
            5 => Self::CgroupMkdir,
            6 => Self::CgroupRmdir,
            7 => Self::CgroupAttach,
            8 => Self::Signal,
            9 => Self::OomKill,
            10 => Self::AccessFailed,
            _ => return None,
        })
    }
}

/// Set in [`Header::flags`] when the filename or path was longer than the record can carry.
pub const FLAG_PATH_TRUNCATED: u32 = 1 << 0;
/// Set in [`Header::flags`] when the argument block was longer than [`MAX_ARGV`].
pub const FLAG_ARGV_TRUNCATED: u32 = 1 << 1;

/// The start of every record.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Header {
    /// A [`RecordKind`] value.
    pub kind: u32,
    /// `FLAG_*` bits.
    pub flags: u32,
    /// `bpf_ktime_get_boot_ns()`: CLOCK_BOOTTIME in nanoseconds.
    pub ts_ns: u64,
    /// Thread id of the task the event happened in (the kernel's `pid`).
    pub pid: u32,
    /// Process id (thread group id).
    pub tgid: u32,
    /// cgroup2 id (inode number of the cgroup directory) of the task.
    pub cgroup_id: u64,
    /// The task's `comm`, NUL-padded.
    pub comm: [u8; COMM_LEN],
}

/// Fixed part of [`RecordKind::Exec`] and [`RecordKind::ExecFailed`].
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ExecFixed {
    /// Parent's process id (`real_parent->tgid`).
    pub ppid: u32,
    /// Real uid of the task.
    pub uid: u32,
    /// 0 for a successful exec, the syscall's negative errno for a failed one.
    pub ret: i32,
    /// Bytes of filename that follow the fixed part.
    pub filename_len: u16,
    /// Bytes of NUL-separated arguments that follow the filename.
    pub argv_len: u16,
}

/// Fixed part of [`RecordKind::Exit`].
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ExitFixed {
    /// Parent's process id at exit.
    pub ppid: u32,
    /// The wait status the parent's waitpid() sees: signal in the low 7 bits, 0x80 core
    /// dumped, exit code in bits 8..16.
    pub status: u32,
}

/// What follows [`ExitFixed`] in an exit record: when the process began. A record without
/// it (from a tracer before it was added) is still a whole exit record.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ExitStart {
    /// CLOCK_BOOTTIME ns at which the process was created (the group leader's
    /// `task_struct::start_boottime`, set at fork), the header's clock: the header's
    /// time minus this is the process's age.
    pub start_ns: u64,
}

/// Fixed part of [`RecordKind::Fork`]; the header describes the parent.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ForkFixed {
    /// Process id of the new process.
    pub child_pid: u32,
    /// Reserved, zero.
    pub reserved: u32,
}

/// Fixed part of the cgroup records.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CgroupFixed {
    /// cgroup2 id of the cgroup created, removed or attached to.
    pub id: u64,
    /// For attach: the process id of the task moved; 0 otherwise.
    pub target_pid: u32,
    /// Depth of the cgroup below the root (the root is 0).
    pub level: u16,
    /// Bytes of path (relative to the cgroup2 mount, starting with `/`) that follow.
    pub path_len: u16,
}

/// Fixed part of [`RecordKind::Signal`].
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SignalFixed {
    /// The task the signal was sent to (a thread id, the process id for a process signal).
    pub target_pid: u32,
    pub sig: u32,
    /// `si_code`: SI_USER (0) for kill(), SI_KERNEL (0x80) from the kernel, ...
    pub code: i32,
    /// The tracepoint's result: 0 delivered, 1 ignored, 2 already pending, ...
    pub result: i32,
}

/// Fixed part of [`RecordKind::OomKill`].
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct OomFixed {
    /// Process id of the victim.
    pub victim_pid: u32,
    /// Reserved, zero.
    pub reserved: u32,
}

/// [`AccessFixed::syscall`] values.
pub const ACCESS_SYSCALL_ACCESS: u16 = 0;
pub const ACCESS_SYSCALL_FACCESSAT: u16 = 1;
pub const ACCESS_SYSCALL_FACCESSAT2: u16 = 2;

/// Set in [`AccessFixed::file_flags`] when the file's inode was read (the check went
/// through a descriptor the kernel could follow): `file_mode`, `file_uid`, `file_gid`
/// and the name are what the kernel held at that moment.
pub const ACCESS_FILE_SEEN: u16 = 1 << 0;
/// Set in [`AccessFixed::file_flags`] when the file's mount is noexec (`MNT_NOEXEC`, or a
/// filesystem that is never executable from, `SB_I_NOEXEC`).
pub const ACCESS_FILE_NOEXEC: u16 = 1 << 1;

/// Fixed part of [`RecordKind::AccessFailed`].
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AccessFixed {
    /// Parent's process id (the service manager).
    pub ppid: u32,
    /// Real uid and gid of the task: what access() checks against.
    pub uid: u32,
    pub gid: u32,
    /// The syscall's negative errno.
    pub ret: i32,
    /// The descriptor the check went through: faccessat's dirfd with AT_EMPTY_PATH and an
    /// empty path, or N of a `/proc/self/fd/N` path; -1 for any other path.
    pub fd: i32,
    /// The syscall's mode (`X_OK` = 1, ...) and flags (faccessat2; 0 otherwise) arguments.
    pub mode: u32,
    pub flags: u32,
    /// The file's `i_mode` (type and permission bits), owner and group, when
    /// [`ACCESS_FILE_SEEN`].
    pub file_mode: u32,
    pub file_uid: u32,
    pub file_gid: u32,
    /// `ACCESS_SYSCALL_*`.
    pub syscall: u16,
    /// `ACCESS_FILE_*` bits.
    pub file_flags: u16,
    /// Bytes of the path argument, then of the file's name, that follow.
    pub path_len: u16,
    pub name_len: u16,
}

/// Signals reported by [`RecordKind::Signal`] (bit n = signal n): those that end a
/// process when sent to it by another — HUP, INT, QUIT, ABRT, KILL, SEGV, TERM.
pub const REPORTED_SIGNALS: u64 =
    (1 << 1) | (1 << 2) | (1 << 3) | (1 << 6) | (1 << 9) | (1 << 11) | (1 << 15);

pub const HEADER_SIZE: usize = size_of::<Header>();
pub const EXEC_FIXED_SIZE: usize = size_of::<ExecFixed>();
pub const EXIT_FIXED_SIZE: usize = size_of::<ExitFixed>();
pub const EXIT_START_SIZE: usize = size_of::<ExitStart>();
pub const FORK_FIXED_SIZE: usize = size_of::<ForkFixed>();
pub const CGROUP_FIXED_SIZE: usize = size_of::<CgroupFixed>();
pub const SIGNAL_FIXED_SIZE: usize = size_of::<SignalFixed>();
pub const OOM_FIXED_SIZE: usize = size_of::<OomFixed>();
pub const ACCESS_FIXED_SIZE: usize = size_of::<AccessFixed>();

/// A record struct that is nothing but its bytes: `#[repr(C)]`, every field an integer or
/// an array of bytes, no padding. Any `size_of::<Self>()` bytes are a value of it, and all
/// of a value's bytes are initialized, so a record is read from and written as bytes.
///
/// # Safety
///
/// Implemented only by `layout!` below, next to the compile-time proof of those three
/// properties for the struct; implement it nowhere else.
pub unsafe trait Plain: Copy + 'static {
    /// The value in the first `size_of::<Self>()` bytes of `bytes`; `None` when there are
    /// fewer.
    #[inline]
    fn read_from(bytes: &[u8]) -> Option<Self> {
        if bytes.len() < size_of::<Self>() {
            return None;
        }
        // SAFETY: the check above makes `size_of::<Self>()` bytes from the start of `bytes`
        // readable; `read_unaligned` needs no alignment; and every bit pattern of that size
        // is a value of `Self` (the trait's contract: integer fields, no padding).
        Some(unsafe { core::ptr::read_unaligned(bytes.as_ptr().cast::<Self>()) })
    }

    /// The value's bytes, as the kernel writes them to the ring buffer.
    #[inline]
    fn as_bytes(&self) -> &[u8] {
        // SAFETY: `self` is `size_of::<Self>()` readable bytes for the borrow's lifetime,
        // all of them initialized because `Self` has no padding (the trait's contract), and
        // `u8` has no alignment requirement.
        unsafe {
            core::slice::from_raw_parts(core::ptr::from_ref(self).cast::<u8>(), size_of::<Self>())
        }
    }
}

/// The field types a [`Plain`] struct may have: those for which every bit pattern is a
/// value and that have no padding of their own.
trait Field {}
impl Field for u8 {}
impl Field for u16 {}
impl Field for u32 {}
impl Field for i32 {}
impl Field for u64 {}
impl<const N: usize> Field for [u8; N] {}

/// The size of a field type, which must be a [`Field`].
const fn field_size<F: Field>() -> usize {
    size_of::<F>()
}

/// Pins the layout of a record struct, `field @ offset: type` for every field in order, and
/// makes it [`Plain`]. Each line fails to compile when the struct disagrees: its size, a
/// field's offset (two fields swapped, one inserted), a field's type; and the fields'
/// sizes must add up to the struct's, so that no field is left out and there is no padding.
macro_rules! layout {
    ($t:ident: $size:literal { $($field:ident @ $off:literal: $ty:ty),+ $(,)? }) => {
        const _: () = {
            assert!(size_of::<$t>() == $size);
            $(assert!(offset_of!($t, $field) == $off);)+
            $(let _: fn(&$t) -> &$ty = |s| &s.$field;)+
            assert!(0 $(+ field_size::<$ty>())+ == size_of::<$t>(), "padding or a field left out");
        };
        // SAFETY: the assertions above prove what `Plain` requires: the fields of `$t` have
        // exactly the listed types, all of them `Field`s, and their sizes add up to the
        // struct's, so no byte of it is padding. (`#[repr(C)]` on the definition, and the
        // pinned offsets, make that the same layout in the kernel build.)
        unsafe impl Plain for $t {}
    };
}

layout!(Header: 48 {
    kind @ 0: u32,
    flags @ 4: u32,
    ts_ns @ 8: u64,
    pid @ 16: u32,
    tgid @ 20: u32,
    cgroup_id @ 24: u64,
    comm @ 32: [u8; COMM_LEN],
});

layout!(ExecFixed: 16 {
    ppid @ 0: u32,
    uid @ 4: u32,
    ret @ 8: i32,
    filename_len @ 12: u16,
    argv_len @ 14: u16,
});

layout!(ExitFixed: 8 {
    ppid @ 0: u32,
    status @ 4: u32,
});

layout!(ExitStart: 8 {
    start_ns @ 0: u64,
});

layout!(ForkFixed: 8 {
    child_pid @ 0: u32,
    reserved @ 4: u32,
});

layout!(CgroupFixed: 16 {
    id @ 0: u64,
    target_pid @ 8: u32,
    level @ 12: u16,
    path_len @ 14: u16,
});

layout!(SignalFixed: 16 {
    target_pid @ 0: u32,
    sig @ 4: u32,
    code @ 8: i32,
    result @ 12: i32,
});

layout!(OomFixed: 8 {
    victim_pid @ 0: u32,
    reserved @ 4: u32,
});

layout!(AccessFixed: 48 {
    ppid @ 0: u32,
    uid @ 4: u32,
    gid @ 8: u32,
    ret @ 12: i32,
    fd @ 16: i32,
    mode @ 20: u32,
    flags @ 24: u32,
    file_mode @ 28: u32,
    file_uid @ 32: u32,
    file_gid @ 36: u32,
    syscall @ 40: u16,
    file_flags @ 42: u16,
    path_len @ 44: u16,
    name_len @ 46: u16,
});

const _: () = assert!(HEADER_SIZE + ACCESS_FIXED_SIZE + 2 * MAX_ACCESS_NAME <= SCRATCH_SIZE);
const _: () = assert!(MAX_ACCESS_NAME.is_power_of_two());
const _: () = assert!(HEADER_SIZE + EXEC_FIXED_SIZE + MAX_FILENAME + MAX_ARGV <= SCRATCH_SIZE);
const _: () = assert!(HEADER_SIZE + CGROUP_FIXED_SIZE + MAX_CGROUP_PATH <= SCRATCH_SIZE);
const _: () = assert!(MAX_FILENAME.is_power_of_two() && MAX_ARGV.is_power_of_two());
const _: () = assert!(MAX_FILENAME < u16::MAX as usize);
const _: () = assert!(MAX_CGROUP_PATH < u16::MAX as usize);

/// Index of the drop counter in the per-CPU `STATS` array: ring-buffer reserves that failed.
pub const STAT_DROPS: u32 = 0;
/// Index of the counter of records lost because a kernel read failed.
pub const STAT_ERRORS: u32 = 1;
/// Number of per-CPU counters.
pub const STAT_COUNT: u32 = 2;

/// Slots of the `DAEMON` array (u64 values), which userspace writes while the programs
/// run, and which outlives a daemon when the programs are pinned: the process whose own
/// events are dropped in the kernel (the daemon's tgid; 0: none) is the only one the
/// programs read.
pub const DAEMON_IGNORE_TGID: u32 = 0;
/// The version stamp of the programs and their record format (userspace only).
pub const DAEMON_STAMP: u32 = 1;
/// The settings the programs were loaded with: ring size, which programs (userspace only).
pub const DAEMON_SETTINGS: u32 = 2;
/// When a daemon last read the ring buffer, boot-time ns (userspace only).
pub const DAEMON_LAST_READ: u32 = 3;
/// Number of slots of `DAEMON`.
pub const DAEMON_SLOTS: u32 = 4;

/// Byte offsets the kernel programs need, read by userspace at start from the running
/// kernel's BTF (`/sys/kernel/btf/vmlinux`) and tracefs format files, and written into the
/// program's `CONFIG` global before load. Nothing here is hard-coded for one kernel.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Config {
    /// `SIGNAL_GROUP_EXIT` bit of `signal_struct::flags`.
    pub signal_group_exit: u32,

    // struct task_struct
    pub task_pid: u32,
    pub task_tgid: u32,
    pub task_real_parent: u32,
    pub task_group_leader: u32,
    pub task_signal: u32,
    pub task_mm: u32,
    pub task_exit_code: u32,
    // struct signal_struct
    pub signal_live: u32,
    pub signal_flags: u32,
    pub signal_group_exit_code: u32,
    // struct mm_struct
    pub mm_arg_start: u32,
    pub mm_arg_end: u32,
    /// `struct linux_binprm::filename`.
    pub binprm_filename: u32,
    /// `struct kernel_siginfo::si_code`.
    pub siginfo_code: u32,
    /// 1 where the sched_process_exit raw tracepoint passes `bool group_dead` after the
    /// task (kernels whose tracepoint record has the field), 0 where it does not (then
    /// `signal->live == 0` decides).
    pub exit_group_dead_arg: u32,

    // tracepoint record fields (from events/*/*/format)
    /// syscalls/sys_exit_execve(at): `ret`.
    pub tp_sys_exit_ret: u32,
    /// Where a syscall's first four arguments are in `struct pt_regs`, the task's saved
    /// user registers (x86-64: `di`, `si`, `dx`, `r10`): execve's filename is the first,
    /// execveat's the second.
    pub regs_arg0: u32,
    pub regs_arg1: u32,
    pub regs_arg2: u32,
    pub regs_arg3: u32,

    // What an access check went through: task->files->fdt->fd[n] → struct file → its
    // inode's mode, uid and gid, its mount's flags and superblock, its dentry's name.
    pub task_files: u32,
    pub files_fdt: u32,
    pub fdt_max_fds: u32,
    pub fdt_fd: u32,
    pub file_inode: u32,
    /// `file.f_path.mnt` and `file.f_path.dentry`.
    pub file_path_mnt: u32,
    pub file_path_dentry: u32,
    pub inode_mode: u32,
    pub inode_uid: u32,
    pub inode_gid: u32,
    pub vfsmount_flags: u32,
    pub vfsmount_sb: u32,
    pub sb_iflags: u32,
    /// `dentry.d_name.name`.
    pub dentry_name: u32,
    /// `MNT_NOEXEC` and `SB_I_NOEXEC` (#defines, not in BTF).
    pub mnt_noexec: u32,
    pub sb_i_noexec: u32,
    /// cgroup/cgroup_mkdir and cgroup_rmdir: `root`, `level`, `id`, `__data_loc path`.
    pub tp_cgroup_root: u32,
    pub tp_cgroup_level: u32,
    pub tp_cgroup_id: u32,
    pub tp_cgroup_path: u32,
    /// cgroup/cgroup_attach_task: `dst_root`, `dst_level`, `dst_id`, `pid`, `__data_loc dst_path`.
    pub tp_attach_root: u32,
    pub tp_attach_level: u32,
    pub tp_attach_id: u32,
    pub tp_attach_pid: u32,
    pub tp_attach_path: u32,
    /// oom/mark_victim: `pid`.
    pub tp_oom_pid: u32,
    /// Bytes waiting in the ring buffer past which a record wakes the reader even while
    /// it reads on its timer (a quarter of the ring).
    pub wake_bytes: u32,
    /// `task_struct::start_boottime` (`real_start_time` before Linux 5.5): when the task
    /// was created, on CLOCK_BOOTTIME.
    pub task_start_boottime: u32,
    /// Unused: keeps the size a multiple of 8.
    pub pad: u32,
}

const _: () = assert!(size_of::<Config>().is_multiple_of(8));

#[cfg(feature = "user")]
mod user {
    // SAFETY: plain #[repr(C)] structs of integers with no padding (sizes asserted above).
    unsafe impl aya::Pod for super::Config {}
}
