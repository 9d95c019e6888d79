//! Who ended whom: terminating signals sent to another process (systemd's SIGTERM on stop,
//! `systemctl kill`, a supervisor's SIGKILL), and the OOM killer's choice of victim.

use aya_ebpf::{
    helpers::bpf_get_current_pid_tgid, macros::tracepoint, programs::TracePointContext,
};
use tracer_common::{Header, OomFixed, REPORTED_SIGNALS, RecordKind, SignalFixed};

use crate::common::{cfg, count_error, header, ignored, submit_fixed};

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

#[tracepoint]
pub fn signal_generate(ctx: TracePointContext) -> u32 {
    if try_signal(&ctx).is_err() {
        count_error();
    }
    0
}

fn try_signal(ctx: &TracePointContext) -> Result<(), i32> {
    let c = cfg();
    let sig: i32 = unsafe { ctx.read_at(c.tp_signal_sig as usize) }?;
    if !(1..64).contains(&sig) || REPORTED_SIGNALS & (1 << sig) == 0 {
        return Ok(());
    }
    let target: i32 = unsafe { ctx.read_at(c.tp_signal_pid as usize) }?;
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
            code: unsafe { ctx.read_at(c.tp_signal_code as usize) }?,
            result: unsafe { ctx.read_at(c.tp_signal_result as usize) }?,
        },
    });
    Ok(())
}

#[tracepoint]
pub fn mark_victim(ctx: TracePointContext) -> u32 {
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
