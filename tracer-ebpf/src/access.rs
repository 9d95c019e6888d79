//! Failed executable-access checks in the children of a service manager. Before any
//! execve, systemd opens a unit's command and checks it: `access("/proc/self/fd/N",
//! X_OK)` up to systemd 254, `faccessat2(N, "", X_OK, AT_EMPTY_PATH)` from 255. When the
//! check fails the child exits 203/EXEC and no execve ever reaches the kernel: this is the
//! only place the kernel's own answer (the errno) and the file as the kernel held it at
//! that moment (mode, owner, group, name, a noexec mount) can be seen.
//!
//! From the access syscalls' exit tracepoints. The failed-exec ones already put every
//! syscall on the slow path; these add a program run to the access syscalls alone, which
//! returns at once unless the check failed, asked for X_OK, and the caller's parent is a
//! service manager (`MANAGERS`, kept by userspace: pid 1 and the user managers).

use aya_ebpf::{
    helpers::{
        bpf_get_current_pid_tgid, bpf_get_current_task, bpf_get_current_uid_gid,
        bpf_probe_read_user_str_bytes,
        generated::{bpf_get_current_task_btf, bpf_probe_read_kernel_str, bpf_task_pt_regs},
    },
    macros::{map, tracepoint},
    maps::HashMap,
    programs::TracePointContext,
};
use tracer_common::{
    ACCESS_FILE_NOEXEC, ACCESS_FILE_SEEN, ACCESS_FIXED_SIZE, ACCESS_SYSCALL_ACCESS,
    ACCESS_SYSCALL_FACCESSAT, ACCESS_SYSCALL_FACCESSAT2, AccessFixed, FLAG_PATH_TRUNCATED,
    HEADER_SIZE, MAX_ACCESS_NAME, RecordKind,
};

use crate::common::{
    cfg, count_error, header, ignored, parent_tgid, put, put_header, read_field, scratch, submit,
};

/// Process ids of the service managers whose children's checks are recorded.
#[map]
pub static MANAGERS: HashMap<u32, u8> = HashMap::with_max_entries(256, 0);

/// Where the strings start in an access record.
const BODY: usize = HEADER_SIZE + ACCESS_FIXED_SIZE;

const X_OK: u64 = 1;
const AT_EMPTY_PATH: u64 = 0x1000;
const PROC_SELF_FD: &[u8; 14] = b"/proc/self/fd/";

#[tracepoint]
pub fn access_fail(ctx: TracePointContext) -> u32 {
    if try_access(&ctx, ACCESS_SYSCALL_ACCESS).is_err() {
        count_error();
    }
    0
}

#[tracepoint]
pub fn faccessat_fail(ctx: TracePointContext) -> u32 {
    if try_access(&ctx, ACCESS_SYSCALL_FACCESSAT).is_err() {
        count_error();
    }
    0
}

#[tracepoint]
pub fn faccessat2_fail(ctx: TracePointContext) -> u32 {
    if try_access(&ctx, ACCESS_SYSCALL_FACCESSAT2).is_err() {
        count_error();
    }
    0
}

/// What the kernel holds for the file behind a descriptor.
#[derive(Default)]
struct Seen {
    mode: u32,
    uid: u32,
    gid: u32,
    noexec: bool,
    /// The dentry's name (`struct qstr.name`).
    name: usize,
}

