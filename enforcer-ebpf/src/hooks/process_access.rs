//! An agent may not act through a process outside its own agent chain (process.rs has the
//! rule): `ptrace_access_check` is where PTRACE_ATTACH/SEIZE, `/proc/<pid>/mem`,
//! process_vm_readv/writev and pidfd_getfd all ask (`ptrace_may_access` ->
//! `__ptrace_may_access` -> `security_ptrace_access_check`, in 6.1 and 6.12 alike; the kernel
//! skips the hook for the caller's own thread group), `ptrace_traceme` is an agent asking its
//! parent to trace it, and `file_ioctl` (`file_ioctl_compat` where the kernel has it) carries
//! TIOCSTI/TIOCLINUX, which push input into a terminal another process reads. Denied with EPERM
//! and an event (`ptrace` with the target `<tgid> (<comm>)`, or `tty-inject` with the tty's
//! path); no policy rule allows them. The daemon is never a permitted target.
//!
//! Read-level ptrace checks (`ps` reading /proc/<pid>/stat, /proc/<pid>/environ) are not
//! decided here: those are file reads, judged by the file rules on their /proc paths.

use aya_ebpf::{helpers::bpf_probe_read_kernel, macros::lsm, programs::LsmContext};
use enforcer_common::*;

use super::{daemon_guard::daemon_tgid, observe};
use crate::{
    decide, identity, net_match::NetTarget, offsets::get as off, process, scratch, scratch::Scratch,
};

/// `PTRACE_MODE_ATTACH`: the access checks that give control or memory, not just a look.
const PTRACE_MODE_ATTACH: u32 = 0x02;
const TIOCSTI: u32 = 0x5412;
const TIOCLINUX: u32 = 0x541c;

#[inline(always)]
fn read<T: Default>(p: *const u8, off: usize) -> T {
    unsafe { bpf_probe_read_kernel(p.add(off) as *const T) }.unwrap_or_default()
}

/// `ptrace_access_check(struct task_struct *child, unsigned int mode)`.
#[lsm(hook = "ptrace_access_check")]
pub fn ptrace_access_check(ctx: LsmContext) -> i32 {
    match try_access_check(&ctx) {
        Ok(ret) | Err(ret) => ret,
    }
}

#[inline(always)]
fn try_access_check(ctx: &LsmContext) -> Result<i32, i32> {
    if super::prior_denied(ctx, 2) {
        return Ok(decide::ret_code(true));
    }
    let mode: u32 = ctx.arg(1);
    if mode & PTRACE_MODE_ATTACH == 0 {
        return Ok(0);
    }
    let s = scratch::get().ok_or_else(|| decide::ret_code(true))?;
    if !identity::park_current(s) {
        return Ok(0);
    }
    let target: *const u8 = ctx.arg(0);
    let tracer = vget!(s.cur.state);
    let allow = match target_state(s, target) {
        Some((tgid, tracee)) => tgid != daemon_tgid() && process::may_control(&tracer, &tracee),
        None => false,
    };
    Ok(judge(s, mode, allow))
}

/// `ptrace_traceme(struct task_struct *parent)`: the parent becomes the tracer.
#[lsm(hook = "ptrace_traceme")]
pub fn ptrace_traceme(ctx: LsmContext) -> i32 {
    match try_traceme(&ctx) {
        Ok(ret) | Err(ret) => ret,
    }
}

#[inline(always)]
fn try_traceme(ctx: &LsmContext) -> Result<i32, i32> {
    if super::prior_denied(ctx, 1) {
        return Ok(decide::ret_code(true));
    }
    let s = scratch::get().ok_or_else(|| decide::ret_code(true))?;
    if !identity::park_current(s) {
        return Ok(0);
    }
    let parent: *const u8 = ctx.arg(0);
    let tracee = vget!(s.cur.state);
    let allow = match target_state(s, parent) {
        Some((_, tracer)) => process::may_control(&tracer, &tracee),
        None => false,
    };
    // PTRACE_TRACEME is request 0: logged as mode 0.
    Ok(judge(s, 0, allow))
}

/// The target task's agent state (None: not an agent), with its name written as the event's
/// target. Returns the target's thread group id too.
#[inline(always)]
fn target_state(s: &mut Scratch, task: *const u8) -> Option<(u32, ProcState)> {
    let tid: u32 = read(task, off::OFF_TASK_PID());
    let tgid: u32 = read(task, off::OFF_TASK_TGID());
    let comm: [u8; 16] = read(task, off::OFF_TASK_COMM());
    let len = process::target_text(s, tgid, &comm);
    vset!(s.cut_len, len as i64);
    process::state_of(tid, tgid).map(|st| (tgid, st))
}

#[inline(always)]
fn judge(s: &mut Scratch, mode: u32, allow: bool) -> i32 {
    let len = vget!(s.cut_len) as usize & 31;
    decide::begin(s, OP_PTRACE, 0, mode, 0, NetTarget::default());
    vset!(s.rec.target_len, len);
    decide::finish(s, allow, RULE_DEFAULT_DENY)
}

/// `file_ioctl(struct file *file, unsigned int cmd, unsigned long arg)`.
#[lsm(hook = "file_ioctl")]
pub fn file_ioctl(ctx: LsmContext) -> i32 {
    match try_ioctl(&ctx) {
        Ok(ret) | Err(ret) => ret,
    }
}

/// `file_ioctl_compat` (same arguments; 32-bit ioctls, kernels that have the hook).
#[lsm(hook = "file_ioctl_compat")]
pub fn file_ioctl_compat(ctx: LsmContext) -> i32 {
    match try_ioctl(&ctx) {
        Ok(ret) | Err(ret) => ret,
    }
}

#[inline(always)]
fn try_ioctl(ctx: &LsmContext) -> Result<i32, i32> {
    if super::prior_denied(ctx, 3) {
        return Ok(decide::ret_code(true));
    }
    let cmd: u32 = ctx.arg(1);
    if cmd != TIOCSTI && cmd != TIOCLINUX {
        return Ok(0);
    }
    let s = scratch::get().ok_or_else(|| decide::ret_code(true))?;
    if !identity::park_current(s) {
        return Ok(0);
    }
    Ok(tty_inject(s, ctx.arg(0), cmd))
}

/// Deny `cmd` on `file` (named by its path, best effort: the decision does not depend on it).
#[inline(always)]
pub fn tty_inject(s: &mut Scratch, file: *const u8, cmd: u32) -> i32 {
    let len = observe::file_path(s, file);
    decide::begin(s, OP_TTY_INJECT, 0, cmd, 0, NetTarget::default());
    if len > 1 && len as usize <= PATH_BUF_BYTES {
        vset!(s.rec.target_len, len as usize - 1);
    }
    decide::finish(s, false, RULE_DEFAULT_DENY)
}
