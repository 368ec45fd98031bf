//! The syscalls the fallback watches with `sys_enter_*` tracepoints for file changes other than
//! open and for unix-socket destinations, and what their arguments mean (`FB_SYSCALLS`, keyed by
//! this machine's syscall numbers: the binary runs natively, so they are the kernel's ABI).

use aya::{maps::HashMap, Ebpf};
use enforcer_common::*;

use super::KernelError;

/// One watched syscall: its tracepoint (`sys_enter_<name>`), number, and argument shape.
pub struct Watched {
    pub name: &'static str,
    pub nr: i64,
    pub shape: SyscallShape,
    /// Absent on older kernels (fchmodat2 is 6.6+): skipped there, and said so.
    pub optional: bool,
}

const N: u32 = NO_ARG;

const fn paths(
    op: u32,
    dfd: u32,
    path: u32,
    dfd2: u32,
    path2: u32,
    aux: u32,
    second_only: u32,
) -> SyscallShape {
    SyscallShape {
        op,
        kind: SHAPE_PATHS,
        dfd_arg: dfd,
        path_arg: path,
        dfd2_arg: dfd2,
        path2_arg: path2,
        aux_arg: aux,
        second_only,
    }
}

const fn one(op: u32, dfd: u32, path: u32) -> SyscallShape {
    paths(op, dfd, path, N, N, N, 0)
}

const fn fd(op: u32, arg: u32) -> SyscallShape {
    SyscallShape {
        op,
        kind: SHAPE_FD,
        dfd_arg: N,
        path_arg: arg,
        dfd2_arg: N,
        path2_arg: N,
        aux_arg: N,
        second_only: 0,
    }
}

/// A call decided as a whole, whatever its target (bpf, io_uring): its first argument (the
/// bpf command, the ring size or fd) is logged as `open_flags`.
const fn call(op: u32) -> SyscallShape {
    SyscallShape {
        op,
        kind: SHAPE_CALL,
        dfd_arg: N,
        path_arg: 0,
        dfd2_arg: N,
        path2_arg: N,
        aux_arg: N,
        second_only: 0,
    }
}

const fn sock(op: u32, kind: u32, addr: u32, len: u32) -> SyscallShape {
    SyscallShape {
        op,
        kind,
        dfd_arg: N,
        path_arg: addr,
        dfd2_arg: N,
        path2_arg: N,
        aux_arg: len,
        second_only: 0,
    }
}

macro_rules! w {
    ($name:literal, $nr:ident, $shape:expr) => {
        Watched {
            name: $name,
            nr: libc::$nr,
            shape: $shape,
            optional: false,
        }
    };
    ($name:literal, $nr:ident, $shape:expr, optional) => {
        Watched {
            name: $name,
            nr: libc::$nr,
            shape: $shape,
            optional: true,
        }
    };
}

