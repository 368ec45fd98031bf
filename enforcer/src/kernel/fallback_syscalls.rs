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
        proc_kind: 0,
        allow: 0,
        mask: 0,
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
        proc_kind: 0,
        allow: 0,
        mask: 0,
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
        proc_kind: 0,
        allow: 0,
        mask: 0,
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
        proc_kind: 0,
        allow: 0,
        mask: 0,
    }
}

/// A call into other processes, terminals, mounts or namespaces (hooks/observe_process.rs):
/// `arg` is the pid argument (`PROC_PID`) or the argument logged as `open_flags`
/// (`PROC_PERMISSION*`, `NO_ARG`: the flags); `flags_arg` / `mask`: decided only when that
/// argument has one of the `mask` bits (`NO_ARG`: always).
const fn process(
    op: u32,
    proc_kind: u32,
    arg: u32,
    allow: u32,
    flags_arg: u32,
    mask: u32,
) -> SyscallShape {
    SyscallShape {
        op,
        kind: SHAPE_PROCESS,
        dfd_arg: N,
        path_arg: arg,
        dfd2_arg: N,
        path2_arg: N,
        aux_arg: flags_arg,
        second_only: 0,
        proc_kind,
        allow,
        mask,
    }
}

/// A permission of the agent's `[process]` section.
const fn permission(op: u32, allow: u32, flags_arg: u32, mask: u32) -> SyscallShape {
    process(op, PROC_PERMISSION, N, allow, flags_arg, mask)
}

/// The namespaces that change what paths mean: a user namespace (CAP_SYS_ADMIN over new
/// mount namespaces) and a mount namespace.
pub const CLONE_NEW_PATHS: u32 = (libc::CLONE_NEWNS | libc::CLONE_NEWUSER) as u32;
/// open_tree's flag that makes a detached copy of the tree (a new mount).
const OPEN_TREE_CLONE: u32 = 1;

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

const fn open(kind: u32, dfd: u32, path: u32, flags: u32) -> SyscallShape {
    SyscallShape {
        op: OP_OPEN,
        kind,
        dfd_arg: dfd,
        path_arg: path,
        dfd2_arg: N,
        path2_arg: N,
        aux_arg: flags,
        second_only: 0,
        proc_kind: 0,
        allow: 0,
        mask: 0,
    }
}

const fn exec(dfd: u32, path: u32) -> SyscallShape {
    SyscallShape {
        op: OP_EXEC,
        kind: SHAPE_EXEC,
        dfd_arg: dfd,
        path_arg: path,
        dfd2_arg: N,
        path2_arg: N,
        aux_arg: N,
        second_only: 0,
        proc_kind: 0,
        allow: 0,
        mask: 0,
    }
}

