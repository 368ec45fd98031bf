//! The absolute path of a (vfsmount, dentry) pair, built by walking `d_parent` and the mount
//! tree: `bpf_d_path` is only allowed in a few hooks (file_open, bprm_check_security,
//! path_truncate...), not in path_unlink / path_mkdir / path_rename or in tracepoints.
//!
//! The result has exactly `bpf_d_path`'s format, so `decide::path_op` and the matcher take it
//! unchanged: the path is written to `s.event.target`, absolute and NUL-terminated, and the
//! return value is its length including the NUL, or a negative errno. It is the path as seen
//! from the current task's root (`current->fs->root`), like `d_path`: a chrooted agent sees
//! chroot-relative paths in both.
//!
//! How: components are prepended right to left into `s.walk.buf` (the NUL at its byte
//! `PATH_BUF_BYTES - 1`), one step per `bpf_loop` iteration, then the finished path is copied
//! left-aligned into the event target with one `bpf_probe_read_kernel` (which reads map memory
//! as well as kernel memory). Needs kernel 5.17+ (bpf_loop).
//!
//! Failures are negative errnos, which the decision turns into a fail-closed deny flagged
//! `EVENT_FLAG_PATH_UNRESOLVED`:
//! - `-ELOOP`: more than `MAX_STEPS` steps (components plus mount crossings) before the root;
//! - `-ENAMETOOLONG`: the path does not fit `PATH_BUF_BYTES` (d_path's limit too);
//! - `-EFAULT`: a kernel read failed;
//! - `-EINVAL`: a component name is empty or longer than NAME_MAX;
//! - `-ENOENT`: a disconnected dentry (its own parent without being a mount root, e.g. from
//!   open_by_handle_at): the path so far is not where the file is, so it is not trusted.
//!
//! Unlike `d_path` the walk takes no locks: a concurrent rename of an ancestor can give a path
//! that mixes the old and new names (d_path retries under `rename_lock`). The hooks that use it
//! run with the parent directory locked, so the last components are stable.
//!
//! Independent of the LSM context: tracepoint programs may call [`build`] too.

use aya_ebpf::helpers::{bpf_probe_read_kernel, generated};
use enforcer_common::PATH_BUF_BYTES;

use crate::{offsets::get as off, scratch::Scratch};

/// Components plus mount crossings walked before giving up (fail closed with `-ELOOP`).
pub const MAX_STEPS: u32 = 64;
/// Longest component name (`NAME_MAX`).
const NAME_MAX: usize = 255;
/// The last byte of the path (its NUL) sits at `END`.
const END: usize = PATH_BUF_BYTES - 1;
const MASK: usize = PATH_BUF_BYTES - 1;

const EFAULT: i64 = 14;
const ENOENT: i64 = 2;
const EINVAL: i64 = 22;
const ENAMETOOLONG: i64 = 36;
const ELOOP: i64 = 40;

const RUNNING: i64 = 1;
const DONE: i64 = 0;

/// Walk state, in per-CPU scratch memory (volatile accesses only): every step starts from the
/// same verifier state, so the two kinds of step (component, mount crossing) merge again.
#[repr(C)]
pub struct Walk {
    /// The path grows leftwards from the NUL at `END`. `NAME_MAX + 1` bytes of slack: the verifier
    /// bounds a name copy by the largest masked offset plus the largest masked size.
    pub buf: [u8; PATH_BUF_BYTES + NAME_MAX + 1],
    /// Index of the path's first byte in `buf`.
    pub pos: u32,
    /// Name length / copy size passed through memory so LLVM keeps the masks the verifier needs.
    pub size: u32,
    /// `RUNNING`, `DONE` or a negative errno.
    pub status: i64,
    /// Current dentry and the `struct vfsmount` it is on (kernel addresses as integers).
    pub dentry: u64,
    pub vfsmnt: u64,
    /// Where the walk stops: the task's root.
    pub root_dentry: u64,
    pub root_mnt: u64,
}

