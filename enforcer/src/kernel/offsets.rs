//! Kernel struct offsets and tracepoint field offsets, read from the running kernel (BTF and
//! tracefs format files) and handed to the eBPF programs as read-only globals.

use std::{path::Path, sync::OnceLock};

use btf_rs::{Btf, Type};

use super::KernelError;
use crate::paths;

/// (global name in the eBPF object, value)
pub type Offsets = Vec<(&'static str, u32)>;

fn err(what: impl std::fmt::Display) -> KernelError {
    KernelError::Load(format!("kernel BTF: {what}"))
}

/// The running kernel's BTF, read and parsed once per process. The file is read whole into
/// memory: btf-rs' file reader issues one `lseek` per small read (over a million system calls
/// for one parse), which cost seconds per program load under emulation, and several callers
/// (offsets, hook presence, hook shapes) need it for every load.
pub fn kernel_btf() -> Result<&'static Btf, KernelError> {
    static KERNEL_BTF: OnceLock<Result<Btf, String>> = OnceLock::new();
    KERNEL_BTF
        .get_or_init(|| {
            let bytes = std::fs::read(paths::VMLINUX_BTF)
                .map_err(|e| format!("{}: {e}", paths::VMLINUX_BTF))?;
            Btf::from_bytes(&bytes).map_err(|e| format!("{}: {e}", paths::VMLINUX_BTF))
        })
        .as_ref()
        .map_err(err)
}

/// Byte offset of `member` in `struct name`, searching anonymous struct/union members too.
fn member_offset(btf: &Btf, strukt: &str, member: &str) -> Result<u32, KernelError> {
    let types = btf
        .resolve_types_by_name(strukt)
        .map_err(|e| err(format!("struct {strukt}: {e}")))?;
    for ty in types {
        if let Type::Struct(s) = ty {
            if let Some(bits) = find_member(btf, &s.members, member, 0)? {
                return Ok(bits / 8);
            }
        }
    }
    Err(err(format!("struct {strukt} has no member {member}")))
}

fn find_member(
    btf: &Btf,
    members: &[btf_rs::Member],
    want: &str,
    base: u32,
) -> Result<Option<u32>, KernelError> {
    for m in members {
        let name = btf.resolve_name(m).unwrap_or_default();
        let off = base + m.bit_offset();
        if name == want {
            return Ok(Some(off));
        }
        if name.is_empty() {
            // Anonymous struct or union: look inside.
            let mut ty = btf.resolve_chained_type(m).map_err(err)?;
            loop {
                match ty {
                    Type::Struct(ref s) | Type::Union(ref s) => {
                        if let Some(found) = find_member(btf, &s.members, want, off)? {
                            return Ok(Some(found));
                        }
                        break;
                    }
                    Type::Typedef(ref t) => ty = btf.resolve_chained_type(t).map_err(err)?,
                    Type::Const(ref t) => ty = btf.resolve_chained_type(t).map_err(err)?,
                    Type::Volatile(ref t) => ty = btf.resolve_chained_type(t).map_err(err)?,
                    _ => break,
                }
            }
        }
    }
    Ok(None)
}

/// Offset of `field` in a tracepoint's record, from tracefs's format file.
fn tracepoint_field(category: &str, name: &str, field: &str) -> Result<u32, KernelError> {
    let path = Path::new(paths::TRACEFS)
        .join("events")
        .join(category)
        .join(name)
        .join("format");
    let text = std::fs::read_to_string(&path)
        .map_err(|e| KernelError::Load(format!("{}: {e} (is tracefs mounted?)", path.display())))?;
    for line in text.lines() {
        let line = line.trim();
        let Some(rest) = line.strip_prefix("field:") else {
            continue;
        };
        let mut decl_and_rest = rest.splitn(2, ';');
        let decl = decl_and_rest.next().unwrap_or("");
        let ident = decl
            .rsplit(|c: char| c.is_whitespace() || c == '*')
            .next()
            .unwrap_or("");
        if ident != field {
            continue;
        }
        let offset = line
            .split(';')
            .find_map(|part| part.trim().strip_prefix("offset:"))
            .ok_or_else(|| {
                KernelError::Load(format!("{}: no offset for {field}", path.display()))
            })?;
        return offset
            .parse()
            .map_err(|e| KernelError::Load(format!("{}: offset of {field}: {e}", path.display())));
    }
    Err(KernelError::Load(format!(
        "{}: no field {field}",
        path.display()
    )))
}