/// Every watched syscall (x86-64 names). The opens and execs are decided by the
/// `sys_exit_open*` and `sched_process_exec` observers; their entries here serve only the
/// refused-syscall observer (`fb_stash`/`fb_refused`, docs/landlock.md).
pub fn watched() -> Vec<Watched> {
    vec![
        w!("open", SYS_open, open(SHAPE_OPEN, N, 0, 1)),
        w!("openat", SYS_openat, open(SHAPE_OPEN, 0, 1, 2)),
        w!("openat2", SYS_openat2, open(SHAPE_OPEN_HOW, 0, 1, 2)),
        w!("creat", SYS_creat, open(SHAPE_OPEN, N, 0, N)),
        w!("execve", SYS_execve, exec(N, 0)),
        w!("execveat", SYS_execveat, exec(0, 1)),
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
        // sendmmsg(fd, msgvec, vlen, flags): every message may carry its own address.
        w!(
            "sendmmsg",
            SYS_sendmmsg,
            sock(OP_SENDMSG, SHAPE_MMSGHDR, 1, 2)
        ),
        // open_by_handle_at(mount_fd, handle, flags): the file is found by its handle, not by a
        // path, and its dentry may be disconnected (no path to judge): denied as a whole, like
        // io_uring; `open_flags` is the mount fd (docs/fallback.md).
        w!("open_by_handle_at", SYS_open_by_handle_at, call(OP_OPEN)),
        // io_uring: the operations a ring performs pass none of the tracepoints above (nor the
        // open ones), so an agent's ring is denied as a whole (docs/fallback.md "io_uring").
        w!("io_uring_setup", SYS_io_uring_setup, call(OP_IO_URING)),
        w!("io_uring_enter", SYS_io_uring_enter, call(OP_IO_URING)),
        // bpf(cmd, attr, size): never allowed to an agent (it could edit the pinned maps).
        w!("bpf", SYS_bpf, call(OP_BPF)),
        // Other processes (docs/fallback.md "Processes, terminals, mounts"): ptrace attach,
        // seize and traceme, process_vm_readv/writev(pid, ...) judged on the target; pidfd_getfd
        // denied as a whole; ioctl's TIOCSTI/TIOCLINUX.
        w!(
            "ptrace",
            SYS_ptrace,
            process(OP_PTRACE, PROC_PTRACE, 1, 0, N, 0)
        ),
        w!(
            "process_vm_readv",
            SYS_process_vm_readv,
            process(OP_PTRACE, PROC_PID, 0, 0, N, 0)
        ),
        w!(
            "process_vm_writev",
            SYS_process_vm_writev,
            process(OP_PTRACE, PROC_PID, 0, 0, N, 0)
        ),
        w!("pidfd_getfd", SYS_pidfd_getfd, call(OP_PTRACE)),
        w!(
            "ioctl",
            SYS_ioctl,
            process(OP_TTY_INJECT, PROC_IOCTL, N, 0, N, 0)
        ),
        // Mounts, roots and namespaces, unless the agent's [process] section allows them
        // (umount2's tracepoint is named after the kernel's SYSCALL_DEFINE2(umount, ...)).
        w!(
            "mount",
            SYS_mount,
            permission(OP_MOUNT, AGENT_ALLOW_MOUNT, 3, 0)
        ),
        w!(
            "umount",
            SYS_umount2,
            permission(OP_MOUNT, AGENT_ALLOW_MOUNT, 1, 0)
        ),
        w!(
            "open_tree",
            SYS_open_tree,
            permission(OP_MOUNT, AGENT_ALLOW_MOUNT, 2, OPEN_TREE_CLONE)
        ),
        w!(
            "move_mount",
            SYS_move_mount,
            permission(OP_MOUNT, AGENT_ALLOW_MOUNT, 4, 0)
        ),
        w!(
            "fsopen",
            SYS_fsopen,
            permission(OP_MOUNT, AGENT_ALLOW_MOUNT, 1, 0)
        ),
        w!(
            "fsmount",
            SYS_fsmount,
            permission(OP_MOUNT, AGENT_ALLOW_MOUNT, 1, 0)
        ),
        w!(
            "chroot",
            SYS_chroot,
            permission(OP_CHROOT, AGENT_ALLOW_CHROOT, N, 0)
        ),
        w!(
            "pivot_root",
            SYS_pivot_root,
            permission(OP_CHROOT, AGENT_ALLOW_CHROOT, N, 0)
        ),
        w!(
            "unshare",
            SYS_unshare,
            permission(OP_NAMESPACE, AGENT_ALLOW_USERNS, 0, CLONE_NEW_PATHS)
        ),
        w!(
            "setns",
            SYS_setns,
            permission(OP_NAMESPACE, AGENT_ALLOW_USERNS, 1, 0)
        ),
        w!(
            "clone",
            SYS_clone,
            permission(OP_NAMESPACE, AGENT_ALLOW_USERNS, 0, CLONE_NEW_PATHS)
        ),
        // Socket kinds beyond TCP/UDP/unix/netlink-route, and listening, unless `net.sockets`
        // / `net.listen` allow them (hooks/sockets.rs; socketpair makes only unix sockets on
        // the families a process can use).
        w!(
            "socket",
            SYS_socket,
            process(OP_SOCKET, PROC_SOCKET, N, 0, N, 0)
        ),
        w!(
            "listen",
            SYS_listen,
            process(OP_LISTEN, PROC_LISTEN, N, 0, N, 0)
        ),
        w!(
            "clone3",
            SYS_clone3,
            process(
                OP_NAMESPACE,
                PROC_PERMISSION_CLONE3,
                N,
                AGENT_ALLOW_USERNS,
                0,
                CLONE_NEW_PATHS
            )
        ),
    ]
}

/// Calls into other processes, terminals, mounts and namespaces (the `process-tracepoints`
/// group), as opposed to file changes and unix sockets.
pub fn is_process(shape: &SyscallShape) -> bool {
    shape.kind == SHAPE_PROCESS || shape.op == OP_PTRACE
}

