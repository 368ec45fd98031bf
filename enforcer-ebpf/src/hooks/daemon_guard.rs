//! `task_kill`, `ptrace_access_check`: no agent may signal the daemon or get ptrace access to
//! it (attach, `/proc/<pid>/mem`, process_vm_readv/writev, pidfd_getfd). A root agent could
//! otherwise stop the daemon, or act as it - and the daemon may call bpf(). The daemon is the
//! process whose pid user space keeps in `PIN_META` while it runs; read-level ptrace checks
//! (`ps` reading /proc/<pid>/stat) are not decided. Everything else about signals and ptrace is
//! not the policy's business: only these are hooked, and logged as `signal` / `ptrace`.

use aya_ebpf::{helpers::bpf_probe_read_kernel, macros::lsm, programs::LsmContext};
use enforcer_common::*;

use crate::{decide, identity, maps::PIN_META, net_match::NetTarget, offsets::get as off, scratch};

/// `PTRACE_MODE_ATTACH`: the access checks that give control or memory, not just a look.
const PTRACE_MODE_ATTACH: u32 = 0x02;

/// `task_kill(struct task_struct *p, struct kernel_siginfo *info, int sig, const struct cred *)`.
#[lsm(hook = "task_kill")]
pub fn task_kill(ctx: LsmContext) -> i32 {
    let sig: i32 = ctx.arg(2);
    match try_guard(&ctx, OP_SIGNAL, sig as u32, 4) {
        Ok(ret) | Err(ret) => ret,
    }
}

/// `ptrace_access_check(struct task_struct *child, unsigned int mode)`.
#[lsm(hook = "ptrace_access_check")]
pub fn ptrace_access_check(ctx: LsmContext) -> i32 {
    let mode: u32 = ctx.arg(1);
    match try_guard(&ctx, OP_PTRACE, mode, 2) {
        Ok(ret) | Err(ret) => ret,
    }
}

/// Both hooks: the target task is argument 0; `detail` (the signal, the ptrace mode) goes to
/// the event's `open_flags`.
#[inline(always)]
fn try_guard(ctx: &LsmContext, op: u32, detail: u32, nargs: usize) -> Result<i32, i32> {
    if super::prior_denied(ctx, nargs) {
        return Ok(decide::ret_code(true));
    }
    if op == OP_PTRACE && detail & PTRACE_MODE_ATTACH == 0 {
        return Ok(0);
    }
    let daemon = match PIN_META.get(PIN_META_PID) {
        Some(pid) if *pid != 0 => *pid as u32,
        _ => return Ok(0),
    };
    let target: *const u8 = ctx.arg(0);
    let tgid: u32 = unsafe { bpf_probe_read_kernel(target.add(off::OFF_TASK_TGID()) as *const u32) }.unwrap_or(0);
    if tgid != daemon {
        return Ok(0);
    }
    let s = scratch::get().ok_or_else(|| decide::ret_code(true))?;
    if !identity::park_current(s) {
        return Ok(0);
    }
    decide::begin(s, op, 0, detail, 0, NetTarget::default());
    Ok(decide::finish(s, false, RULE_DEFAULT_DENY))
}
