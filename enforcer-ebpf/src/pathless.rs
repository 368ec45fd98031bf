//! Objects without a path: pipes, sockets and anonymous inodes (eventfd, pidfd, io_uring,
//! bpf...) reopened through `/proc/<pid>/fd/N`, memfds, namespace files. They live on
//! kernel-internal mounts, so no path rule can name them (their `d_path` is `pipe:[215]`,
//! `anon_inode:[eventfd]`, `/memfd:x (deleted)`). Reopening one the process already holds reaches
//! no object it does not have (a build's jobserver pipe, reopened by every rustc; the access
//! mode is not compared, see docs/policy.md); reaching one it
//! does not hold (another process's pipe through its `/proc/<pid>/fd`) is a new capability.
//! So: allowed when the process holds the same inode in another descriptor, denied otherwise,
//! on both backends, flagged `pathless` (docs/policy.md, "Objects without a path").

use enforcer_common::*;

use crate::{
    decide,
    kmem::read,
    offsets::get as off,
    scratch::{self, Scratch},
};

/// `MNT_INTERNAL` (include/linux/mount.h): the mount `kern_mount` made for a pseudo file system.
const MNT_INTERNAL: u32 = 0x4000;

/// The mount (`struct vfsmount *`) of an open file.
#[inline(always)]
fn mount_of(file: *const u8) -> Option<*const u8> {
    let mnt: *const u8 = read(unsafe { file.add(off::OFF_FILE_F_PATH() + off::OFF_PATH_MNT()) })?;
    (!mnt.is_null()).then_some(mnt)
}

/// Is `file` on a kernel-internal mount? None when that cannot be read (the caller fails closed
/// by judging the path as before).
#[inline(always)]
pub fn is_pathless(file: *const u8) -> Option<bool> {
    internal_mount(mount_of(file)?)
}

/// Is the mount `mnt` (a `struct vfsmount *`) kernel-internal?
#[inline(always)]
pub fn internal_mount(mnt: *const u8) -> Option<bool> {
    if mnt.is_null() {
        return None;
    }
    let flags: i32 = read(unsafe { mnt.add(off::OFF_VFSMOUNT_MNT_FLAGS()) })?;
    Some(flags as u32 & MNT_INTERNAL != 0)
}

/// The inode of an open file, as a number to compare (0: unreadable).
#[inline(always)]
pub fn inode_of_file(file: *const u8) -> u64 {
    read::<u64>(unsafe { file.add(off::OFF_FILE_F_INODE()) }).unwrap_or(0)
}

/// The inode of a dentry, as a number to compare (0: unreadable or negative).
#[inline(always)]
pub fn inode_of_dentry(dentry: *const u8) -> u64 {
    if dentry.is_null() {
        return 0;
    }
    read::<u64>(unsafe { dentry.add(off::OFF_DENTRY_D_INODE()) }).unwrap_or(0)
}

/// Does the current process hold `inode` in a descriptor other than `skip_fd` (the fallback's
/// just-opened one; `u32::MAX` for none)? Looks at the lowest [`HELD_SCAN_FDS`] descriptors;
/// anything unreadable counts as not held (fail closed).
#[inline(always)]
pub fn held(s: &mut Scratch, inode: u64, skip_fd: u32) -> bool {
    let Some((fds, max)) = crate::hooks::observe::fd_table() else {
        return false;
    };
    if inode == 0 || fds.is_null() {
        return false;
    }
    let fds = fds as u64;
    vset!(s.held_fds, fds);
    vset!(
        s.held_n,
        if max < HELD_SCAN_FDS {
            max
        } else {
            HELD_SCAN_FDS
        }
    );
    vset!(s.held_skip, skip_fd);
    vset!(s.held_inode, inode);
    vset!(s.held_found, 0);
    // One verified step, not HELD_SCAN_FDS copies of it.
    let ran = unsafe {
        aya_ebpf::helpers::generated::bpf_loop(
            HELD_SCAN_FDS,
            held_step as *const () as *mut _,
            core::ptr::null_mut(),
            0,
        )
    };
    ran >= 0 && vget!(s.held_found) != 0
}

