//! The launcher's seccomp kills, made events (the fallback: enforcer/src/kernel/seccomp.rs).
//!
//! `enforcer run` gives fallback agents a seccomp filter that kills the process before a call
//! the tracepoints cannot judge runs: 32-bit (compat) and x32 system calls, and `clone` sharing
//! the descriptor table with a new process. The kernel kills with a forced SIGSYS whose
//! `si_errno` is the filter's `SECCOMP_RET_DATA` and whose `si_code` is SYS_SECCOMP; this
//! program sees that signal generated (`signal:signal_generate`, in the killed task's own
//! context) and logs it for the agent: verdict `kill`, rule `default-deny`, op from the reason.
//! Signals that are not such a SIGSYS of an agent cost two reads and a compare.

use aya_ebpf::{macros::tracepoint, programs::TracePointContext};
use enforcer_common::*;

use crate::{
    decide, emit::emit, identity, maps::count, net_match::NetTarget, offsets::get as off, scratch,
};

const SIGSYS: i32 = 31;
/// `si_code` of a signal seccomp sends (include/uapi/asm-generic/siginfo.h).
const SYS_SECCOMP: i32 = 1;

#[tracepoint]
pub fn fb_seccomp_kill(ctx: TracePointContext) -> u32 {
    match try_seccomp_kill(&ctx) {
        Ok(ret) | Err(ret) => ret,
    }
}

#[inline(always)]
fn try_seccomp_kill(ctx: &TracePointContext) -> Result<u32, u32> {
    let sig = unsafe { ctx.read_at::<i32>(off::TP_SIGNAL_SIG()) }.map_err(|_| 0u32)?;
    if sig != SIGSYS {
        return Ok(0);
    }
    let code = unsafe { ctx.read_at::<i32>(off::TP_SIGNAL_CODE()) }.map_err(|_| 0u32)?;
    if code != SYS_SECCOMP {
        return Ok(0);
    }
    let data = unsafe { ctx.read_at::<i32>(off::TP_SIGNAL_ERRNO()) }.map_err(|_| 0u32)? as u32;
    if data & SECCOMP_DATA_TAG_MASK != SECCOMP_DATA_TAG {
        return Ok(0);
    }
    let op = match data & !SECCOMP_DATA_TAG_MASK {
        SECCOMP_REASON_COMPAT => OP_COMPAT_SYSCALL,
        SECCOMP_REASON_SHARE_FILES => OP_SHARE_FILES,
        _ => return Ok(0),
    };
    let s = scratch::get().ok_or(0u32)?;
    if !identity::park_current(s) {
        return Ok(0);
    }
    decide::begin(s, op, 0, 0, 0, NetTarget::default());
    // The filter has already killed: the verdict is what happened, whatever on_violation says.
    count(STAT_DENIED);
    emit(s, op, VERDICT_KILL, RULE_DEFAULT_DENY, 0);
    Ok(0)
}
