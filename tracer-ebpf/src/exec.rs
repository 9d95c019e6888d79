//! exec: successful ones from the `sched_process_exec` raw tracepoint (filename from
//! `bprm->filename`, argv from the new image's `mm->arg_start..arg_end`), failed ones
//! from the execve and execveat syscall exit tracepoints: when the return value is an
//! error, the filename pointer is read from the task's saved user registers, and the
//! string from the old address space, still there then. No entry hook and no map: each
//! syscall tracepoint enabled makes every syscall on the machine take the slow path.

use aya_ebpf::{
    helpers::{
        bpf_get_current_pid_tgid, bpf_get_current_task, bpf_get_current_uid_gid,
        bpf_probe_read_kernel_str_bytes, bpf_probe_read_user_str_bytes,
        generated::{bpf_get_current_task_btf, bpf_task_pt_regs},
    },
    macros::{raw_tracepoint, tracepoint},
    programs::{RawTracePointContext, TracePointContext},
};
use tracer_common::{
    EXEC_FIXED_SIZE, ExecFixed, FLAG_ARGV_TRUNCATED, FLAG_PATH_TRUNCATED, HEADER_SIZE, MAX_ARGV,
    MAX_FILENAME, RecordKind,
};

use crate::common::{
    cfg, copy_user, count_error, header, ignored, parent_tgid, put, put_header, read_field,
    scratch, submit,
};

/// Where the strings start in an exec record.
const BODY: usize = HEADER_SIZE + EXEC_FIXED_SIZE;

/// A raw tracepoint: the classic one would have the kernel build its record (filename
/// included) for every exec before the program runs.
#[raw_tracepoint(tracepoint = "sched_process_exec")]
pub fn process_exec(ctx: RawTracePointContext) -> i32 {
    if try_exec(&ctx).is_err() {
        count_error();
    }
    0
}

fn try_exec(ctx: &RawTracePointContext) -> Result<(), i32> {
    let pid_tgid = bpf_get_current_pid_tgid();
    if ignored((pid_tgid >> 32) as u32) {
        return Ok(());
    }
    let c = cfg();
    let buf = scratch().ok_or(-1)?;
    let mut hdr = header(RecordKind::Exec, pid_tgid);
    // SAFETY: a helper without arguments (the binding is `unsafe` as every raw helper
    // binding is); the address it returns is only read through `read_field`.
    let task = unsafe { bpf_get_current_task() } as *const u8;

    // sched_process_exec(struct task_struct *p, pid_t old_pid, struct linux_binprm *bprm)
    let bprm: *const u8 = ctx.arg(2);
    // SAFETY: a raw pointer is valid for any bytes; `read_field` takes any address.
    let filename: *const u8 = unsafe { read_field(bprm, c.binprm_filename) }?;
    // SAFETY: the destination is a `&mut` slice of the scratch buffer (BODY + MAX_FILENAME
    // <= SCRATCH_SIZE, asserted in tracer-common), and the helper writes at most its length;
    // the source may be any address: the helper fails (`Err`) where a read would fault.
    let filename_n = match unsafe {
        bpf_probe_read_kernel_str_bytes(filename, &mut buf[BODY..BODY + MAX_FILENAME])
    } {
        Ok(s) => s.len(),
        Err(_) => 0,
    };
    // The helper stops one short of the buffer to leave room for the NUL.
    if filename_n >= MAX_FILENAME - 1 {
        hdr.flags |= FLAG_PATH_TRUNCATED;
    }

    let mut argv_n = 0;
    // SAFETY: a raw pointer is valid for any bytes; `read_field` takes any address.
    let mm: *const u8 = unsafe { read_field(task, c.task_mm) }?;
    if !mm.is_null() {
        // SAFETY: as for `mm`.
        let start: u64 = unsafe { read_field(mm, c.mm_arg_start) }?;
        // SAFETY: as for `mm`.
        let end: u64 = unsafe { read_field(mm, c.mm_arg_end) }?;
        if end > start {
            let total = (end - start) as usize;
            if total > MAX_ARGV {
                hdr.flags |= FLAG_ARGV_TRUNCATED;
            }
            argv_n = copy_user::<MAX_ARGV>(buf, BODY + filename_n, start as *const u8, total);
        }
    }

    put(
        buf,
        HEADER_SIZE,
        ExecFixed {
            ppid: parent_tgid(task),
            uid: bpf_get_current_uid_gid() as u32,
            ret: 0,
            filename_len: filename_n as u16,
            argv_len: argv_n as u16,
        },
    );
    put_header(buf, hdr);
    submit(buf, BODY + filename_n + argv_n);
    Ok(())
}

#[tracepoint]
pub fn execve_failed(ctx: TracePointContext) -> u32 {
    if try_exec_failed(&ctx, cfg().regs_arg0).is_err() {
        count_error();
    }
    0
}

#[tracepoint]
pub fn execveat_failed(ctx: TracePointContext) -> u32 {
    if try_exec_failed(&ctx, cfg().regs_arg1).is_err() {
        count_error();
    }
    0
}

/// `regs_filename`: where, in the task's saved user registers, the syscall's filename
/// argument is (they are as the task entered the syscall: a failed exec returns to the
/// same program, and the argument registers are not written on the way).
fn try_exec_failed(ctx: &TracePointContext, regs_filename: u32) -> Result<(), i32> {
    // SAFETY: `read_at` reads through the bpf_probe_read_kernel helper at the record's
    // address plus the offset from the tracepoint's format file: a wrong offset reads wrong
    // bytes or fails, never faults; an `i64` is valid for any bytes.
    let ret: i64 = unsafe { ctx.read_at(cfg().tp_sys_exit_ret as usize) }?;
    if ret >= 0 {
        return Ok(());
    }
    let pid_tgid = bpf_get_current_pid_tgid();
    if ignored((pid_tgid >> 32) as u32) {
        return Ok(());
    }
    // SAFETY: bpf_get_current_task_btf takes nothing and returns the current task as the
    // trusted BTF pointer bpf_task_pt_regs requires (the verifier checks the type); the
    // address of the task's saved user registers that it returns is only read through
    // `read_field`.
    let regs = unsafe { bpf_task_pt_regs(bpf_get_current_task_btf()) } as *const u8;
    // SAFETY: a `u64` is valid for any bytes; `read_field` takes any address.
    let filename: u64 = unsafe { read_field(regs, regs_filename) }?;
    let buf = scratch().ok_or(-1)?;
    let mut hdr = header(RecordKind::ExecFailed, pid_tgid);
    // SAFETY: the destination is a `&mut` slice of the scratch buffer, which the helper
    // writes at most the length of; the source is a user address, which may be anything:
    // the helper fails (`Err`) where it is not mapped or not resident, and cannot fault.
    let n = match unsafe {
        bpf_probe_read_user_str_bytes(filename as *const u8, &mut buf[BODY..BODY + MAX_FILENAME])
    } {
        Ok(s) => s.len(),
        Err(_) => 0,
    };
    // The helper stops one short of the buffer to leave room for the NUL.
    if n >= MAX_FILENAME - 1 {
        hdr.flags |= FLAG_PATH_TRUNCATED;
    }
    // SAFETY: a helper without arguments; the address is only read through `read_field`.
    let task = unsafe { bpf_get_current_task() } as *const u8;
    put(
        buf,
        HEADER_SIZE,
        ExecFixed {
            ppid: parent_tgid(task),
            uid: bpf_get_current_uid_gid() as u32,
            ret: ret as i32,
            filename_len: n as u16,
            argv_len: 0,
        },
    );
    put_header(buf, hdr);
    submit(buf, BODY + n);
    Ok(())
}