/// Every watched syscall (x86-64 names; creat and the opens are the open tracepoints').
pub fn watched() -> Vec<Watched> {
    vec![
        w!("unlink", SYS_unlink, one(OP_UNLINK, N, 0)),
        // unlinkat(dfd, path, flags): AT_REMOVEDIR in flags makes it a rmdir.
        w!("unlinkat", SYS_unlinkat, paths(OP_UNLINK, 0, 1, N, N, 2, 0)),
        w!("rmdir", SYS_rmdir, one(OP_RMDIR, N, 0)),
        w!("mkdir", SYS_mkdir, one(OP_MKDIR, N, 0)),
        w!("mkdirat", SYS_mkdirat, one(OP_MKDIR, 0, 1)),
        w!("mknod", SYS_mknod, one(OP_MKNOD, N, 0)),
        w!("mknodat", SYS_mknodat, one(OP_MKNOD, 0, 1)),
        w!("rename", SYS_rename, paths(OP_RENAME, N, 0, N, 1, N, 0)),
        w!("renameat", SYS_renameat, paths(OP_RENAME, 0, 1, 2, 3, N, 0)),
        w!(
            "renameat2",
            SYS_renameat2,
            paths(OP_RENAME, 0, 1, 2, 3, N, 0)
        ),
        w!("link", SYS_link, paths(OP_LINK, N, 0, N, 1, N, 0)),
        w!("linkat", SYS_linkat, paths(OP_LINK, 0, 1, 2, 3, N, 0)),
        // symlink(target, linkpath): the target is only text; the new link is what changes.
        w!("symlink", SYS_symlink, paths(OP_SYMLINK, N, N, N, 1, N, 1)),
        w!(
            "symlinkat",
            SYS_symlinkat,
            paths(OP_SYMLINK, N, N, 1, 2, N, 1)
        ),
        w!("truncate", SYS_truncate, one(OP_TRUNCATE, N, 0)),
        w!("ftruncate", SYS_ftruncate, fd(OP_TRUNCATE, 0)),
        w!("chmod", SYS_chmod, one(OP_CHMOD, N, 0)),
        w!("fchmodat", SYS_fchmodat, one(OP_CHMOD, 0, 1)),
        w!("fchmodat2", SYS_fchmodat2, one(OP_CHMOD, 0, 1), optional),
        w!("fchmod", SYS_fchmod, fd(OP_CHMOD, 0)),
        w!("chown", SYS_chown, one(OP_CHOWN, N, 0)),
        w!("lchown", SYS_lchown, one(OP_CHOWN, N, 0)),
        w!("fchownat", SYS_fchownat, one(OP_CHOWN, 0, 1)),
        w!("fchown", SYS_fchown, fd(OP_CHOWN, 0)),
        // Unix sockets (IPv4/IPv6 are the cgroup programs'): connect(fd, addr, len),
        // sendto(fd, buf, len, flags, addr, addrlen), sendmsg(fd, msg, flags).
        w!(
            "connect",
            SYS_connect,
            sock(OP_CONNECT, SHAPE_SOCKADDR, 1, 2)
        ),
        w!("sendto", SYS_sendto, sock(OP_SENDMSG, SHAPE_SOCKADDR, 4, 5)),
        w!("sendmsg", SYS_sendmsg, sock(OP_SENDMSG, SHAPE_MSGHDR, 1, N)),
        // io_uring: the operations a ring performs pass none of the tracepoints above (nor the
        // open ones), so an agent's ring is denied as a whole (docs/fallback.md "io_uring").
        w!("io_uring_setup", SYS_io_uring_setup, call(OP_IO_URING)),
        w!("io_uring_enter", SYS_io_uring_enter, call(OP_IO_URING)),
        // bpf(cmd, attr, size): never allowed to an agent (it could edit the pinned maps).
        w!("bpf", SYS_bpf, call(OP_BPF)),
    ]
}

/// The programs that handle a shape (paths: one per path argument).
pub fn programs_for(shape: &SyscallShape) -> Vec<&'static str> {
    match shape.kind {
        SHAPE_FD | SHAPE_CALL => vec!["fb_sys_enter_fd"],
        SHAPE_SOCKADDR | SHAPE_MSGHDR => vec!["fb_sys_enter_sock"],
        _ => {
            let mut v = Vec::new();
            if shape.path_arg != NO_ARG && shape.second_only == 0 {
                v.push("fb_sys_enter_path1");
            }
            if shape.path2_arg != NO_ARG {
                v.push("fb_sys_enter_path2");
            }
            v
        }
    }
}

/// Fill `FB_SYSCALLS`.
pub fn fill(ebpf: &mut Ebpf, list: &[Watched]) -> Result<(), KernelError> {
    let map_err = |e: &dyn std::fmt::Display| KernelError::Map {
        map: MAP_FB_SYSCALLS.into(),
        reason: e.to_string(),
    };
    let mut map: HashMap<_, u32, SyscallShape> = HashMap::try_from(
        ebpf.map_mut(MAP_FB_SYSCALLS)
            .ok_or_else(|| KernelError::Load("FB_SYSCALLS missing".into()))?,
    )
    .map_err(|e| map_err(&e))?;
    for w in list {
        map.insert(w.nr as u32, w.shape, 0)
            .map_err(|e| map_err(&e))?;
    }
    Ok(())
}
