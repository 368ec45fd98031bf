//! Other roots and other mounts: an agent that mounts, bind-mounts, moves a mount, chroots,
//! pivots its root or creates a user namespace (where it would hold CAP_SYS_ADMIN and could do
//! all of that) rewrites the paths every rule is judged on. Each is denied unless the agent's
//! `[process]` policy section allows it (`mount`, `chroot`, `userns`; for a chain every member
//! must), with EPERM and an event naming the operation (`mount`, `chroot`, `namespace`) and the
//! place (the mount point, the new root), rule `default-deny`. `userns_create` exists from 6.1
//! on; user space attaches it where the kernel's BTF has it and says so in status otherwise.
//!
//! Not hooked by any LSM hook: `open_tree(OPEN_TREE_CLONE)` and `fsmount` make detached mounts
//! without attaching them (attaching is `move_mount`, decided here); docs/policy.md says what
//! that leaves to a root agent.

use aya_ebpf::{helpers::bpf_probe_read_kernel, macros::lsm, programs::LsmContext};
use enforcer_common::*;

use crate::{
    decide, dentry_path, identity,
    net_match::NetTarget,
    offsets::get as off,
    scratch::{self, Scratch},
};

#[inline(always)]
fn read_ptr(p: *const u8, off: usize) -> *const u8 {
    unsafe { bpf_probe_read_kernel(p.add(off) as *const *const u8) }.unwrap_or(core::ptr::null())
}

/// The common frame: a prior denial stands, non-agents pass, agents are judged by their
/// `[process]` permission `allow_bit`; the event's target is the path `(mnt, dentry)`.
#[inline(always)]
fn judge(
    ctx: &LsmContext,
    nargs: usize,
    op: u32,
    allow_bit: u32,
    detail: u32,
    place: impl FnOnce() -> (*const u8, *const u8),
) -> i32 {
    if super::prior_denied(ctx, nargs) {
        return decide::ret_code(true);
    }
    let Some(s) = scratch::get() else {
        return decide::ret_code(true);
    };
    if !identity::park_current(s) {
        return 0;
    }
    let (mnt, dentry) = place();
    decide_place(s, op, allow_bit, detail, mnt, dentry)
}

#[inline(always)]
fn decide_place(
    s: &mut Scratch,
    op: u32,
    allow_bit: u32,
    detail: u32,
    mnt: *const u8,
    dentry: *const u8,
) -> i32 {
    let len = if mnt.is_null() || dentry.is_null() {
        -1
    } else {
        dentry_path::build(s, mnt, dentry, None)
    };
    let allow = vget!(s.cur.cfg.flags) & allow_bit != 0;
    decide::begin(s, op, 0, detail, 0, NetTarget::default());
    if len > 1 && len as usize <= PATH_BUF_BYTES {
        vset!(s.rec.target_len, len as usize - 1);
    }
    decide::finish(s, allow, RULE_DEFAULT_DENY)
}

/// `(path->mnt, path->dentry)` of a `struct path *`.
#[inline(always)]
fn parts(path: *const u8) -> (*const u8, *const u8) {
    if path.is_null() {
        return (core::ptr::null(), core::ptr::null());
    }
    (
        read_ptr(path, off::OFF_PATH_MNT()),
        read_ptr(path, off::OFF_PATH_DENTRY()),
    )
}

/// `sb_mount(const char *dev_name, const struct path *path, const char *type, unsigned long
/// flags, void *data)`: mount(2) in every form (new, bind, remount, move, propagation change).
#[lsm(hook = "sb_mount")]
pub fn sb_mount(ctx: LsmContext) -> i32 {
    let flags: u64 = ctx.arg(3);
    judge(&ctx, 5, OP_MOUNT, AGENT_ALLOW_MOUNT, flags as u32, || {
        parts(ctx.arg(1))
    })
}

/// `sb_umount(struct vfsmount *mnt, int flags)`: uncovering what a mount hid is a mount change.
#[lsm(hook = "sb_umount")]
pub fn sb_umount(ctx: LsmContext) -> i32 {
    let flags: i32 = ctx.arg(1);
    judge(&ctx, 2, OP_MOUNT, AGENT_ALLOW_MOUNT, flags as u32, || {
        let mnt: *const u8 = ctx.arg(0);
        (mnt, read_ptr(mnt, off::OFF_VFSMOUNT_ROOT()))
    })
}

/// `move_mount(const struct path *from_path, const struct path *to_path)`: attaches what
/// open_tree/fsmount made, or moves a mount; the place is the destination.
#[lsm(hook = "move_mount")]
pub fn move_mount(ctx: LsmContext) -> i32 {
    judge(&ctx, 2, OP_MOUNT, AGENT_ALLOW_MOUNT, 0, || {
        parts(ctx.arg(1))
    })
}

/// `sb_pivotroot(const struct path *old_path, const struct path *new_path)`: the new root.
#[lsm(hook = "sb_pivotroot")]
pub fn sb_pivotroot(ctx: LsmContext) -> i32 {
    judge(&ctx, 2, OP_CHROOT, AGENT_ALLOW_CHROOT, 0, || {
        parts(ctx.arg(1))
    })
}

/// `path_chroot(const struct path *path)`.
#[lsm(hook = "path_chroot")]
pub fn path_chroot(ctx: LsmContext) -> i32 {
    judge(&ctx, 1, OP_CHROOT, AGENT_ALLOW_CHROOT, 0, || {
        parts(ctx.arg(0))
    })
}

/// `userns_create(const struct cred *cred)` (6.1+): unshare(CLONE_NEWUSER), clone with it.
#[lsm(hook = "userns_create")]
pub fn userns_create(ctx: LsmContext) -> i32 {
    judge(&ctx, 1, OP_NAMESPACE, AGENT_ALLOW_USERNS, 0, || {
        (core::ptr::null(), core::ptr::null())
    })
}