/// How many arguments the LSM hook `hook` has here (its `bpf_lsm_<hook>` prototype): a BPF LSM
/// program finds the previous program's verdict after them.
pub fn lsm_hook_nargs(btf: &Btf, hook: &str) -> Result<u32, KernelError> {
    let name = format!("bpf_lsm_{hook}");
    let types = btf
        .resolve_types_by_name(&name)
        .map_err(|e| err(format!("{name}: {e}")))?;
    for ty in types {
        if let Type::Func(f) = ty {
            if let Type::FuncProto(proto) = btf.resolve_chained_type(&f).map_err(err)? {
                return Ok(proto.parameters.len() as u32);
            }
        }
    }
    Err(err(format!("{name} is not a function")))
}

/// Offset in `struct sock` of a member of its embedded `struct sock_common`.
fn sock_common(btf: &Btf, member: &str) -> Result<u32, KernelError> {
    Ok(member_offset(btf, "sock", "__sk_common")? + member_offset(btf, "sock_common", member)?)
}

/// Everything the eBPF programs need from this kernel.
pub fn read() -> Result<Offsets, KernelError> {
    let btf = kernel_btf()?;
    Ok(vec![
        ("OFF_FILE_F_PATH", member_offset(btf, "file", "f_path")?),
        ("OFF_FILE_F_MODE", member_offset(btf, "file", "f_mode")?),
        ("OFF_FILE_F_FLAGS", member_offset(btf, "file", "f_flags")?),
        ("OFF_BPRM_FILE", member_offset(btf, "linux_binprm", "file")?),
        ("OFF_BPRM_BUF", member_offset(btf, "linux_binprm", "buf")?),
        ("OFF_SOCKET_TYPE", member_offset(btf, "socket", "type")?),
        ("OFF_SOCKET_SK", member_offset(btf, "socket", "sk")?),
        (
            "OFF_SOCK_PROTOCOL",
            member_offset(btf, "sock", "sk_protocol")?,
        ),
        ("OFF_SOCK_FAMILY", sock_common(btf, "skc_family")?),
        ("OFF_SOCK_NUM", sock_common(btf, "skc_num")?),
        ("OFF_SOCK_RCV_SADDR", sock_common(btf, "skc_rcv_saddr")?),
        (
            "OFF_SOCK_V6_RCV_SADDR",
            sock_common(btf, "skc_v6_rcv_saddr")?,
        ),
        (
            "OFF_FILE_PRIVATE_DATA",
            member_offset(btf, "file", "private_data")?,
        ),
        ("OFF_FILE_F_INODE", member_offset(btf, "file", "f_inode")?),
        (
            "OFF_VFSMOUNT_MNT_FLAGS",
            member_offset(btf, "vfsmount", "mnt_flags")?,
        ),
        (
            "OFF_VFSMOUNT_MNT_SB",
            member_offset(btf, "vfsmount", "mnt_sb")?,
        ),
        (
            "OFF_DENTRY_D_INODE",
            member_offset(btf, "dentry", "d_inode")?,
        ),
        (
            "OFF_SB_S_TYPE",
            member_offset(btf, "super_block", "s_type")?,
        ),
        (
            "OFF_FSTYPE_NAME",
            member_offset(btf, "file_system_type", "name")?,
        ),
        ("OFF_INODE_I_MODE", member_offset(btf, "inode", "i_mode")?),
        (
            "OFF_MSGHDR_MSG_NAME",
            member_offset(btf, "msghdr", "msg_name")?,
        ),
        (
            "OFF_MSGHDR_MSG_NAMELEN",
            member_offset(btf, "msghdr", "msg_namelen")?,
        ),
        (
            "OFF_TASK_REAL_PARENT",
            member_offset(btf, "task_struct", "real_parent")?,
        ),
        ("OFF_TASK_TGID", member_offset(btf, "task_struct", "tgid")?),
        ("OFF_TASK_PID", member_offset(btf, "task_struct", "pid")?),
        ("OFF_TASK_COMM", member_offset(btf, "task_struct", "comm")?),
        (
            "OFF_TASK_FILES",
            member_offset(btf, "task_struct", "files")?,
        ),
        ("OFF_FILES_FDT", member_offset(btf, "files_struct", "fdt")?),
        ("OFF_FDTABLE_FD", member_offset(btf, "fdtable", "fd")?),
        (
            "OFF_FDTABLE_MAX_FDS",
            member_offset(btf, "fdtable", "max_fds")?,
        ),
        ("OFF_TASK_MM", member_offset(btf, "task_struct", "mm")?),
        (
            "OFF_MM_EXE_FILE",
            member_offset(btf, "mm_struct", "exe_file")?,
        ),
        // The dentry walk: the qstr fields are reached through `dentry.d_name`.
        ("OFF_TASK_FS", member_offset(btf, "task_struct", "fs")?),
        ("OFF_FS_ROOT", member_offset(btf, "fs_struct", "root")?),
        ("OFF_FS_PWD", member_offset(btf, "fs_struct", "pwd")?),
        ("OFF_PATH_MNT", member_offset(btf, "path", "mnt")?),
        ("OFF_PATH_DENTRY", member_offset(btf, "path", "dentry")?),
        ("OFF_MOUNT_MNT", member_offset(btf, "mount", "mnt")?),
        (
            "OFF_MOUNT_PARENT",
            member_offset(btf, "mount", "mnt_parent")?,
        ),
        (
            "OFF_MOUNT_MOUNTPOINT",
            member_offset(btf, "mount", "mnt_mountpoint")?,
        ),
        (
            "OFF_VFSMOUNT_ROOT",
            member_offset(btf, "vfsmount", "mnt_root")?,
        ),
        (
            "OFF_DENTRY_PARENT",
            member_offset(btf, "dentry", "d_parent")?,
        ),
        (
            "OFF_DENTRY_NAME_LEN",
            member_offset(btf, "dentry", "d_name")? + member_offset(btf, "qstr", "len")?,
        ),
        (
            "OFF_DENTRY_NAME_PTR",
            member_offset(btf, "dentry", "d_name")? + member_offset(btf, "qstr", "name")?,
        ),
        (
            "TP_FORK_CHILD_PID",
            tracepoint_field("sched", "sched_process_fork", "child_pid")?,
        ),
        (
            "TP_EXEC_OLD_PID",
            tracepoint_field("sched", "sched_process_exec", "old_pid")?,
        ),
        (
            "TP_SYS_EXIT_RET",
            tracepoint_field("syscalls", "sys_exit_openat", "ret")?,
        ),
        // sys_enter_* records are `struct syscall_trace_enter { ...; int nr; unsigned long args[]; }`:
        // the first argument's offset (unlinkat's `dfd`) is where args[] starts.
        (
            "TP_SYS_ENTER_NR",
            tracepoint_field("syscalls", "sys_enter_unlinkat", "__syscall_nr")?,
        ),
        (
            "TP_SYS_ENTER_ARGS",
            tracepoint_field("syscalls", "sys_enter_unlinkat", "dfd")?,
        ),
        // The launcher's seccomp kills (hooks/seccomp_kill.rs): the SIGSYS's number, si_errno
        // (the filter's SECCOMP_RET_DATA) and si_code.
        (
            "TP_SIGNAL_SIG",
            tracepoint_field("signal", "signal_generate", "sig")?,
        ),
        (
            "TP_SIGNAL_ERRNO",
            tracepoint_field("signal", "signal_generate", "errno")?,
        ),
        (
            "TP_SIGNAL_CODE",
            tracepoint_field("signal", "signal_generate", "code")?,
        ),
    ])
}
