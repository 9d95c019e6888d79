//! fork: new processes only. A raw tracepoint, because telling a new process from a new
//! thread needs the child's task (its pid equals its tgid only for a process), which the
//! classic tracepoint does not pass. (A BTF tracepoint would too, but attaching one needs
//! the kernel's BTF parsed a second time in userspace, for its type id: 10 MiB more RSS.)

use aya_ebpf::{
    helpers::bpf_get_current_pid_tgid, macros::raw_tracepoint, programs::RawTracePointContext,
};
use tracer_common::{ForkFixed, Header, RecordKind};

use crate::common::{cfg, count_error, header, ignored, read_field, submit_fixed};

#[repr(C)]
struct ForkRecord {
    hdr: Header,
    fixed: ForkFixed,
}

#[raw_tracepoint(tracepoint = "sched_process_fork")]
pub fn process_fork(ctx: RawTracePointContext) -> i32 {
    if try_fork(&ctx).is_err() {
        count_error();
    }
    0
}

fn try_fork(ctx: &RawTracePointContext) -> Result<(), i32> {
    let pid_tgid = bpf_get_current_pid_tgid();
    if ignored((pid_tgid >> 32) as u32) {
        return Ok(());
    }
    let c = cfg();
    // sched_process_fork(struct task_struct *parent, struct task_struct *child)
    let child: *const u8 = ctx.arg(1);
    // SAFETY: a `u32` is valid for any bytes; `read_field` takes any address.
    let pid: u32 = unsafe { read_field(child, c.task_pid) }?;
    // SAFETY: as for `pid`.
    let tgid: u32 = unsafe { read_field(child, c.task_tgid) }?;
    if pid != tgid {
        return Ok(());
    }
    submit_fixed(ForkRecord {
        hdr: header(RecordKind::Fork, pid_tgid),
        fixed: ForkFixed {
            child_pid: pid,
            reserved: 0,
        },
    });
    Ok(())
}
