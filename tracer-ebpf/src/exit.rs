//! exit: one record per process, when its last thread exits, with the wait status its
//! parent's waitpid() sees and when the process was created (its age, as exitsnoop's AGE,
//! is the record's time minus that).

use aya_ebpf::{
    helpers::{bpf_get_current_pid_tgid, bpf_get_current_task},
    macros::raw_tracepoint,
    programs::RawTracePointContext,
};
use tracer_common::{ExitFixed, ExitStart, Header, RecordKind};

use crate::common::{cfg, count_error, header, ignored, parent_tgid, read_field, submit_fixed};

#[repr(C)]
struct ExitRecord {
    hdr: Header,
    fixed: ExitFixed,
    start: ExitStart,
}

/// A raw tracepoint, like exec's: no record built by the kernel for every exit.
#[raw_tracepoint(tracepoint = "sched_process_exit")]
pub fn process_exit(ctx: RawTracePointContext) -> i32 {
    if try_exit(&ctx).is_err() {
        count_error();
    }
    0
}

fn try_exit(ctx: &RawTracePointContext) -> Result<(), i32> {
    let pid_tgid = bpf_get_current_pid_tgid();
    if ignored((pid_tgid >> 32) as u32) {
        return Ok(());
    }
    let c = cfg();
    // SAFETY: a helper without arguments (the binding is `unsafe` as every raw helper
    // binding is); the address it returns is only read through `read_field`.
    let task = unsafe { bpf_get_current_task() } as *const u8;
    // SAFETY: a raw pointer is valid for any bytes (as are the integers read below);
    // `read_field` takes any address.
    let signal: *const u8 = unsafe { read_field(task, c.task_signal) }?;
    // The thread group ends with this thread: the tracepoint says so on kernels that pass
    // `group_dead` (sched_process_exit(struct task_struct *p, bool group_dead)); elsewhere
    // the live-thread count has already been decremented to 0.
    let last = if c.exit_group_dead_arg != 0 {
        ctx.arg::<u64>(1) & 0xff != 0
    } else {
        // SAFETY: as for `signal` above.
        unsafe { read_field::<i32>(signal, c.signal_live) }? == 0
    };
    if !last {
        return Ok(());
    }
    // As wait_task_zombie() computes it: the group exit code when the group was taken down
    // (exit_group from a multi-threaded process, a fatal signal), else the leader's own.
    // SAFETY: as for `signal` above.
    let flags: u32 = unsafe { read_field(signal, c.signal_flags) }?;
    // The last thread out is the leader itself unless it is a thread (pid != tgid).
    let leader: *const u8 = if pid_tgid as u32 == (pid_tgid >> 32) as u32 {
        task
    } else {
        // SAFETY: as for `signal` above.
        unsafe { read_field(task, c.task_group_leader) }?
    };
    let status: u32 = if flags & c.signal_group_exit != 0 {
        // SAFETY: as for `signal` above.
        unsafe { read_field(signal, c.signal_group_exit_code) }?
    } else {
        // SAFETY: as for `signal` above.
        unsafe { read_field(leader, c.task_exit_code) }?
    };
    // The process began when its leader was forked (a thread's own start is later).
    // SAFETY: as for `signal` above.
    let start_ns: u64 = unsafe { read_field(leader, c.task_start_boottime) }?;
    submit_fixed(ExitRecord {
        hdr: header(RecordKind::Exit, pid_tgid),
        fixed: ExitFixed {
            ppid: parent_tgid(task),
            status,
        },
        start: ExitStart { start_ns },
    });
    Ok(())
}
