//! The fallback's view of file changes other than open (unlink, rmdir, mkdir, mknod, rename,
//! link, symlink, truncate, chmod, chown) and of unix-socket connects and sends: one program on
//! the `sys_enter_*` tracepoint of each of those syscalls. What a syscall's arguments mean comes
//! from `FB_SYSCALLS[nr]`, which user space fills from its own syscall numbers.
//!
//! Paths come from the caller's strings, made absolute with the directory fd's (or the cwd's)
//! canonical path from the dentry walk: the last components are *lexical*. A path with an
//! empty, `.` or `..` component (after any leading `./`) or longer than USER_PATH_BYTES - 1
//! cannot be judged by its text and fails closed (deny, flagged unresolved). A symlink in an
//! intermediate component of the string is not followed (documented in docs/fallback.md).
//! Like every tracepoint the program sees, it cannot refuse: audit or SIGKILL per on_violation.

use aya_ebpf::{
    helpers::{
        bpf_probe_read_kernel, bpf_probe_read_user,
        generated::{
            bpf_get_current_task, bpf_loop, bpf_probe_read_kernel as read_kernel_raw,
            bpf_probe_read_user_str, bpf_send_signal,
        },
    },
    macros::tracepoint,
    programs::TracePointContext,
};
use enforcer_common::*;

use super::{
    net::{unix_target, unix_unjudged, SUN_PATH_BYTES},
    observe,
};
use crate::{
    decide, dentry_path, identity,
    maps::FB_SYSCALLS,
    net_match::NetTarget,
    offsets::get as off,
    scratch::{self, Scratch},
};

/// Longest path string taken from user memory, NUL included.
pub const USER_PATH_BYTES: usize = 256;
const AT_FDCWD: i64 = -100;
const AT_REMOVEDIR: u64 = 0x200;
const SIGKILL: u32 = 9;
const EFAULT: i64 = 14;
const EINVAL: i64 = 22;
const ENAMETOOLONG: i64 = 36;

/// Syscalls whose arguments are (dirfd, path) pairs: the first path. (The second - rename or
/// link destination - is a program of its own attached to the same tracepoint: verifying both
/// decisions in one program multiplies their verifier states past the limit.)
#[tracepoint]
pub fn fb_sys_enter_path1(ctx: TracePointContext) -> u32 {
    match try_enter(&ctx, SHAPE_PATHS) {
        Ok(ret) | Err(ret) => ret,
    }
}

/// The second path of rename, link and symlink.
#[tracepoint]
pub fn fb_sys_enter_path2(ctx: TracePointContext) -> u32 {
    match try_enter(&ctx, SHAPE_PATHS + 100) {
        Ok(ret) | Err(ret) => ret,
    }
}

/// Syscalls on an open file descriptor (ftruncate, fchmod, fchown).
#[tracepoint]
pub fn fb_sys_enter_fd(ctx: TracePointContext) -> u32 {
    match try_enter(&ctx, SHAPE_FD) {
        Ok(ret) | Err(ret) => ret,
    }
}

/// connect/sendto (a sockaddr) and sendmsg (a msghdr): unix sockets only.
#[tracepoint]
pub fn fb_sys_enter_sock(ctx: TracePointContext) -> u32 {
    match try_enter(&ctx, SHAPE_SOCKADDR) {
        Ok(ret) | Err(ret) => ret,
    }
}

/// Syscall argument `i` (the tracepoint's `args[]` are unsigned longs).
#[inline(always)]
pub fn arg(ctx: &TracePointContext, i: u32) -> u64 {
    unsafe { ctx.read_at::<u64>(off::TP_SYS_ENTER_ARGS() + (i as usize & 7) * 8) }.unwrap_or(0)
}

#[inline(always)]
pub fn kill_if(kill: bool) -> bool {
    if kill {
        unsafe { bpf_send_signal(SIGKILL) };
    }
    kill
}