#[inline(always)]
fn read_u64(addr: u64) -> Option<u64> {
    unsafe { bpf_probe_read_kernel(addr as *const u64) }.ok()
}

#[inline(always)]
fn fail(s: &mut Scratch, errno: i64) -> bool {
    vset!(s.walk.status, -errno);
    false
}

/// The current task's root, where the walk stops (as d_path does). A task without one (fs
/// already released at exit) walks to the global root. A root that cannot be read is a failure
/// (false): walking past a chroot to the global root would judge a path the task cannot name.
#[inline(always)]
fn load_root(s: &mut Scratch) -> bool {
    let task = unsafe { generated::bpf_get_current_task() };
    let Some(fs) = read_u64(task + off::OFF_TASK_FS() as u64) else {
        return false;
    };
    let (mut mnt, mut dentry) = (0, 0);
    if fs != 0 {
        let root = fs + off::OFF_FS_ROOT() as u64;
        let (Some(m), Some(d)) = (
            read_u64(root + off::OFF_PATH_MNT() as u64),
            read_u64(root + off::OFF_PATH_DENTRY() as u64),
        ) else {
            return false;
        };
        (mnt, dentry) = (m, d);
    }
    vset!(s.walk.root_mnt, mnt);
    vset!(s.walk.root_dentry, dentry);
    true
}

/// Prepend `/` + the name of `dentry`.
#[inline(always)]
fn prepend_name(s: &mut Scratch, dentry: u64) -> bool {
    let len: u32 = match unsafe {
        bpf_probe_read_kernel((dentry + off::OFF_DENTRY_NAME_LEN() as u64) as *const u32)
    } {
        Ok(l) => l,
        Err(_) => return fail(s, EFAULT),
    };
    let Some(name) = read_u64(dentry + off::OFF_DENTRY_NAME_PTR() as u64) else {
        return fail(s, EFAULT);
    };
    vset!(s.walk.size, len);
    let len = vget!(s.walk.size) as usize & 0x1ff;
    if len == 0 || len > NAME_MAX {
        return fail(s, EINVAL);
    }
    let pos = vget!(s.walk.pos) as usize & 0x1fff;
    if pos < len + 1 {
        return fail(s, ENAMETOOLONG);
    }
    let start = pos - len;
    vset!(s.walk.pos, start as u32);
    let start = vget!(s.walk.pos) as usize & MASK;
    let size = vget!(s.walk.size) as usize & NAME_MAX;
    let dst = unsafe { s.walk.buf.as_mut_ptr().add(start) };
    if unsafe { generated::bpf_probe_read_kernel(dst as *mut _, size as u32, name as *const _) }
        != 0
    {
        return fail(s, EFAULT);
    }
    let slash = (vget!(s.walk.pos) as usize).wrapping_sub(1);
    s.walk.buf[slash & MASK] = b'/';
    vset!(s.walk.pos, slash as u32);
    true
}

/// One step towards the root: cross to the parent mount at a mount's root, else prepend this
/// dentry's name and go to its parent. Returns false when the walk is over (`status` says how).
#[inline(always)]
fn step(s: &mut Scratch) -> bool {
    let dentry = vget!(s.walk.dentry);
    let vfsmnt = vget!(s.walk.vfsmnt);
    if dentry == vget!(s.walk.root_dentry) && vfsmnt == vget!(s.walk.root_mnt) {
        vset!(s.walk.status, DONE);
        return false;
    }
    let Some(mnt_root) = read_u64(vfsmnt + off::OFF_VFSMOUNT_ROOT() as u64) else {
        return fail(s, EFAULT);
    };
    if dentry == mnt_root {
        // `struct mount` embeds the vfsmount: container_of.
        let mount = vfsmnt - off::OFF_MOUNT_MNT() as u64;
        let Some(parent) = read_u64(mount + off::OFF_MOUNT_PARENT() as u64) else {
            return fail(s, EFAULT);
        };
        if parent == mount {
            // The root of the mount tree (or of a detached tree: d_path also stops there).
            vset!(s.walk.status, DONE);
            return false;
        }
        let Some(mountpoint) = read_u64(mount + off::OFF_MOUNT_MOUNTPOINT() as u64) else {
            return fail(s, EFAULT);
        };
        vset!(s.walk.dentry, mountpoint);
        vset!(s.walk.vfsmnt, parent + off::OFF_MOUNT_MNT() as u64);
        return true;
    }
    let Some(parent) = read_u64(dentry + off::OFF_DENTRY_PARENT() as u64) else {
        return fail(s, EFAULT);
    };
    if parent == dentry {
        return fail(s, ENOENT);
    }
    if !prepend_name(s, dentry) {
        return false;
    }
    vset!(s.walk.dentry, parent);
    true
}

