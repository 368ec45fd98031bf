//! The fallback's view of the calls hooks/process_access.rs and hooks/mounts.rs refuse on BPF
//! LSM: one program on the `sys_enter_*` tracepoint of ptrace, process_vm_readv/writev, ioctl,
//! mount, umount2, open_tree, move_mount, fsopen, fsmount, chroot, pivot_root, unshare, setns,
//! clone and clone3 (`FB_SYSCALLS[nr]` says which, `SHAPE_PROCESS`). Same rules and events
//! (ops `ptrace`, `tty-inject`, `mount`, `chroot`, `namespace`); like every tracepoint it cannot
//! refuse: the agent is SIGKILLed on its way back to user space (`on_violation = "kill"`; the
//! call itself may complete, and a tracee is released when its tracer dies) or the call is
//! logged as a would-deny. pidfd_getfd is `SHAPE_CALL` (observe_syscalls.rs): denied as a whole,
//! its target is a pidfd, not a pid.

use aya_ebpf::{
    helpers::{bpf_probe_read_kernel, bpf_probe_read_user, generated::bpf_get_current_task},
    macros::tracepoint,
    programs::TracePointContext,
};
use enforcer_common::*;

use super::{
    daemon_guard::daemon_tgid,
    observe_syscalls::{arg, kill_if},
};
use crate::{
    decide, identity,
    maps::FB_SYSCALLS,
    net_match::NetTarget,
    offsets::get as off,
    process,
    scratch::{self, Scratch},
};

const PTRACE_TRACEME: u64 = 0;
const PTRACE_ATTACH: u64 = 16;
const PTRACE_SEIZE: u64 = 0x4206;
const TIOCSTI: u32 = 0x5412;
const TIOCLINUX: u32 = 0x541c;

#[tracepoint]
pub fn fb_sys_enter_proc(ctx: TracePointContext) -> u32 {
    match try_enter(&ctx) {
        Ok(ret) | Err(ret) => ret,
    }
}

#[inline(always)]
fn try_enter(ctx: &TracePointContext) -> Result<u32, u32> {
    let s = scratch::get().ok_or(0u32)?;
    let nr = unsafe { ctx.read_at::<i32>(off::TP_SYS_ENTER_NR()) }.map_err(|_| 0u32)? as u32;
    let Some(shape) = (unsafe { FB_SYSCALLS.get(&nr) }) else {
        return Ok(0);
    };
    if shape.kind != SHAPE_PROCESS {
        return Ok(0);
    }
    let shape = *shape;
    let flags = if shape.aux_arg == NO_ARG {
        0
    } else if shape.proc_kind == PROC_PERMISSION_CLONE3 {
        let args = arg(ctx, shape.aux_arg) as *const u64;
        // Unreadable clone_args: the kernel will fail the call too; judged as flagged.
        unsafe { bpf_probe_read_user(args) }.unwrap_or(u64::MAX)
    } else {
        arg(ctx, shape.aux_arg)
    };
    // What the call is, before who makes it: a call that decides nothing (a plain fork, an
    // unwatched ioctl or ptrace request) must not record a cgroup member first seen here, or
    // its OP_JOIN event would never be sent.
    let decides = match shape.proc_kind {
        PROC_PTRACE => {
            let request = arg(ctx, 0);
            request == PTRACE_TRACEME || request == PTRACE_ATTACH || request == PTRACE_SEIZE
        }
        PROC_PID => true,
        PROC_IOCTL => {
            let cmd = arg(ctx, 1) as u32;
            cmd == TIOCSTI || cmd == TIOCLINUX
        }
        PROC_PERMISSION | PROC_PERMISSION_CLONE3 => {
            shape.mask == 0 || flags & shape.mask as u64 != 0
        }
        _ => false,
    };
    if !decides || !identity::park_current(s) {
        return Ok(0);
    }
    match shape.proc_kind {
        PROC_PTRACE => {
            let request = arg(ctx, 0);
            if request == PTRACE_TRACEME {
                traceme(s);
            } else if request == PTRACE_ATTACH || request == PTRACE_SEIZE {
                reach(s, arg(ctx, 1) as u32, request as u32);
            }
        }
        PROC_PID => reach(s, arg(ctx, shape.path_arg) as u32, 0),
        PROC_IOCTL => {
            let cmd = arg(ctx, 1) as u32;
            if cmd == TIOCSTI || cmd == TIOCLINUX {
                decide::begin(s, OP_TTY_INJECT, 0, cmd, 0, NetTarget::default());
                kill_if(decide::finish_observed(s, false, RULE_DEFAULT_DENY));
            }
        }
        PROC_PERMISSION | PROC_PERMISSION_CLONE3 => {
            let detail = if shape.path_arg == NO_ARG {
                flags
            } else {
                arg(ctx, shape.path_arg)
            };
            let allow = vget!(s.cur.cfg.flags) & shape.allow != 0;
            decide::begin(s, shape.op, 0, detail as u32, 0, NetTarget::default());
            kill_if(decide::finish_observed(s, allow, RULE_DEFAULT_DENY));
        }
        _ => {}
    }
    Ok(0)
}

/// The agent reaches into process `pid` (attach, seize, process_vm_*): allowed only into its own
/// chain (process.rs), never into the daemon.
#[inline(always)]
fn reach(s: &mut Scratch, pid: u32, detail: u32) {
    let tracer = vget!(s.cur.state);
    let allow = pid != daemon_tgid()
        && match process::state_of(pid, pid) {
            Some(tracee) => process::may_control(&tracer, &tracee),
            None => false,
        };
    judge(s, pid, detail, allow);
}

/// PTRACE_TRACEME: the parent becomes the tracer.
#[inline(always)]
fn traceme(s: &mut Scratch) {
    let task = unsafe { bpf_get_current_task() } as *const u8;
    let parent: *const u8 =
        unsafe { bpf_probe_read_kernel(task.add(off::OFF_TASK_REAL_PARENT()) as *const *const u8) }
            .unwrap_or(core::ptr::null());
    let ppid: u32 = if parent.is_null() {
        0
    } else {
        unsafe { bpf_probe_read_kernel(parent.add(off::OFF_TASK_TGID()) as *const u32) }
            .unwrap_or(0)
    };
    let tracee = vget!(s.cur.state);
    let allow = match process::state_of(ppid, ppid) {
        Some(tracer) => process::may_control(&tracer, &tracee),
        None => false,
    };
    judge(s, ppid, 0, allow);
}

#[inline(always)]
fn judge(s: &mut Scratch, pid: u32, detail: u32, allow: bool) {
    let len = process::target_text(s, pid, &[0; 16]);
    decide::begin(s, OP_PTRACE, 0, detail, 0, NetTarget::default());
    vset!(s.rec.target_len, len & 31);
    kill_if(decide::finish_observed(s, allow, RULE_DEFAULT_DENY));
}