/// `program`: which family of shapes this program handles (each is a separate program so
/// that each stays within the 512-byte stack).
#[inline(always)]
fn try_enter(ctx: &TracePointContext, program: u32) -> Result<u32, u32> {
    let s = scratch::get().ok_or(0u32)?;
    if !identity::park_current(s) {
        return Ok(0);
    }
    let nr = unsafe { ctx.read_at::<i32>(off::TP_SYS_ENTER_NR()) }.map_err(|_| 0u32)? as u32;
    let Some(shape) = (unsafe { FB_SYSCALLS.get(&nr) }) else {
        return Ok(0);
    };
    let kind = shape.kind;
    if program == SHAPE_FD && kind == SHAPE_FD {
        let file = observe::file_of_fd(arg(ctx, shape.path_arg) as u32);
        // ftruncate/fchmod/fchown of an object without a path (a memfd): the descriptor is
        // held by definition; decided as on BPF LSM (pathless.rs).
        if let Some(file) = file.filter(|f| crate::pathless::is_pathless(*f) == Some(true)) {
            kill_if(crate::pathless::observed(
                s,
                file,
                shape.op,
                ACCESS_WRITE,
                0,
                u32::MAX,
            ));
            return Ok(0);
        }
        let len = match file {
            Some(file) => observe::file_path(s, file),
            None => -EFAULT,
        };
        kill_if(decide::path_op_observed(
            s,
            shape.op,
            ACCESS_WRITE,
            0,
            0,
            len,
        ));
    } else if program == SHAPE_FD && kind == SHAPE_CALL {
        let cmd = arg(ctx, shape.path_arg) as u32;
        decide::begin(s, shape.op, 0, cmd, 0, NetTarget::default());
        kill_if(decide::finish_observed(s, false, RULE_DEFAULT_DENY));
    } else if program == SHAPE_PATHS && kind == SHAPE_PATHS {
        path(ctx, s, shape, 0);
    } else if program == SHAPE_PATHS + 100 && kind == SHAPE_PATHS {
        path(ctx, s, shape, 1);
    } else if program == SHAPE_SOCKADDR {
        // One call of `unix` and of `unreadable` for the three shapes: each inlined copy of a
        // decision costs this program (at the 512-byte stack limit on 6.1) and the verifier.
        let a = arg(ctx, shape.path_arg);
        let dest = match kind {
            SHAPE_SOCKADDR => Dest::Addr(a, arg(ctx, shape.aux_arg) as i32),
            SHAPE_MSGHDR => msghdr_name(a as *const u8),
            SHAPE_MMSGHDR => mmsg_name(s, a, arg(ctx, shape.aux_arg)),
            _ => Dest::None,
        };
        match dest {
            Dest::None => {}
            Dest::Unreadable => unreadable(s, shape.op),
            Dest::Addr(addr, len) => unix(s, shape.op, addr as *const u8, len),
        }
    }
    Ok(0)
}

/// Where a send's destination is in user memory.
enum Dest {
    /// No address (a connected socket's send), or nothing this program decides.
    None,
    /// The program could not read it, or could not judge it: fail closed.
    Unreadable,
    /// A sockaddr and its length.
    Addr(u64, i32),
}

/// sendmsg: `struct user_msghdr` has msg_name at 0 and msg_namelen at 8 (the UAPI layout).
/// A msghdr this program cannot read (unmapped, or a page not yet faulted in that the kernel's
/// own copy would fault in) may carry any address.
#[inline(always)]
fn msghdr_name(msg: *const u8) -> Dest {
    match unsafe { bpf_probe_read_user(msg as *const [u64; 2]) } {
        Err(_) => Dest::Unreadable,
        Ok([name, namelen]) => Dest::Addr(name, namelen as i32),
    }
}

/// What [`mmsg_step`] works on, in the per-CPU scratch.
#[repr(C)]
pub struct MmsgScan {
    /// The user's `struct mmsghdr` array and how many of its messages the kernel sends.
    pub vec: u64,
    pub n: u32,
    /// Non-zero: a message could not be read, or names a second unix address buffer.
    pub bad: u32,
    /// The first unix address found (0: none) and its length.
    pub name: u64,
    pub len: u32,
    pub _pad: u32,
}

/// The kernel sends at most this many messages per sendmmsg (`UIO_MAXIOV`).
const MMSG_MAX: u64 = 1024;
/// `sizeof(struct mmsghdr)`: a user_msghdr (56 bytes) and the sent length, padded (UAPI).
const MMSGHDR_BYTES: u64 = 64;

