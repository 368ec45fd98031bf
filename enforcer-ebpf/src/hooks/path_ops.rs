//! Writing is more than opening for write: the LSM path hooks for unlink, rmdir, mkdir, mknod
//! (which also sees files created by open(O_CREAT)), rename (both names), link (both names),
//! symlink (the new name), truncate and chmod/chown. Each decides ACCESS_WRITE on the affected
//! path with the same rules, rule ids, modes and events as `file_open`.
//!
//! `bpf_d_path` is not allowed in most of these hooks: the path is built by the dentry walk
//! (dentry_path.rs) from the directory's `struct path` and the entry's dentry. Hooks that take
//! two prior-return arguments count them from the hook's own argument count (see
//! `prior_denied`): the counts are the same on 6.1 and 6.12 (checked in their BTF).

use aya_ebpf::{helpers::bpf_probe_read_kernel, macros::lsm, programs::LsmContext};
use enforcer_common::*;

use crate::{
    decide, dentry_path, identity,
    offsets::get as off,
    scratch::{self, Scratch},
};

/// The common frame: a prior denial stands, non-agents pass untouched, agents are decided by `f`.
#[inline(always)]
fn run(ctx: &LsmContext, nargs: usize, f: impl FnOnce(&mut Scratch) -> i32) -> i32 {
    if super::prior_denied(ctx, nargs) {
        return decide::ret_code(true);
    }
    let Some(s) = scratch::get() else {
        return decide::ret_code(true);
    };
    if !identity::park_current(s) {
        return 0;
    }
    f(s)
}

/// `(path->mnt, path->dentry)` of a `struct path *`. Null pointers make the walk fail closed.
#[inline(always)]
fn parts(path: *const u8) -> (*const u8, *const u8) {
    let read = |o: usize| {
        unsafe { bpf_probe_read_kernel(path.add(o) as *const *const u8) }
            .unwrap_or(core::ptr::null())
    };
    (read(off::OFF_PATH_MNT()), read(off::OFF_PATH_DENTRY()))
}

/// Decide ACCESS_WRITE for `op` on the path of `dentry` on `mnt` (+ `/name of last`).
#[inline(always)]
fn write_op(
    s: &mut Scratch,
    op: u32,
    mode: u32,
    flags: u32,
    mnt: *const u8,
    dentry: *const u8,
    last: Option<*const u8>,
) -> i32 {
    let ret = dentry_path::build(s, mnt, dentry, last);
    decide::path_op(s, op, ACCESS_WRITE, mode, flags, ret)
}

/// A new or removed entry `dentry` in the directory `dir` (a `struct path *`).
#[inline(always)]
fn entry_op(s: &mut Scratch, op: u32, mode: u32, dir: *const u8, dentry: *const u8) -> i32 {
    let (mnt, dir_dentry) = parts(dir);
    write_op(s, op, mode, 0, mnt, dir_dentry, Some(dentry))
}

/// An existing object named by a `struct path *` (chmod, chown).
#[inline(always)]
fn object_op(s: &mut Scratch, op: u32, mode: u32, path: *const u8) -> i32 {
    let (mnt, dentry) = parts(path);
    // A memfd's ftruncate, a pipe's fchmod: an object without a path (pathless.rs), allowed to a
    // process that holds it (one reached through another process's /proc/<pid>/fd is not).
    if crate::pathless::internal_mount(mnt) == Some(true) {
        let len = crate::pathless::name_of(s, mnt, dentry);
        let inode = crate::pathless::inode_of_dentry(dentry);
        let verdict = decide::pathless_op(s, op, ACCESS_WRITE, mode, inode, len, u32::MAX, true);
        return decide::ret_code(verdict == VERDICT_DENY);
    }
    write_op(s, op, mode, 0, mnt, dentry, None)
}

/// path_unlink(const struct path *dir, struct dentry *dentry)
#[lsm(hook = "path_unlink")]
pub fn path_unlink(ctx: LsmContext) -> i32 {
    run(&ctx, 2, |s| {
        entry_op(s, OP_UNLINK, 0, ctx.arg(0), ctx.arg(1))
    })
}

/// path_rmdir(const struct path *dir, struct dentry *dentry)
#[lsm(hook = "path_rmdir")]
pub fn path_rmdir(ctx: LsmContext) -> i32 {
    run(&ctx, 2, |s| {
        entry_op(s, OP_RMDIR, 0, ctx.arg(0), ctx.arg(1))
    })
}

/// path_mkdir(const struct path *dir, struct dentry *dentry, umode_t mode); the mode is logged.
#[lsm(hook = "path_mkdir")]
pub fn path_mkdir(ctx: LsmContext) -> i32 {
    run(&ctx, 3, |s| {
        entry_op(
            s,
            OP_MKDIR,
            ctx.arg::<u16>(2) as u32,
            ctx.arg(0),
            ctx.arg(1),
        )
    })
}