/// The programs that handle a shape (paths: one per path argument).
pub fn programs_for(shape: &SyscallShape) -> Vec<&'static str> {
    match shape.kind {
        SHAPE_FD | SHAPE_CALL => vec![PROG_FB_SYS_ENTER_FD],
        SHAPE_PROCESS if matches!(shape.proc_kind, PROC_SOCKET | PROC_LISTEN) => {
            vec![PROG_FB_SYS_ENTER_NET]
        }
        SHAPE_PROCESS => vec![PROG_FB_SYS_ENTER_PROC],
        SHAPE_SOCKADDR | SHAPE_MSGHDR | SHAPE_MMSGHDR => vec![PROG_FB_SYS_ENTER_SOCK],
        SHAPE_OPEN | SHAPE_OPEN_HOW | SHAPE_EXEC => Vec::new(),
        _ => {
            let mut v = Vec::new();
            if shape.path_arg != NO_ARG && shape.second_only == 0 {
                v.push(PROG_FB_SYS_ENTER_PATH1);
            }
            if shape.path2_arg != NO_ARG {
                v.push(PROG_FB_SYS_ENTER_PATH2);
            }
            v
        }
    }
}

/// Whether the refused-syscall observer watches this syscall: every open, exec and path
/// change (what Landlock can refuse).
pub fn refusable(shape: &SyscallShape) -> bool {
    matches!(
        shape.kind,
        SHAPE_PATHS | SHAPE_OPEN | SHAPE_OPEN_HOW | SHAPE_EXEC
    )
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_watched_syscall_has_one_number_and_fits_the_map() {
        let list = watched();
        let mut nrs: Vec<i64> = list.iter().map(|w| w.nr).collect();
        nrs.sort_unstable();
        nrs.dedup();
        assert_eq!(nrs.len(), list.len(), "a syscall number watched twice");
        // FB_SYSCALLS holds 64 entries (enforcer-ebpf/src/maps.rs).
        assert!(list.len() <= 64, "{} watched syscalls", list.len());
    }

    #[test]
    fn every_way_to_send_to_a_unix_address_and_to_open_by_handle_is_watched() {
        let list = watched();
        let shape = |name: &str| {
            list.iter()
                .find(|w| w.name == name)
                .unwrap_or_else(|| panic!("{name} is watched"))
                .shape
        };
        for (name, kind) in [
            ("connect", SHAPE_SOCKADDR),
            ("sendto", SHAPE_SOCKADDR),
            ("sendmsg", SHAPE_MSGHDR),
            ("sendmmsg", SHAPE_MMSGHDR),
        ] {
            assert_eq!(shape(name).kind, kind, "{name}");
            assert_eq!(
                programs_for(&shape(name)),
                vec![PROG_FB_SYS_ENTER_SOCK],
                "{name}"
            );
        }
        let by_handle = shape("open_by_handle_at");
        assert_eq!((by_handle.kind, by_handle.op), (SHAPE_CALL, OP_OPEN));
        assert_eq!(programs_for(&by_handle), vec![PROG_FB_SYS_ENTER_FD]);
    }

    #[test]
    fn process_calls_go_to_the_process_program() {
        for w in watched() {
            let progs = programs_for(&w.shape);
            if matches!(w.shape.proc_kind, PROC_SOCKET | PROC_LISTEN) {
                assert_eq!(progs, vec![PROG_FB_SYS_ENTER_NET], "{}", w.name);
            } else if w.shape.kind == SHAPE_PROCESS {
                assert_eq!(progs, vec![PROG_FB_SYS_ENTER_PROC], "{}", w.name);
                assert!(is_process(&w.shape), "{}", w.name);
            }
            if w.shape.proc_kind == PROC_PERMISSION || w.shape.proc_kind == PROC_PERMISSION_CLONE3 {
                assert_ne!(
                    w.shape.allow & AGENT_ALLOW_MASK,
                    0,
                    "{}: an allow bit",
                    w.name
                );
            }
        }
        let names: Vec<&str> = watched()
            .iter()
            .filter(|w| is_process(&w.shape))
            .map(|w| w.name)
            .collect();
        for want in [
            "ptrace",
            "process_vm_readv",
            "process_vm_writev",
            "pidfd_getfd",
            "ioctl",
            "mount",
            "umount",
            "open_tree",
            "move_mount",
            "fsopen",
            "fsmount",
            "chroot",
            "pivot_root",
            "unshare",
            "setns",
            "clone",
            "clone3",
        ] {
            assert!(names.contains(&want), "{want} is watched");
        }
    }
}