fn try_access(ctx: &TracePointContext, syscall: u16) -> Result<(), i32> {
    let c = cfg();
    // SAFETY: as in exec's `try_exec_failed`: a read through bpf_probe_read_kernel at the
    // offset from the tracepoint's format file; an `i64` is valid for any bytes.
    let ret: i64 = unsafe { ctx.read_at(c.tp_sys_exit_ret as usize) }?;
    if ret >= 0 {
        return Ok(());
    }
    let pid_tgid = bpf_get_current_pid_tgid();
    if ignored((pid_tgid >> 32) as u32) {
        return Ok(());
    }
    // SAFETY: a helper without arguments; the address is only read through `read_field`.
    let task = unsafe { bpf_get_current_task() } as *const u8;
    let ppid = parent_tgid(task);
    // SAFETY: the value is a `u8` only tested for presence, and no program removes
    // entries (userspace does, which at worst makes this a stale read of one byte).
    if unsafe { MANAGERS.get(ppid) }.is_none() {
        return Ok(());
    }
    // SAFETY: as in exec's `try_exec_failed`: the current task as the trusted BTF pointer
    // bpf_task_pt_regs requires; the registers' address is only read through `read_field`.
    let regs = unsafe { bpf_task_pt_regs(bpf_get_current_task_btf()) } as *const u8;
    // SAFETY: `u64`s are valid for any bytes; `read_field` takes any address.
    let arg = |off: u32| unsafe { read_field::<u64>(regs, off) };
    // access(path, mode), faccessat(dirfd, path, mode), faccessat2(dirfd, path, mode, flags)
    let (dirfd, path, mode, flags) = match syscall {
        ACCESS_SYSCALL_ACCESS => (u64::MAX, arg(c.regs_arg0)?, arg(c.regs_arg1)?, 0),
        ACCESS_SYSCALL_FACCESSAT => (arg(c.regs_arg0)?, arg(c.regs_arg1)?, arg(c.regs_arg2)?, 0),
        _ => (
            arg(c.regs_arg0)?,
            arg(c.regs_arg1)?,
            arg(c.regs_arg2)?,
            arg(c.regs_arg3)?,
        ),
    };
    if mode & X_OK == 0 {
        return Ok(());
    }
    let buf = scratch().ok_or(-1)?;
    let mut hdr = header(RecordKind::AccessFailed, pid_tgid);
    // SAFETY: the destination is a `&mut` slice of the scratch buffer, which the helper
    // writes at most the length of; the source is a user address, which may be anything:
    // the helper fails (`Err`) where it is not mapped or not resident, and cannot fault.
    let path_n = match unsafe {
        bpf_probe_read_user_str_bytes(path as *const u8, &mut buf[BODY..BODY + MAX_ACCESS_NAME])
    } {
        Ok(s) => s.len(),
        Err(_) => 0,
    };
    if path_n >= MAX_ACCESS_NAME - 1 {
        hdr.flags |= FLAG_PATH_TRUNCATED;
    }
    let fd = if path_n == 0 && flags & AT_EMPTY_PATH != 0 {
        dirfd as i32
    } else {
        proc_self_fd(buf, path_n)
    };
    let seen = if fd >= 0 {
        file_of(task, fd as u32)
    } else {
        None
    };

    // The name goes right after the path; the mask only tells the verifier what the
    // helper's result already guarantees (path_n < MAX_ACCESS_NAME).
    let name_at = BODY + (path_n & (MAX_ACCESS_NAME - 1));
    let mut name_n = 0;
    if let Some(s) = &seen
        && s.name != 0
    {
        // SAFETY: the destination is inside the scratch buffer: name_at + MAX_ACCESS_NAME
        // <= BODY + 2 * MAX_ACCESS_NAME <= SCRATCH_SIZE (asserted in tracer-common), and
        // the helper writes at most MAX_ACCESS_NAME bytes; the source may be any kernel
        // address: the helper fails (< 0) where a read would fault.
        let n = unsafe {
            bpf_probe_read_kernel_str(
                buf.as_mut_ptr().add(name_at).cast(),
                MAX_ACCESS_NAME as u32,
                s.name as *const _,
            )
        };
        // The helper counts the NUL it writes.
        if n > 1 {
            name_n = (n - 1) as usize;
        }
    }
    let uid_gid = bpf_get_current_uid_gid();
    let (file_mode, file_uid, file_gid, file_flags) = match &seen {
        Some(s) => (
            s.mode,
            s.uid,
            s.gid,
            ACCESS_FILE_SEEN | if s.noexec { ACCESS_FILE_NOEXEC } else { 0 },
        ),
        None => (0, 0, 0, 0),
    };
    put(
        buf,
        HEADER_SIZE,
        AccessFixed {
            ppid,
            uid: uid_gid as u32,
            gid: (uid_gid >> 32) as u32,
            ret: ret as i32,
            fd,
            mode: mode as u32,
            flags: flags as u32,
            file_mode,
            file_uid,
            file_gid,
            syscall,
            file_flags,
            path_len: path_n as u16,
            name_len: name_n as u16,
        },
    );
    put_header(buf, hdr);
    submit(buf, name_at + name_n);
    Ok(())
}

/// N of a path `/proc/self/fd/N` in the scratch buffer's path (`len` bytes at BODY);
/// -1 for any other path.
#[inline(always)]
fn proc_self_fd(buf: &[u8; tracer_common::SCRATCH_SIZE], len: usize) -> i32 {
    let p = PROC_SELF_FD.len();
    if len <= p || len > p + 7 {
        return -1;
    }
    for (i, &b) in PROC_SELF_FD.iter().enumerate() {
        if buf[BODY + i] != b {
            return -1;
        }
    }
    let mut fd: i32 = 0;
    for i in 0..7 {
        if p + i >= len {
            break;
        }
        let d = buf[BODY + p + i];
        if !d.is_ascii_digit() {
            return -1;
        }
        fd = fd * 10 + i32::from(d - b'0');
    }
    fd
}

/// The file at descriptor `fd` of `task`, as the kernel holds it now.
#[inline(always)]
fn file_of(task: *const u8, fd: u32) -> Option<Seen> {
    let c = cfg();
    // SAFETY: every read below goes through `read_field`, which takes any address (a
    // stale or wrong pointer gives a wrong or failed read, never a fault), of raw
    // pointers and integers, which are valid for any bytes. The descriptor table is read
    // without its RCU lock: the task is current and in a syscall, so its table stays.
    unsafe {
        let files: *const u8 = read_field(task, c.task_files).ok()?;
        let fdt: *const u8 = read_field(files, c.files_fdt).ok()?;
        let max: u32 = read_field(fdt, c.fdt_max_fds).ok()?;
        if fd >= max {
            return None;
        }
        let fds: *const u8 = read_field(fdt, c.fdt_fd).ok()?;
        let file: *const u8 = read_field(fds, fd.wrapping_mul(8)).ok()?;
        if file.is_null() {
            return None;
        }
        let inode: *const u8 = read_field(file, c.file_inode).ok()?;
        let mode: u16 = read_field(inode, c.inode_mode).ok()?;
        let uid: u32 = read_field(inode, c.inode_uid).ok()?;
        let gid: u32 = read_field(inode, c.inode_gid).ok()?;
        let mnt: *const u8 = read_field(file, c.file_path_mnt).ok()?;
        let mnt_flags: u32 = read_field(mnt, c.vfsmount_flags).unwrap_or(0);
        let sb: *const u8 = read_field(mnt, c.vfsmount_sb).unwrap_or(core::ptr::null());
        let sb_iflags: u64 = read_field(sb, c.sb_iflags).unwrap_or(0);
        let dentry: *const u8 = read_field(file, c.file_path_dentry).unwrap_or(core::ptr::null());
        let name: usize = read_field(dentry, c.dentry_name).unwrap_or(0);
        Some(Seen {
            mode: u32::from(mode),
            uid,
            gid,
            noexec: mnt_flags & c.mnt_noexec != 0 || sb_iflags & u64::from(c.sb_i_noexec) != 0,
            name,
        })
    }
}