/// sendmmsg(fd, msgvec, vlen): every message may name its own address. One decision per
/// program run: the first message with a unix address is judged like a sendmsg; a later one
/// with another address buffer cannot be, and an unreadable message may hide one: both fail
/// closed. Messages with IPv4/IPv6 addresses are the cgroup programs' (as for sendto).
#[inline(always)]
fn mmsg_name(s: &mut Scratch, vec: u64, vlen: u64) -> Dest {
    vset!(s.mmsg.vec, vec);
    vset!(
        s.mmsg.n,
        if vlen > MMSG_MAX { MMSG_MAX } else { vlen } as u32
    );
    vset!(s.mmsg.name, 0);
    vset!(s.mmsg.len, 0);
    vset!(s.mmsg.bad, 0);
    let ran = unsafe {
        bpf_loop(
            MMSG_MAX as u32,
            mmsg_step as *mut core::ffi::c_void,
            core::ptr::null_mut(),
            0,
        )
    };
    if ran < 0 {
        decide::fail(s, FAIL_LOOP);
        return Dest::Unreadable;
    }
    if vget!(s.mmsg.bad) != 0 {
        return Dest::Unreadable;
    }
    let name = vget!(s.mmsg.name);
    if name == 0 {
        return Dest::None;
    }
    Dest::Addr(name, vget!(s.mmsg.len) as i32)
}

/// `bpf_loop` callback of [`mmsg_name`]: message `i`. 1 ends the scan.
extern "C" fn mmsg_step(i: u64, _ctx: *mut core::ffi::c_void) -> i64 {
    let Some(s) = scratch::get() else { return 1 };
    if i >= vget!(s.mmsg.n) as u64 {
        return 1;
    }
    let hdr = vget!(s.mmsg.vec).wrapping_add((i & (MMSG_MAX - 1)) * MMSGHDR_BYTES);
    let Ok([name, namelen]) = (unsafe { bpf_probe_read_user(hdr as *const [u64; 2]) }) else {
        vset!(s.mmsg.bad, 1);
        return 1;
    };
    let len = namelen as i32;
    if name == 0 || len == 0 {
        return 0; // no address: the connected peer
    }
    let Ok(family) = (unsafe { bpf_probe_read_user(name as *const u16) }) else {
        vset!(s.mmsg.bad, 1);
        return 1;
    };
    if family != AF_UNIX {
        return 0;
    }
    let first = vget!(s.mmsg.name);
    if first == 0 {
        vset!(s.mmsg.name, name);
        vset!(s.mmsg.len, len as u32);
        return 0;
    }
    // The same buffer is the same address; another one is not judged here.
    if first != name || vget!(s.mmsg.len) != len as u32 {
        vset!(s.mmsg.bad, 1);
        return 1;
    }
    0
}

/// Decide the syscall's first (`which` = 0) or second path (rename/link destination).
#[inline(always)]
fn path(ctx: &TracePointContext, s: &mut Scratch, shape: &SyscallShape, which: u32) {
    let (dfd_arg, path_arg) = if which == 0 {
        (shape.dfd_arg, shape.path_arg)
    } else {
        (shape.dfd2_arg, shape.path2_arg)
    };
    if path_arg == NO_ARG || (which == 0 && shape.second_only != 0) {
        return;
    }
    // `dfd` and `op` through memory too: a constant on one branch and a map value on the other
    // would make the verifier walk everything after them twice.
    let dfd = if dfd_arg == NO_ARG {
        AT_FDCWD
    } else {
        arg(ctx, dfd_arg) as i32 as i64
    };
    vset!(s.path_dfd, dfd);
    let dfd = vget!(s.path_dfd);
    let op = if shape.aux_arg != NO_ARG && arg(ctx, shape.aux_arg) & AT_REMOVEDIR != 0 {
        OP_RMDIR
    } else {
        shape.op
    };
    vset!(s.path_op, op);
    let op = vget!(s.path_op);
    let flags = if which == 1 && shape.second_only == 0 {
        EVENT_FLAG_SECOND_PATH
    } else {
        0
    };
    let len = user_path(s, dfd, arg(ctx, path_arg) as *const u8);
    // Through memory: user_path's several exits would each carry their own `len` (and verifier
    // state) into the decision.
    vset!(s.path_len, len);
    let len = vget!(s.path_len);
    // The kill is delivered on the way back to user space: this syscall still completes
    // (bpf_probe_write_user, which could spoil its argument, is refused under lockdown).
    kill_if(decide::path_op_observed(s, op, ACCESS_WRITE, 0, flags, len));
}

