//! `verifier_probe`: the same pipeline as `file_open` (identity, path decision, event) behind a
//! tracepoint, which the verifier checks on every kernel, including those that refuse LSM
//! programs. Built only with the `verifier-probe` feature, into the object tests/build.rs makes
//! for tests/tests/verifier_budget.rs (never into the shipped one): the test keeps the decision
//! code's verifier cost measured and bounded, in seconds rather than a VM boot.

use aya_ebpf::{helpers::bpf_probe_read_kernel, macros::tracepoint, programs::TracePointContext};
use enforcer_common::*;

use crate::{decide, dentry_path, identity, offsets::get as off, scratch};

#[tracepoint(category = "syscalls", name = "sys_enter_getppid")]
pub fn verifier_probe(ctx: TracePointContext) -> u32 {
    match try_verifier_probe(&ctx) {
        Ok(ret) | Err(ret) => ret as u32,
    }
}

#[inline(always)]
fn try_verifier_probe(_ctx: &TracePointContext) -> Result<i32, i32> {
    let s = scratch::get().ok_or(0)?;
    if !identity::park_current(s) {
        return Ok(0);
    }
    // Stand-ins for what file_open reads from the kernel: unknown values of the same kinds.
    let fmode: u32 =
        unsafe { bpf_probe_read_kernel(s.event.target.as_ptr() as *const u32) }.unwrap_or(0);
    let mut access = 0;
    if fmode & 1 != 0 {
        access |= ACCESS_READ;
    }
    if fmode & 2 != 0 {
        access |= ACCESS_WRITE;
    }
    if access == 0 {
        return Ok(0);
    }
    let ret: i64 = unsafe { bpf_probe_read_kernel(s.event.target.as_ptr().add(8) as *const i64) }
        .unwrap_or(-1);
    Ok(decide::path_op(s, OP_OPEN, access, fmode, 0, ret))
}

/// The dentry walk followed by the decision, from a tracepoint (the context the fallback
/// backend will call it from), on the current task's working directory: the walk's verifier
/// cost measured on any kernel, like `verifier_probe`. Never attached by the daemon.
#[tracepoint(category = "syscalls", name = "sys_enter_getppid")]
pub fn verifier_probe_walk(ctx: TracePointContext) -> u32 {
    match try_verifier_probe_walk(&ctx) {
        Ok(ret) | Err(ret) => ret as u32,
    }
}

#[inline(always)]
fn try_verifier_probe_walk(_ctx: &TracePointContext) -> Result<i32, i32> {
    let s = scratch::get().ok_or(0)?;
    if !identity::park_current(s) {
        return Ok(0);
    }
    let task = unsafe { aya_ebpf::helpers::generated::bpf_get_current_task() };
    let fs: u64 =
        unsafe { bpf_probe_read_kernel((task + off::OFF_TASK_FS() as u64) as *const u64) }
            .map_err(|_| 0)?;
    let pwd = fs + off::OFF_FS_PWD() as u64;
    let mnt: u64 =
        unsafe { bpf_probe_read_kernel((pwd + off::OFF_PATH_MNT() as u64) as *const u64) }
            .map_err(|_| 0)?;
    let dentry: u64 =
        unsafe { bpf_probe_read_kernel((pwd + off::OFF_PATH_DENTRY() as u64) as *const u64) }
            .map_err(|_| 0)?;
    let ret = dentry_path::build(s, mnt as *const u8, dentry as *const u8, None);
    Ok(decide::path_op(s, OP_UNLINK, ACCESS_WRITE, 0, 0, ret))
}
