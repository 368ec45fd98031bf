//! Every program of the eBPF object by its name in the object (the function name of its entry in
//! `enforcer-ebpf/src/hooks/`; the `#[lsm]`/`#[tracepoint]` macros take the name from the
//! function, so the eBPF side cannot use these constants: `enforcer`'s object-check unit test
//! (`kernel::object`) holds the object to this list).

// BPF LSM hooks (`hooks/file_open.rs`, `exec.rs`, `net.rs`, `path_ops.rs`, `daemon_guard.rs`, `bpf_call.rs`).
pub const PROG_FILE_OPEN: &str = "file_open";
pub const PROG_BPRM_CHECK_SECURITY: &str = "bprm_check_security";
pub const PROG_SOCKET_CONNECT: &str = "socket_connect";
pub const PROG_SOCKET_SENDMSG: &str = "socket_sendmsg";
pub const PROG_SOCKET_CREATE: &str = "socket_create";
pub const PROG_SOCKET_LISTEN: &str = "socket_listen";
pub const PROG_PATH_UNLINK: &str = "path_unlink";
pub const PROG_PATH_RMDIR: &str = "path_rmdir";
pub const PROG_PATH_MKDIR: &str = "path_mkdir";
pub const PROG_PATH_MKNOD: &str = "path_mknod";
pub const PROG_PATH_RENAME: &str = "path_rename";
pub const PROG_PATH_LINK: &str = "path_link";
pub const PROG_PATH_SYMLINK: &str = "path_symlink";
pub const PROG_PATH_TRUNCATE: &str = "path_truncate";
pub const PROG_PATH_CHMOD: &str = "path_chmod";
pub const PROG_PATH_CHOWN: &str = "path_chown";
pub const PROG_TASK_KILL: &str = "task_kill";
pub const PROG_PTRACE_ACCESS_CHECK: &str = "ptrace_access_check";
pub const PROG_PTRACE_TRACEME: &str = "ptrace_traceme";
pub const PROG_FILE_IOCTL: &str = "file_ioctl";
pub const PROG_FILE_IOCTL_COMPAT: &str = "file_ioctl_compat";
pub const PROG_SB_MOUNT: &str = "sb_mount";
pub const PROG_SB_UMOUNT: &str = "sb_umount";
pub const PROG_MOVE_MOUNT: &str = "move_mount";
pub const PROG_SB_PIVOTROOT: &str = "sb_pivotroot";
pub const PROG_PATH_CHROOT: &str = "path_chroot";
pub const PROG_USERNS_CREATE: &str = "userns_create";
pub const PROG_FILE_TRUNCATE: &str = "file_truncate";
pub const PROG_BPF_CALL3: &str = "bpf_call3";
pub const PROG_BPF_CALL4: &str = "bpf_call4";

// Identity tracepoints (`hooks/proc.rs`), attached by both backends.
pub const PROG_SCHED_PROCESS_FORK: &str = "sched_process_fork";
pub const PROG_SCHED_PROCESS_EXEC: &str = "sched_process_exec";
pub const PROG_SCHED_PROCESS_EXIT: &str = "sched_process_exit";

// The fallback's cgroup sock_addr programs (`hooks/cgroup_net.rs`).
pub const PROG_CG_CONNECT4: &str = "cg_connect4";
pub const PROG_CG_CONNECT6: &str = "cg_connect6";
pub const PROG_CG_SENDMSG4: &str = "cg_sendmsg4";
pub const PROG_CG_SENDMSG6: &str = "cg_sendmsg6";

// The fallback's tracepoints (`hooks/observe.rs`, `hooks/observe_syscalls.rs`).
pub const PROG_FB_EXIT_OPEN: &str = "fb_exit_open";
pub const PROG_FB_SCHED_EXEC: &str = "fb_sched_exec";
pub const PROG_FB_SYS_ENTER_PATH1: &str = "fb_sys_enter_path1";
pub const PROG_FB_SYS_ENTER_PATH2: &str = "fb_sys_enter_path2";
pub const PROG_FB_SYS_ENTER_FD: &str = "fb_sys_enter_fd";
pub const PROG_FB_SYS_ENTER_SOCK: &str = "fb_sys_enter_sock";
// Calls into other processes, terminals, mounts, namespaces (`hooks/observe_process.rs`).
pub const PROG_FB_SYS_ENTER_PROC: &str = "fb_sys_enter_proc";
/// socket and listen (hooks/sockets.rs).
pub const PROG_FB_SYS_ENTER_NET: &str = "fb_sys_enter_net";
// What the kernel refused before it happened (the Landlock envelope; `hooks/refused.rs`).
pub const PROG_FB_STASH: &str = "fb_stash";
pub const PROG_FB_REFUSED: &str = "fb_refused";
pub const PROG_FB_REFUSED2: &str = "fb_refused2";
// The launcher's seccomp kills made events (`hooks/seccomp_kill.rs`).
pub const PROG_FB_SECCOMP_KILL: &str = "fb_seccomp_kill";

/// Every program of the shipped object, and nothing else.
pub const PROGRAMS: &[&str] = &[
    PROG_FILE_OPEN,
    PROG_BPRM_CHECK_SECURITY,
    PROG_SOCKET_CONNECT,
    PROG_SOCKET_SENDMSG,
    PROG_SOCKET_CREATE,
    PROG_SOCKET_LISTEN,
    PROG_PATH_UNLINK,
    PROG_PATH_RMDIR,
    PROG_PATH_MKDIR,
    PROG_PATH_MKNOD,
    PROG_PATH_RENAME,
    PROG_PATH_LINK,
    PROG_PATH_SYMLINK,
    PROG_PATH_TRUNCATE,
    PROG_PATH_CHMOD,
    PROG_PATH_CHOWN,
    PROG_TASK_KILL,
    PROG_PTRACE_ACCESS_CHECK,
    PROG_PTRACE_TRACEME,
    PROG_FILE_IOCTL,
    PROG_FILE_IOCTL_COMPAT,
    PROG_SB_MOUNT,
    PROG_SB_UMOUNT,
    PROG_MOVE_MOUNT,
    PROG_SB_PIVOTROOT,
    PROG_PATH_CHROOT,
    PROG_USERNS_CREATE,
    PROG_FILE_TRUNCATE,
    PROG_BPF_CALL3,
    PROG_BPF_CALL4,
    PROG_SCHED_PROCESS_FORK,
    PROG_SCHED_PROCESS_EXEC,
    PROG_SCHED_PROCESS_EXIT,
    PROG_CG_CONNECT4,
    PROG_CG_CONNECT6,
    PROG_CG_SENDMSG4,
    PROG_CG_SENDMSG6,
    PROG_FB_EXIT_OPEN,
    PROG_FB_SCHED_EXEC,
    PROG_FB_SYS_ENTER_PATH1,
    PROG_FB_SYS_ENTER_PATH2,
    PROG_FB_SYS_ENTER_FD,
    PROG_FB_SYS_ENTER_SOCK,
    PROG_FB_SYS_ENTER_PROC,
    PROG_FB_SYS_ENTER_NET,
    PROG_FB_STASH,
    PROG_FB_REFUSED,
    PROG_FB_REFUSED2,
    PROG_FB_SECCOMP_KILL,
];

/// Test-only tracepoints (`hooks/verifier_probe.rs`), built only with enforcer-ebpf's
/// `verifier-probe` feature, into the object tests/build.rs makes: never shipped.
pub const PROG_VERIFIER_PROBE: &str = "verifier_probe";
pub const PROG_VERIFIER_PROBE_WALK: &str = "verifier_probe_walk";
