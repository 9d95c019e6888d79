//! cgroup2 directories created and removed, and tasks attached to them. Other (v1)
//! hierarchies are dropped here: only hierarchy 0, the unified one, is reported.

use aya_ebpf::{
    EbpfContext, helpers::bpf_get_current_pid_tgid, macros::tracepoint, programs::TracePointContext,
};
use tracer_common::{
    CGROUP_FIXED_SIZE, CgroupFixed, FLAG_PATH_TRUNCATED, HEADER_SIZE, MAX_CGROUP_PATH, RecordKind,
};

use crate::common::{
    cfg, copy_kernel, count_error, header, ignored, put, put_header, scratch, submit,
};

const BODY: usize = HEADER_SIZE + CGROUP_FIXED_SIZE;

#[tracepoint]
pub fn cgroup_mkdir(ctx: TracePointContext) -> u32 {
    if try_cgroup(&ctx, RecordKind::CgroupMkdir).is_err() {
        count_error();
    }
    0
}

#[tracepoint]
pub fn cgroup_rmdir(ctx: TracePointContext) -> u32 {
    if try_cgroup(&ctx, RecordKind::CgroupRmdir).is_err() {
        count_error();
    }
    0
}

#[tracepoint]
pub fn cgroup_attach(ctx: TracePointContext) -> u32 {
    if try_cgroup(&ctx, RecordKind::CgroupAttach).is_err() {
        count_error();
    }
    0
}

fn try_cgroup(ctx: &TracePointContext, kind: RecordKind) -> Result<(), i32> {
    let c = cfg();
    let attach = matches!(kind, RecordKind::CgroupAttach);
    let (root, level, id, path) = if attach {
        (
            c.tp_attach_root,
            c.tp_attach_level,
            c.tp_attach_id,
            c.tp_attach_path,
        )
    } else {
        (
            c.tp_cgroup_root,
            c.tp_cgroup_level,
            c.tp_cgroup_id,
            c.tp_cgroup_path,
        )
    };
    // SAFETY: `read_at` reads through the bpf_probe_read_kernel helper at the record's
    // address plus an offset from the tracepoint's format file, so a wrong offset reads
    // wrong bytes or fails (`Err`), never faults; integers are valid for any bytes. The
    // same holds for every `read_at` below.
    let root: i32 = unsafe { ctx.read_at(root as usize) }?;
    if root != 0 {
        return Ok(());
    }
    let pid_tgid = bpf_get_current_pid_tgid();
    if ignored((pid_tgid >> 32) as u32) {
        return Ok(());
    }
    // SAFETY: as for `root` above.
    let id: u64 = unsafe { ctx.read_at(id as usize) }?;
    // SAFETY: as for `root` above.
    let level: i32 = unsafe { ctx.read_at(level as usize) }?;
    let target_pid: i32 = if attach {
        // SAFETY: as for `root` above.
        unsafe { ctx.read_at(c.tp_attach_pid as usize) }?
    } else {
        0
    };
    // SAFETY: as for `root` above; the `__data_loc` word: the path's offset in the record
    // (low 16 bits) and its length with the NUL (high 16).
    let loc: u32 = unsafe { ctx.read_at(path as usize) }?;
    let buf = scratch().ok_or(-1)?;
    let mut hdr = header(kind, pid_tgid);
    let path_len = ((loc >> 16) as usize).saturating_sub(1);
    if path_len > MAX_CGROUP_PATH {
        hdr.flags |= FLAG_PATH_TRUNCATED;
    }
    let src = (ctx.as_ptr() as *const u8).wrapping_add((loc & 0xffff) as usize);
    let n = copy_kernel::<MAX_CGROUP_PATH>(buf, BODY, src, path_len);
    put(
        buf,
        HEADER_SIZE,
        CgroupFixed {
            id,
            target_pid: target_pid as u32,
            level: level as u16,
            path_len: n as u16,
        },
    );
    put_header(buf, hdr);
    submit(buf, BODY + n);
    Ok(())
}
