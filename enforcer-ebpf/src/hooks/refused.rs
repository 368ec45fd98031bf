//! The fallback's view of operations the kernel refused before they happened: an agent started
//! by `enforcer run` lives in a Landlock envelope (docs/landlock.md), and an open, exec or file
//! change outside it fails with EACCES (EXDEV for a link or rename Landlock refuses for lack of
//! the refer right). The other fallback programs see only what succeeded (opens, execs) or
//! decide at entry, unaware of the refusal; these two programs make the refusal an event:
//!
//! - `fb_stash` (sys_enter of every watched open, exec and path syscall): an agent thread's
//!   syscall number and arguments into `FB_STASH[tid]`;
//! - `fb_refused` (their sys_exit): on EACCES/EXDEV, the path from the stashed arguments
//!   (lexical, as the sys_enter observers build it) decided by the policy like the BPF LSM
//!   hooks decide (verdict `deny`, never a kill: nothing happened), flagged `landlock`.

use aya_ebpf::{
    helpers::{bpf_get_current_pid_tgid, bpf_probe_read_user},
    macros::tracepoint,
    programs::TracePointContext,
};
use enforcer_common::*;

use super::observe_syscalls::user_path;
use crate::{
    decide, identity,
    maps::{FB_STASH, FB_SYSCALLS},
    offsets::get as off,
    scratch,
};

const EACCES: i64 = 13;
const EXDEV: i64 = 18;
const AT_FDCWD: i64 = -100;
const O_ACCMODE: u64 = 3;
const O_WRONLY: u64 = 1;
const O_RDWR: u64 = 2;
/// creat(path, mode) is open(path, O_WRONLY | O_CREAT | O_TRUNC, mode).
const CREAT_FLAGS: u64 = 0o1 | 0o100 | 0o1000;

#[tracepoint]
pub fn fb_stash(ctx: TracePointContext) -> u32 {
    match try_stash(&ctx) {
        Ok(ret) | Err(ret) => ret,
    }
}

#[inline(always)]
fn try_stash(ctx: &TracePointContext) -> Result<u32, u32> {
    if !identity::is_agent() {
        return Ok(0);
    }
    let nr = unsafe { ctx.read_at::<i32>(off::TP_SYS_ENTER_NR()) }.map_err(|_| 0u32)?;
    let base = off::TP_SYS_ENTER_ARGS();
    let mut stash = SyscallStash {
        nr: nr as u32 as u64,
        args: [0; 6],
    };
    for i in 0..6 {
        stash.args[i] = unsafe { ctx.read_at::<u64>(base + i * 8) }.unwrap_or(0);
    }
    let tid = bpf_get_current_pid_tgid() as u32;
    let _ = FB_STASH.insert(&tid, &stash, 0);
    Ok(0)
}

#[tracepoint]
pub fn fb_refused(ctx: TracePointContext) -> u32 {
    match try_refused(&ctx, 0) {
        Ok(ret) | Err(ret) => ret,
    }
}

/// The second path of a refused rename or link (its own program, like `fb_sys_enter_path2`:
/// two decisions in one program multiply the verifier's states).
#[tracepoint]
pub fn fb_refused2(ctx: TracePointContext) -> u32 {
    match try_refused(&ctx, 1) {
        Ok(ret) | Err(ret) => ret,
    }
}

#[inline(always)]
fn try_refused(ctx: &TracePointContext, which: u32) -> Result<u32, u32> {
    let ret: i64 = unsafe { ctx.read_at::<i64>(off::TP_SYS_EXIT_RET()) }.map_err(|_| 0u32)?;
    if ret != -EACCES && ret != -EXDEV {
        return Ok(0);
    }
    let s = scratch::get().ok_or(0u32)?;
    if !identity::park_current(s) {
        return Ok(0);
    }
    // sys_exit records have the syscall number where sys_enter records have it.
    let nr = unsafe { ctx.read_at::<i32>(off::TP_SYS_ENTER_NR()) }.map_err(|_| 0u32)? as u32;
    let tid = bpf_get_current_pid_tgid() as u32;
    let Some(stash) = (unsafe { FB_STASH.get(&tid) }) else {
        return Ok(0);
    };
    if stash.nr != nr as u64 {
        return Ok(0); // a stash of another syscall: not this one's arguments
    }
    let stash = *stash;
    let Some(shape) = (unsafe { FB_SYSCALLS.get(&nr) }) else {
        return Ok(0);
    };
    let shape = *shape;
    let arg = |i: u32| stash.args[(i as usize).min(5)];
    // symlink decides its second path (the new link); every other shape its first, and
    // rename/link their second in `fb_refused2`.
    let second = which == 1 || shape.second_only != 0;
    if which == 1 && shape.second_only != 0 {
        return Ok(0);
    }
    let (dfd_arg, path_arg) = if second {
        (shape.dfd2_arg, shape.path2_arg)
    } else {
        (shape.dfd_arg, shape.path_arg)
    };
    let flags = if which == 1 {
        EVENT_FLAG_LANDLOCK | EVENT_FLAG_SECOND_PATH
    } else {
        EVENT_FLAG_LANDLOCK
    };
    if path_arg == NO_ARG {
        return Ok(0);
    }
    let dfd = if dfd_arg == NO_ARG {
        AT_FDCWD
    } else {
        arg(dfd_arg) as i32 as i64
    };
    let (op, access, open_flags) = match shape.kind {
        SHAPE_OPEN | SHAPE_OPEN_HOW => {
            let flags = if shape.aux_arg == NO_ARG {
                CREAT_FLAGS
            } else if shape.kind == SHAPE_OPEN_HOW {
                unsafe { bpf_probe_read_user(arg(shape.aux_arg) as *const u64) }.unwrap_or(0)
            } else {
                arg(shape.aux_arg)
            };
            let access = match flags & O_ACCMODE {
                O_WRONLY => ACCESS_WRITE,
                O_RDWR => ACCESS_READ | ACCESS_WRITE,
                _ => ACCESS_READ,
            };
            (OP_OPEN, access, flags as u32)
        }
        SHAPE_EXEC => (OP_EXEC, ACCESS_EXEC, 0),
        SHAPE_PATHS => (shape.op, ACCESS_WRITE, 0),
        _ => return Ok(0),
    };
    vset!(s.path_dfd, dfd);
    let dfd = vget!(s.path_dfd);
    vset!(s.path_op, op);
    let op = vget!(s.path_op);
    let len = user_path(s, dfd, arg(path_arg) as *const u8);
    vset!(s.path_len, len);
    let len = vget!(s.path_len);
    // Decided as the BPF LSM hooks decide (the call failed: a deny, never a kill, never an
    // allow).
    decide::path_op_refused(s, op, access, open_flags, flags, len);
    Ok(0)
}