/// `bpf_loop` callback: descriptor `i`. 1 ends the scan (found, or past the table).
extern "C" fn held_step(i: u64, _ctx: *mut core::ffi::c_void) -> i64 {
    let Some(s) = scratch::get() else { return 1 };
    let i = i as u32;
    if i >= vget!(s.held_n) {
        return 1;
    }
    if i == vget!(s.held_skip) {
        return 0;
    }
    let fds = vget!(s.held_fds) as *const u8;
    let Some(file) = read::<*const u8>(unsafe { fds.add(i as usize * 8) }) else {
        return 0;
    };
    if file.is_null() {
        return 0;
    }
    match read::<u64>(unsafe { file.add(off::OFF_FILE_F_INODE()) }) {
        Some(inode) if inode == vget!(s.held_inode) => {
            vset!(s.held_found, 1);
            1
        }
        _ => 0,
    }
}

/// The fallback's decision on a pathless open `file` (an open, or an ftruncate/fchmod/fchown
/// through a descriptor): named by [`name`], judged by [`decide::pathless_op`]. Returns true
/// when the caller must SIGKILL the current task.
#[inline(always)]
pub fn observed(
    s: &mut Scratch,
    file: *const u8,
    op: u32,
    access: u32,
    open_flags: u32,
    skip_fd: u32,
) -> bool {
    let len = name(s, file);
    let inode = inode_of_file(file);
    decide::pathless_op(s, op, access, open_flags, inode, len, skip_fd, false) == VERDICT_KILL
}

/// The name of a pathless open file ([`name_of`] of its mount and dentry).
#[inline(always)]
pub fn name(s: &mut Scratch, file: *const u8) -> i64 {
    let Some(mnt) = mount_of(file) else { return -1 };
    let dentry: *const u8 =
        read(unsafe { file.add(off::OFF_FILE_F_PATH() + off::OFF_PATH_DENTRY()) })
            .unwrap_or(core::ptr::null());
    name_of(s, mnt, dentry)
}

/// A pathless object's name where the dentry walk cannot build one: the file system's name,
/// `:`, the dentry's name (`anon_inodefs:[eventfd]`, `pipefs:`, `tmpfs:memfd:x`), into
/// `s.event.target`. Returns its length with the NUL, or -1.
#[inline(always)]
pub fn name_of(s: &mut Scratch, mnt: *const u8, dentry: *const u8) -> i64 {
    let fs_name = read::<*const u8>(unsafe { mnt.add(off::OFF_VFSMOUNT_MNT_SB()) })
        .filter(|sb| !sb.is_null())
        .and_then(|sb| read::<*const u8>(unsafe { sb.add(off::OFF_SB_S_TYPE()) }))
        .filter(|t| !t.is_null())
        .and_then(|t| read::<*const u8>(unsafe { t.add(off::OFF_FSTYPE_NAME()) }));
    let Some(fs_name) = fs_name.filter(|n| !n.is_null()) else {
        return -1;
    };
    let target = s.event.target.as_mut_ptr();
    let n = unsafe {
        aya_ebpf::helpers::generated::bpf_probe_read_kernel_str(
            target as *mut _,
            32,
            fs_name as *const _,
        )
    };
    if n <= 0 {
        return -1;
    }
    // n counts the NUL: the ':' goes there, the dentry's name after it.
    let at = (n as usize - 1) & 31;
    unsafe { core::ptr::write_volatile(target.add(at), b':') };
    unsafe { core::ptr::write_volatile(target.add(at + 1), 0) };
    if dentry.is_null() {
        return at as i64 + 2;
    }
    let Some(dname) = read::<*const u8>(unsafe { dentry.add(off::OFF_DENTRY_NAME_PTR()) }) else {
        return at as i64 + 2;
    };
    let m = unsafe {
        aya_ebpf::helpers::generated::bpf_probe_read_kernel_str(
            target.add(at + 1) as *mut _,
            96,
            dname as *const _,
        )
    };
    if m <= 0 {
        return at as i64 + 2;
    }
    (at + 1) as i64 + m
}
