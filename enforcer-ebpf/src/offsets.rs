//! Kernel struct offsets, read from the running kernel's BTF by user space and written into
//! these read-only globals before load (aya freezes .rodata, so the verifier sees constants).
//! Nothing here is compiled in for one kernel.

macro_rules! offsets {
    ($($name:ident),* $(,)?) => {
        $(
            #[unsafe(no_mangle)]
            static $name: u32 = 0;
        )*
        pub mod get {
            $(
                #[inline(always)]
                #[allow(non_snake_case)]
                pub fn $name() -> usize {
                    unsafe { core::ptr::read_volatile(&super::$name) as usize }
                }
            )*
        }
    };
}

offsets!(
    OFF_FILE_F_PATH,
    OFF_FILE_F_MODE,
    OFF_FILE_F_FLAGS,
    OFF_BPRM_FILE,
    OFF_BPRM_BUF,
    OFF_SOCKET_TYPE,
    // Sockets (hooks/sockets.rs, hooks/net.rs): struct socket's sk, struct sock's protocol and
    // its sock_common's family, bound port and addresses.
    OFF_SOCKET_SK,
    OFF_SOCK_PROTOCOL,
    OFF_SOCK_FAMILY,
    OFF_SOCK_NUM,
    OFF_SOCK_RCV_SADDR,
    OFF_SOCK_V6_RCV_SADDR,
    OFF_FILE_PRIVATE_DATA,
    OFF_FILE_F_INODE,
    // Objects without a path (pathless.rs): the mount's flags, the file system's name.
    OFF_VFSMOUNT_MNT_FLAGS,
    OFF_DENTRY_D_INODE,
    OFF_VFSMOUNT_MNT_SB,
    OFF_SB_S_TYPE,
    OFF_FSTYPE_NAME,
    OFF_INODE_I_MODE,
    OFF_MSGHDR_MSG_NAME,
    OFF_MSGHDR_MSG_NAMELEN,
    OFF_TASK_REAL_PARENT,
    OFF_TASK_TGID,
    // Process-access targets (hooks/process_access.rs): the target's thread id and name.
    OFF_TASK_PID,
    OFF_TASK_COMM,
    OFF_TASK_FILES,
    OFF_FILES_FDT,
    OFF_FDTABLE_FD,
    OFF_FDTABLE_MAX_FDS,
    OFF_TASK_MM,
    OFF_MM_EXE_FILE,
    // The dentry walk (dentry_path.rs).
    OFF_TASK_FS,
    OFF_FS_ROOT,
    OFF_FS_PWD,
    OFF_PATH_MNT,
    OFF_PATH_DENTRY,
    OFF_MOUNT_MNT,
    OFF_MOUNT_PARENT,
    OFF_MOUNT_MOUNTPOINT,
    OFF_VFSMOUNT_ROOT,
    OFF_DENTRY_PARENT,
    OFF_DENTRY_NAME_LEN,
    OFF_DENTRY_NAME_PTR,
    TP_FORK_CHILD_PID,
    TP_EXEC_OLD_PID,
    TP_SYS_EXIT_RET,
    TP_SYS_ENTER_NR,
    TP_SYS_ENTER_ARGS,
    // signal:signal_generate (hooks/seccomp_kill.rs).
    TP_SIGNAL_SIG,
    TP_SIGNAL_ERRNO,
    TP_SIGNAL_CODE,
);
