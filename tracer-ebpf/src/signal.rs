//! Who ended whom: terminating signals sent to another process (systemd's SIGTERM on stop,
//! `systemctl kill`, a supervisor's SIGKILL), and the OOM killer's choice of victim.

use aya_ebpf::{
    helpers::bpf_get_current_pid_tgid,
    macros::{raw_tracepoint, tracepoint},
    programs::{RawTracePointContext, TracePointContext},
};
use tracer_common::{Header, OomFixed, REPORTED_SIGNALS, RecordKind, SignalFixed};

use crate::common::{cfg, count_error, header, ignored, read_field, submit_fixed};

#[repr(C)]
struct SignalRecord {
    hdr: Header,
    fixed: SignalFixed,
}

#[repr(C)]
struct OomRecord {
    hdr: Header,
    fixed: OomFixed,
}

/// A raw tracepoint: every signal sent on the machine (each SIGCHLD) passes here, and the
/// classic tracepoint would have the kernel build a record for each before the program
/// drops most of them.
#[raw_tracepoint(tracepoint = "signal_generate")]
pub fn signal_generate(ctx: RawTracePointContext) -> i32 {
    if try_signal(&ctx).is_err() {
        count_error();
    }
    0
}

/// `info` values that are no pointer (include/linux/sched/signal.h), and the si_code the
/// tracepoint reports for them.
const SEND_SIG_NOINFO: u64 = 0;
const SEND_SIG_PRIV: u64 = 1;
const SI_USER: i32 = 0;
const SI_KERNEL: i32 = 0x80;

fn try_signal(ctx: &RawTracePointContext) -> Result<(), i32> {
    // signal_generate(int sig, struct kernel_siginfo *info, struct task_struct *task,
    //                 int group, int result)
    let sig = ctx.arg::<u64>(0) as i32;
    if !(1..64).contains(&sig) || REPORTED_SIGNALS & (1 << sig) == 0 {
        return Ok(());
    }
    let c = cfg();
    let task: *const u8 = ctx.arg(2);
    // SAFETY: an `i32` is valid for any bytes; `read_field` takes any address.
    let target: i32 = unsafe { read_field(task, c.task_pid) }?;
    let pid_tgid = bpf_get_current_pid_tgid();
    let (pid, tgid) = (pid_tgid as u32, (pid_tgid >> 32) as u32);
    // A process signalling itself (abort(), kill $$) is told by its exit already.
    if target as u32 == pid || target as u32 == tgid || ignored(tgid) {
        return Ok(());
    }
    submit_fixed(SignalRecord {
        hdr: header(RecordKind::Signal, pid_tgid),
        fixed: SignalFixed {
            target_pid: target as u32,
            sig: sig as u32,
            code: match ctx.arg::<u64>(1) {
                SEND_SIG_NOINFO => SI_USER,
                SEND_SIG_PRIV => SI_KERNEL,
                // SAFETY: an `i32` is valid for any bytes; `read_field` takes any address
                // (here a `struct kernel_siginfo *`, the special values being handled above).
                info => unsafe { read_field(info as *const u8, c.siginfo_code) }?,
            },
            result: ctx.arg::<u64>(4) as i32,
        },
    });
    Ok(())
}

#[tracepoint]
pub fn mark_victim(ctx: TracePointContext) -> u32 {
    // SAFETY: `read_at` reads through the bpf_probe_read_kernel helper at the record's
    // address plus the offset from the tracepoint's format file: a wrong offset reads wrong
    // bytes or fails, never faults; an `i32` is valid for any bytes.
    match unsafe { ctx.read_at::<i32>(cfg().tp_oom_pid as usize) } {
        Ok(victim) => submit_fixed(OomRecord {
            hdr: header(RecordKind::OomKill, bpf_get_current_pid_tgid()),
            fixed: OomFixed {
                victim_pid: victim as u32,
                reserved: 0,
            },
        }),
        Err(_) => count_error(),
    }
    0
}
