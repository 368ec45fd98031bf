//! `file_open`: every open of a file by an agent, decided on the full path and the open mode.

use aya_ebpf::{
    helpers::{bpf_probe_read_kernel, generated::bpf_d_path},
    macros::lsm,
    programs::LsmContext,
};
use enforcer_common::*;

use crate::{decide, identity, offsets::get as off, pathless, scratch};

const FMODE_READ: u32 = 0x1;
const FMODE_WRITE: u32 = 0x2;
/// Opens done by execve for the binary and its interpreter: decided by bprm_check_security.
/// Older kernels mark them in f_mode before this hook; newer ones only in the open flags
/// (`__FMODE_EXEC`, the same bit), which user space cannot set (outside VALID_OPEN_FLAGS).
const FMODE_EXEC: u32 = 0x20;
const OPEN_FLAG_FMODE_EXEC: u32 = 0x20;

#[lsm(hook = "file_open")]
pub fn file_open(ctx: LsmContext) -> i32 {
    match try_file_open(&ctx) {
        Ok(ret) | Err(ret) => ret,
    }
}

#[inline(always)]
fn try_file_open(ctx: &LsmContext) -> Result<i32, i32> {
    if super::prior_denied(ctx, 1) {
        return Ok(decide::ret_code(true));
    }
    let s = scratch::get().ok_or_else(|| decide::ret_code(true))?;
    if !identity::park_current(s) {
        return Ok(0);
    }
    let file: *const u8 = ctx.arg(0);
    // An unreadable mode is not "no access": judged as a read and write that cannot be decided
    // (decide::fail denies), and an exec open is not told apart (the exec is then refused).
    let (fmode, fflags) = match (
        unsafe { bpf_probe_read_kernel(file.add(off::OFF_FILE_F_MODE()) as *const u32) },
        unsafe { bpf_probe_read_kernel(file.add(off::OFF_FILE_F_FLAGS()) as *const u32) },
    ) {
        (Ok(m), Ok(f)) => (m, f),
        _ => {
            decide::fail(s, FAIL_OPEN_MODE);
            (FMODE_READ | FMODE_WRITE, 0)
        }
    };
    if fmode & FMODE_EXEC != 0 || fflags & OPEN_FLAG_FMODE_EXEC != 0 {
        return Ok(0);
    }
    let mut access = 0;
    if fmode & FMODE_READ != 0 {
        access |= ACCESS_READ;
    }
    if fmode & FMODE_WRITE != 0 {
        access |= ACCESS_WRITE;
    }
    if access == 0 {
        return Ok(0);
    }
    let ret = unsafe {
        bpf_d_path(
            file.add(off::OFF_FILE_F_PATH()) as *mut _,
            s.event.target.as_mut_ptr() as *mut _,
            PATH_BUF_BYTES as u32,
        )
    };
    // No path rule names an object on a kernel-internal mount (pathless.rs). Unreadable mount
    // flags: judged by the path as before (which denies such a name).
    if pathless::is_pathless(file) == Some(true) {
        let inode = pathless::inode_of_file(file);
        let verdict = decide::pathless_op(s, OP_OPEN, access, fflags, inode, ret, u32::MAX, true);
        return Ok(decide::ret_code(verdict == VERDICT_DENY));
    }
    Ok(decide::path_op(s, OP_OPEN, access, fflags, 0, ret))
}
