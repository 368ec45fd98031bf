//! The fallback backend's file and exec hooks: tracepoints, which see an operation but cannot
//! fail it. They decide with the same rules and log the same events; a denied operation by an
//! agent with `on_violation = "kill"` is answered with SIGKILL from the kernel (the process never
//! returns to user space: it cannot use the fd it opened, and a denied exec never runs a single
//! instruction of the new program), otherwise it is logged as a would-deny.
//!
//! Paths come from the kernel's own objects (the opened `struct file`, the new `mm->exe_file`)
//! through the dentry walk, so they are canonical like `bpf_d_path`'s, not the caller's string.

use aya_ebpf::{
    helpers::generated::{bpf_get_current_task, bpf_send_signal},
    macros::tracepoint,
    programs::TracePointContext,
};
use enforcer_common::*;

use crate::{
    decide, dentry_path, identity,
    kmem::read,
    offsets::get as off,
    scratch::{self, Scratch},
};

const SIGKILL: u32 = 9;
const FMODE_READ: u32 = 0x1;
const FMODE_WRITE: u32 = 0x2;

#[inline(always)]
fn kill_if(kill: bool) {
    if kill {
        unsafe { bpf_send_signal(SIGKILL) };
    }
}

/// The current task's descriptor table: its `struct file *` array and how many slots it has.
#[inline(always)]
pub fn fd_table() -> Option<(*const *const u8, u32)> {
    let task = unsafe { bpf_get_current_task() } as *const u8;
    let files: *const u8 = read(unsafe { task.add(off::OFF_TASK_FILES()) })?;
    let fdt: *const u8 = read(unsafe { files.add(off::OFF_FILES_FDT()) })?;
    let max: u32 = read(unsafe { fdt.add(off::OFF_FDTABLE_MAX_FDS()) })?;
    let fds: *const *const u8 = read(unsafe { fdt.add(off::OFF_FDTABLE_FD()) })?;
    Some((fds, max))
}

/// `struct file *` of descriptor `fd` of the current task.
#[inline(always)]
pub fn file_of_fd(fd: u32) -> Option<*const u8> {
    let (fds, max) = fd_table()?;
    if fd >= max {
        return None;
    }
    let file: *const u8 = read(unsafe { fds.add(fd as usize) } as *const u8)?;
    (!file.is_null()).then_some(file)
}

/// The path of `file` into `s.event.target` (bpf_d_path conventions: length incl. NUL, or < 0).
#[inline(always)]
pub fn file_path(s: &mut Scratch, file: *const u8) -> i64 {
    let path = unsafe { file.add(off::OFF_FILE_F_PATH()) };
    let mnt: *const u8 =
        read(unsafe { path.add(off::OFF_PATH_MNT()) }).unwrap_or(core::ptr::null());
    let dentry: *const u8 =
        read(unsafe { path.add(off::OFF_PATH_DENTRY()) }).unwrap_or(core::ptr::null());
    if mnt.is_null() || dentry.is_null() {
        return -1;
    }
    dentry_path::build(s, mnt, dentry, None)
}

/// sys_exit of openat, openat2, open and creat: decided on the opened file.
#[tracepoint]
pub fn fb_exit_open(ctx: TracePointContext) -> u32 {
    match try_exit_open(&ctx) {
        Ok(ret) | Err(ret) => ret,
    }
}

#[inline(always)]
fn try_exit_open(ctx: &TracePointContext) -> Result<u32, u32> {
    let ret: i64 = unsafe { ctx.read_at::<i64>(off::TP_SYS_EXIT_RET()) }.map_err(|_| 0u32)?;
    if ret < 0 {
        return Ok(0); // nothing was opened
    }
    let s = scratch::get().ok_or(0u32)?;
    if !identity::park_current(s) {
        return Ok(0);
    }
    let Some(file) = file_of_fd(ret as u32) else {
        // Opened but unreadable: fail closed like an unresolvable path.
        kill_if(decide::path_op_observed(s, OP_OPEN, ACCESS_READ, 0, 0, -1));
        return Ok(0);
    };
    // An unreadable mode is not "no access": a read and write that cannot be decided
    // (decide::fail denies).
    let (fmode, fflags) = match (
        read::<u32>(unsafe { file.add(off::OFF_FILE_F_MODE()) }),
        read::<u32>(unsafe { file.add(off::OFF_FILE_F_FLAGS()) }),
    ) {
        (Some(m), Some(f)) => (m, f),
        _ => {
            decide::fail(s, FAIL_OPEN_MODE);
            (FMODE_READ | FMODE_WRITE, 0)
        }
    };
    let mut access = 0;
    if fmode & FMODE_READ != 0 {
        access |= ACCESS_READ;
    }
    if fmode & FMODE_WRITE != 0 {
        access |= ACCESS_WRITE;
    }
    if access == 0 {
        return Ok(0); // O_PATH and friends: no data access
    }
    // No path rule names an object on a kernel-internal mount (pathless.rs); the just-opened
    // descriptor does not count as holding it.
    if crate::pathless::is_pathless(file) == Some(true) {
        kill_if(crate::pathless::observed(
            s, file, OP_OPEN, access, fflags, ret as u32,
        ));
        return Ok(0);
    }
    let len = file_path(s, file);
    kill_if(decide::path_op_observed(s, OP_OPEN, access, fflags, 0, len));
    Ok(0)
}

/// sched_process_exec: the exec has happened and the new program has not run yet. Decided on
/// the file now executing (`mm->exe_file`); also where a non-agent that exec'd a `match.exe`
/// binary becomes that agent.
#[tracepoint]
pub fn fb_sched_exec(ctx: TracePointContext) -> u32 {
    match try_sched_exec(&ctx) {
        Ok(ret) | Err(ret) => ret,
    }
}

#[inline(always)]
fn try_sched_exec(_ctx: &TracePointContext) -> Result<u32, u32> {
    let cfg0 = identity::config();
    let s = scratch::get().ok_or(0u32)?;
    let is_agent = identity::park_current(s);
    if !is_agent && cfg0.flags & CONFIG_HAVE_EXE_MATCH == 0 {
        return Ok(0);
    }
    let task = unsafe { bpf_get_current_task() } as *const u8;
    let mm: *const u8 = read(unsafe { task.add(off::OFF_TASK_MM()) }).unwrap_or(core::ptr::null());
    let exe: *const u8 = if mm.is_null() {
        core::ptr::null()
    } else {
        read(unsafe { mm.add(off::OFF_MM_EXE_FILE()) }).unwrap_or(core::ptr::null())
    };
    let len = if exe.is_null() { -1 } else { file_path(s, exe) };
    let mut flags = 0;
    if !is_agent {
        match super::exec::exe_match(s, &cfg0, len) {
            Some(c) => identity::park(s, c),
            None => return Ok(0),
        }
    } else if cfg0.flags & CONFIG_HAVE_EXE_MATCH != 0 {
        flags = super::exec::delegate(s, &cfg0, len);
    }
    kill_if(decide::path_op_observed(
        s,
        OP_EXEC,
        ACCESS_EXEC,
        0,
        flags,
        len,
    ));
    Ok(0)
}