/// path_mknod(const struct path *dir, struct dentry *dentry, umode_t mode, unsigned int dev).
/// Also reached by open(O_CREAT) creating a file (may_o_create), before file_open.
#[lsm(hook = "path_mknod")]
pub fn path_mknod(ctx: LsmContext) -> i32 {
    run(&ctx, 4, |s| {
        entry_op(
            s,
            OP_MKNOD,
            ctx.arg::<u16>(2) as u32,
            ctx.arg(0),
            ctx.arg(1),
        )
    })
}

/// path_symlink(const struct path *dir, struct dentry *dentry, const char *old_name): the new
/// link's path (its target string names nothing yet; opens through it are decided on the
/// resolved path).
#[lsm(hook = "path_symlink")]
pub fn path_symlink(ctx: LsmContext) -> i32 {
    run(&ctx, 3, |s| {
        entry_op(s, OP_SYMLINK, 0, ctx.arg(0), ctx.arg(1))
    })
}

/// Two names, both decided: the first as a normal event, the second flagged
/// `EVENT_FLAG_SECOND_PATH`. A denied first name ends the decision (one deny event); in audit
/// mode both are logged.
#[inline(always)]
fn two_names(
    s: &mut Scratch,
    op: u32,
    first: (*const u8, *const u8, Option<*const u8>),
    second: (*const u8, *const u8, Option<*const u8>),
) -> i32 {
    if write_op(s, op, 0, 0, first.0, first.1, first.2) != 0 {
        return decide::ret_code(true);
    }
    write_op(
        s,
        op,
        0,
        EVENT_FLAG_SECOND_PATH,
        second.0,
        second.1,
        second.2,
    )
}

/// path_rename(const struct path *old_dir, struct dentry *old_dentry, const struct path
/// *new_dir, struct dentry *new_dentry, unsigned int flags). Moving a name out of a directory
/// changes it as much as moving one in; RENAME_EXCHANGE changes both, which is what is checked.
#[lsm(hook = "path_rename")]
pub fn path_rename(ctx: LsmContext) -> i32 {
    run(&ctx, 5, |s| rename(s, &ctx))
}

// Named, always-inlined bodies for the two-name hooks: as closures LLVM outlined them into BPF
// subprograms whose stack, added to the program's, was over 512 bytes for the 6.1 verifier.
#[inline(always)]
fn rename(s: &mut Scratch, ctx: &LsmContext) -> i32 {
    let (old_mnt, old_dir) = parts(ctx.arg(0));
    let (new_mnt, new_dir) = parts(ctx.arg(2));
    two_names(
        s,
        OP_RENAME,
        (old_mnt, old_dir, Some(ctx.arg(1))),
        (new_mnt, new_dir, Some(ctx.arg(3))),
    )
}

/// path_link(struct dentry *old_dentry, const struct path *new_dir, struct dentry
/// *new_dentry). The existing file is decided too: a hard link is a second name for the same
/// inode, and writing through a name in a writable directory would write the protected file.
/// Links never cross mounts, so the old dentry is on `new_dir`'s mount.
#[lsm(hook = "path_link")]
pub fn path_link(ctx: LsmContext) -> i32 {
    run(&ctx, 3, |s| link(s, &ctx))
}

#[inline(always)]
fn link(s: &mut Scratch, ctx: &LsmContext) -> i32 {
    let (mnt, new_dir) = parts(ctx.arg(1));
    two_names(
        s,
        OP_LINK,
        (mnt, ctx.arg(0), None),
        (mnt, new_dir, Some(ctx.arg(2))),
    )
}

/// path_truncate(const struct path *path): truncate(2), open(O_TRUNC) (after file_open allowed
/// the write), and ftruncate(2) on 6.1 (6.2+ calls file_truncate for it).
#[lsm(hook = "path_truncate")]
pub fn path_truncate(ctx: LsmContext) -> i32 {
    run(&ctx, 1, |s| object_op(s, OP_TRUNCATE, 0, ctx.arg(0)))
}

/// file_truncate(struct file *file) (kernel 6.2+): ftruncate(2) and open(O_TRUNC). Attached
/// only where the kernel has the hook.
#[lsm(hook = "file_truncate")]
pub fn file_truncate(ctx: LsmContext) -> i32 {
    run(&ctx, 1, |s| {
        let file: *const u8 = ctx.arg(0);
        object_op(s, OP_TRUNCATE, 0, unsafe {
            file.add(off::OFF_FILE_F_PATH())
        })
    })
}

/// path_chmod(const struct path *path, umode_t mode): chmod, fchmod, fchmodat; the mode is
/// logged.
#[lsm(hook = "path_chmod")]
pub fn path_chmod(ctx: LsmContext) -> i32 {
    run(&ctx, 2, |s| {
        object_op(s, OP_CHMOD, ctx.arg::<u16>(1) as u32, ctx.arg(0))
    })
}

/// path_chown(const struct path *path, kuid_t uid, kgid_t gid): chown, fchown, lchown.
#[lsm(hook = "path_chown")]
pub fn path_chown(ctx: LsmContext) -> i32 {
    run(&ctx, 3, |s| object_op(s, OP_CHOWN, 0, ctx.arg(0)))
}