/// The absolute path of (`dfd`, user string `upath`) into `s.event.target`, bpf_d_path style:
/// length including the NUL, or a negative errno (failing closed).
#[inline(always)]
pub(crate) fn user_path(s: &mut Scratch, dfd: i64, upath: *const u8) -> i64 {
    let n = unsafe {
        bpf_probe_read_user_str(
            s.user_path.as_mut_ptr() as *mut _,
            USER_PATH_BYTES as u32,
            upath as *const _,
        )
    };
    if n <= 1 {
        return -EFAULT; // unreadable or empty (an empty path is an error for these syscalls)
    }
    if n as usize >= USER_PATH_BYTES {
        return -ENAMETOOLONG; // may be cut short: not judged by a prefix
    }
    let absolute = s.user_path[0] == b'/';
    // A leading "./" (as in `rm ./file`) is harmless: skip it.
    let skip = if !absolute && s.user_path[0] == b'.' && s.user_path[1] == b'/' {
        2usize
    } else {
        0
    };
    if unnormalized(s, skip) {
        return -EINVAL;
    }
    if absolute {
        if unsafe {
            read_kernel_raw(
                s.event.target.as_mut_ptr() as *mut _,
                USER_PATH_BYTES as u32,
                s.user_path.as_ptr() as *const _,
            )
        } != 0
        {
            return -EFAULT;
        }
        return n;
    }
    let base = match dir_path(s, dfd) {
        l if l <= 0 => return l,
        2 => 1, // the directory is "/": no second slash
        l => {
            s.event.target[(l as usize - 1) & (PATH_BUF_BYTES - 1)] = b'/';
            l as usize
        }
    };
    vset!(s.offset, base as u32);
    let base = vget!(s.offset) as usize & (PATH_BUF_BYTES - 1);
    let rest = (n as usize - skip) as i64;
    if base as i64 + rest > PATH_BUF_BYTES as i64 {
        return -ENAMETOOLONG;
    }
    let src = unsafe { s.user_path.as_ptr().add(skip & 3) };
    let dst = unsafe { s.event.target.as_mut_ptr().add(base) };
    if unsafe { read_kernel_raw(dst as *mut _, USER_PATH_BYTES as u32, src as *const _) } != 0 {
        return -EFAULT;
    }
    base as i64 + rest
}

/// The canonical path of directory fd `dfd` (or the cwd) into `s.event.target`. One call of
/// the walk for both cases: each inlined copy costs the verifier the whole walk again.
#[inline(always)]
fn dir_path(s: &mut Scratch, dfd: i64) -> i64 {
    let path: *const u8 = if dfd == AT_FDCWD {
        let task = unsafe { bpf_get_current_task() } as *const u8;
        match unsafe { bpf_probe_read_kernel(task.add(off::OFF_TASK_FS()) as *const *const u8) } {
            Ok(fs) if !fs.is_null() => unsafe { fs.add(off::OFF_FS_PWD()) },
            _ => return -EFAULT,
        }
    } else if dfd >= 0 {
        match observe::file_of_fd(dfd as u32) {
            Some(file) => unsafe { file.add(off::OFF_FILE_F_PATH()) },
            None => return -EFAULT,
        }
    } else {
        return -EFAULT;
    };
    let mnt: *const u8 =
        unsafe { bpf_probe_read_kernel(path.add(off::OFF_PATH_MNT()) as *const *const u8) }
            .unwrap_or(core::ptr::null());
    let dentry: *const u8 =
        unsafe { bpf_probe_read_kernel(path.add(off::OFF_PATH_DENTRY()) as *const *const u8) }
            .unwrap_or(core::ptr::null());
    if mnt.is_null() || dentry.is_null() {
        return -EFAULT;
    }
    dentry_path::build(s, mnt, dentry, None)
}

/// Does the string in `s.user_path` (from `skip`) have an empty, `.` or `..` component?
/// One byte per `bpf_loop` iteration: the callback is verified once, where an inline loop over
/// 254 bytes costs older verifiers (6.1) more than their 1M-instruction limit.
#[inline(always)]
pub fn unnormalized(s: &mut Scratch, skip: usize) -> bool {
    vset!(s.unnormal, 0);
    vset!(s.scan_skip, skip as u32);
    let ran = unsafe {
        bpf_loop(
            (USER_PATH_BYTES - 2) as u32,
            scan_byte as *mut core::ffi::c_void,
            core::ptr::null_mut(),
            0,
        )
    };
    if ran < 0 {
        // Not scanned is not "normal": fail closed (the caller flags it unresolved).
        decide::fail(s, FAIL_LOOP);
        return true;
    }
    vget!(s.unnormal) != 0
}