/// Build the absolute path of `dentry` on the mount `mnt` (a `struct vfsmount *`), followed by
/// `/` + the name of `last` if given (a dentry whose name is known but which may not be linked
/// under `dentry` yet, e.g. the new entry of mkdir/link/rename), into `s.event.target`.
/// Returns the length including the NUL (like `bpf_d_path`) or a negative errno.
#[inline(always)]
pub fn build(s: &mut Scratch, mnt: *const u8, dentry: *const u8, last: Option<*const u8>) -> i64 {
    vset!(s.walk.pos, END as u32);
    s.walk.buf[END] = 0;
    vset!(s.walk.status, RUNNING);
    vset!(s.walk.dentry, dentry as u64);
    vset!(s.walk.vfsmnt, mnt as u64);
    if !load_root(s) {
        // Unresolved: the decision denies (fail closed), flagged path-unresolved.
        return -EFAULT;
    }
    if let Some(last) = last {
        if !prepend_name(s, last as u64) {
            return vget!(s.walk.status);
        }
    }
    // bpf_loop (kernel 5.17+): the verifier checks the step once instead of MAX_STEPS times
    // (a bounded loop here cost ~60k verified instructions per walk, seconds per program under
    // emulation). A failed call leaves `status` RUNNING: -ELOOP below, fail closed.
    unsafe {
        generated::bpf_loop(
            MAX_STEPS,
            walk_step as *const () as *mut _,
            core::ptr::null_mut(),
            0,
        );
    }
    finish(s)
}

/// The bpf_loop callback: 0 = go on, 1 = stop. The state is in the per-CPU scratch, which this
/// separate BPF function looks up itself. Constants through `black_box`: the verifier requires
/// a return value it can prove to be 0 or 1.
#[inline(never)]
extern "C" fn walk_step(_index: u64, _ctx: *mut core::ffi::c_void) -> i64 {
    let go_on = match crate::scratch::get() {
        Some(s) => step(s),
        None => false,
    };
    if go_on {
        core::hint::black_box(0i64)
    } else {
        core::hint::black_box(1i64)
    }
}

/// After the walk: the error, or the path copied into the event target.
#[inline(always)]
fn finish(s: &mut Scratch) -> i64 {
    let status = vget!(s.walk.status);
    if status == RUNNING {
        return -ELOOP;
    }
    if status != DONE {
        return status;
    }
    if vget!(s.walk.pos) as usize == END {
        // Nothing prepended: the root itself.
        s.walk.buf[END - 1] = b'/';
        vset!(s.walk.pos, (END - 1) as u32);
    }
    let pos = vget!(s.walk.pos) as usize & MASK;
    vset!(s.walk.size, (PATH_BUF_BYTES - pos) as u32);
    let n = vget!(s.walk.size) as usize & 0x1fff;
    if n == 0 || n > PATH_BUF_BYTES {
        return -ENAMETOOLONG;
    }
    let src = unsafe { s.walk.buf.as_ptr().add(pos) };
    let dst = s.event.target.as_mut_ptr();
    if unsafe { generated::bpf_probe_read_kernel(dst as *mut _, n as u32, src as *const _) } != 0 {
        return -EFAULT;
    }
    n as i64
}
