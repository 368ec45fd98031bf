//! `task_kill`: no agent may signal the daemon. A root agent could otherwise stop it. The daemon
//! is the process whose pid user space keeps in `PIN_META` while it runs ([`daemon_tgid`]);
//! ptrace access to it (and to every other process outside the agent's chain) is decided in
//! process_access.rs. Other signals are not the policy's business: only this one is hooked, and
//! logged as `signal`.

use aya_ebpf::{helpers::bpf_probe_read_kernel, macros::lsm, programs::LsmContext};
use enforcer_common::*;

use crate::{decide, identity, maps::PIN_META, net_match::NetTarget, offsets::get as off, scratch};

/// `task_kill(struct task_struct *p, struct kernel_siginfo *info, int sig, const struct cred *)`.
#[lsm(hook = "task_kill")]
pub fn task_kill(ctx: LsmContext) -> i32 {
    let sig: i32 = ctx.arg(2);
    match try_guard(&ctx, OP_SIGNAL, sig as u32, 4) {
        Ok(ret) | Err(ret) => ret,
    }
}

/// The running daemon's pid (its thread group id), 0 when none runs.
#[inline(always)]
pub fn daemon_tgid() -> u32 {
    match PIN_META.get(PIN_META_PID) {
        Some(pid) => *pid as u32,
        None => 0,
    }
}

/// The target task is argument 0; `detail` (the signal) goes to the event's `open_flags`.
#[inline(always)]
fn try_guard(ctx: &LsmContext, op: u32, detail: u32, nargs: usize) -> Result<i32, i32> {
    if super::prior_denied(ctx, nargs) {
        return Ok(decide::ret_code(true));
    }
    let daemon = daemon_tgid();
    if daemon == 0 {
        return Ok(0);
    }
    let target: *const u8 = ctx.arg(0);
    // An unreadable target pid could be the daemon's: an agent's signal is then denied
    // (decide::fail); a non-agent's passes, as every signal of a non-agent does.
    let tgid = unsafe { bpf_probe_read_kernel(target.add(off::OFF_TASK_TGID()) as *const u32) };
    if matches!(tgid, Ok(t) if t != daemon) {
        return Ok(0);
    }
    let s = scratch::get().ok_or_else(|| decide::ret_code(true))?;
    if !identity::park_current(s) {
        return Ok(0);
    }
    if tgid.is_err() {
        decide::fail(s, FAIL_TARGET_PID);
    }
    decide::begin(s, op, 0, detail, 0, NetTarget::default());
    Ok(decide::finish(s, false, RULE_DEFAULT_DENY))
}