/// `bpf_loop` callback for byte `i` of the scan: 1 stops the loop (end of string, or found).
extern "C" fn scan_byte(i: u64, _ctx: *mut core::ffi::c_void) -> i64 {
    let Some(s) = scratch::get() else { return 1 };
    let i = i as usize & (USER_PATH_BYTES - 1);
    let c = s.user_path[i];
    if c == 0 {
        return 1;
    }
    let skip = vget!(s.scan_skip) as usize & 3;
    if i < skip {
        return 0;
    }
    let prev = if i == skip {
        b'/'
    } else {
        s.user_path[(i + USER_PATH_BYTES - 1) & (USER_PATH_BYTES - 1)]
    };
    let n1 = s.user_path[(i + 1) & (2 * USER_PATH_BYTES - 1)];
    let n2 = s.user_path[(i + 2) & (2 * USER_PATH_BYTES - 1)];
    let end1 = n1 == b'/' || n1 == 0;
    let end2 = n2 == b'/' || n2 == 0;
    let dot_component = prev == b'/' && c == b'.' && (end1 || (n1 == b'.' && end2));
    if dot_component || (c == b'/' && n1 == b'/') {
        vset!(s.unnormal, 1);
        return 1;
    }
    0
}

/// A destination the program could not read from user memory (`FAIL_USER_SOCKADDR`): denied,
/// flagged unreadable (decide::fail). Its family is unknown, so it is judged as a unix one.
#[inline(always)]
fn unreadable(s: &mut Scratch, op: u32) {
    decide::fail(s, FAIL_USER_SOCKADDR);
    let t = NetTarget {
        family: AF_UNIX,
        port: 0,
        proto: 0,
        addr: [0; 16],
    };
    decide::begin(s, op, ACCESS_CONNECT, 0, EVENT_FLAG_ADDR_UNREADABLE, t);
    kill_if(decide::finish_observed(s, false, RULE_DEFAULT_DENY));
}

/// A unix-socket destination in user memory (`sockaddr_un`, `len` bytes). A null address (or
/// a zero length, which the kernel reads as none) is a connected socket's send: decided at
/// connect.
#[inline(always)]
fn unix(s: &mut Scratch, op: u32, addr: *const u8, len: i32) {
    if addr.is_null() || len == 0 {
        return;
    }
    let Ok(family) = (unsafe { bpf_probe_read_user(addr as *const u16) }) else {
        // Unreadable here is not "not unix": the kernel's copy may still succeed (a page not
        // yet faulted in). Fail closed.
        unreadable(s, op);
        return;
    };
    if family != AF_UNIX {
        return; // IPv4/IPv6: the cgroup programs refuse those with EPERM
    }
    let t = NetTarget {
        family: AF_UNIX,
        port: 0,
        proto: 0,
        addr: [0; 16],
    };
    let n = len as i64 - 2;
    if n <= 0 || n > SUN_PATH_BYTES as i64 {
        decide::begin(s, op, ACCESS_CONNECT, 0, EVENT_FLAG_ADDR_UNREADABLE, t);
        kill_if(decide::finish_observed(s, false, RULE_DEFAULT_DENY));
        return;
    }
    let n = n as usize & 127;
    if unsafe {
        aya_ebpf::helpers::bpf_probe_read_user_buf(
            addr.wrapping_add(2),
            &mut s.unix_path[..n.min(SUN_PATH_BYTES)],
        )
    }
    .is_err()
    {
        unreadable(s, op);
        return;
    }
    let (len, relative) = unix_target(s, n);
    let flag = unix_unjudged(s, relative);
    if flag != 0 {
        decide::begin(s, op, ACCESS_CONNECT, 0, flag, t);
        vset!(s.rec.target_len, len);
        kill_if(decide::finish_observed(s, false, RULE_DEFAULT_DENY));
        return;
    }
    kill_if(decide::path_op_net_observed(s, op, len + 1, t));
}
