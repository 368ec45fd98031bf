//! The BPF LSM backend: LSM hooks decide with EPERM, tracepoints keep process identity. What it
//! shares with the fallback (loading, pins, events, process tables) is in loaded.rs.

use aya::{
    programs::{links::FdLink, Lsm},
    Btf, Ebpf,
};
use enforcer_common::*;

use super::{
    loaded::{self, attach_error, attach_identity, keep, Driver, Loaded, IDENTITY_TRACEPOINTS},
    offsets,
    pin::{Adoption, PinDir},
    BackendStatus, KernelError, LoadOptions,
};

/// (program name in the object, LSM hook)
pub const LSM_PROGRAMS: &[(&str, &str)] = &[
    (PROG_FILE_OPEN, "file_open"),
    (PROG_BPRM_CHECK_SECURITY, "bprm_check_security"),
    (PROG_SOCKET_CONNECT, "socket_connect"),
    (PROG_SOCKET_SENDMSG, "socket_sendmsg"),
    // Socket kinds beyond TCP/UDP/unix, and listening (hooks/sockets.rs).
    (PROG_SOCKET_CREATE, "socket_create"),
    (PROG_SOCKET_LISTEN, "socket_listen"),
    // Writing is more than opening for write (hooks/path_ops.rs).
    (PROG_PATH_UNLINK, "path_unlink"),
    (PROG_PATH_RMDIR, "path_rmdir"),
    (PROG_PATH_MKDIR, "path_mkdir"),
    (PROG_PATH_MKNOD, "path_mknod"),
    (PROG_PATH_RENAME, "path_rename"),
    (PROG_PATH_LINK, "path_link"),
    (PROG_PATH_SYMLINK, "path_symlink"),
    (PROG_PATH_TRUNCATE, "path_truncate"),
    (PROG_PATH_CHMOD, "path_chmod"),
    (PROG_PATH_CHOWN, "path_chown"),
    // No agent may signal the daemon (hooks/daemon_guard.rs).
    (PROG_TASK_KILL, "task_kill"),
    // No agent may act through a process outside its chain (hooks/process_access.rs).
    (PROG_PTRACE_ACCESS_CHECK, "ptrace_access_check"),
    (PROG_PTRACE_TRACEME, "ptrace_traceme"),
    (PROG_FILE_IOCTL, "file_ioctl"),
    // Mounts and roots, unless [process] allows them (hooks/mounts.rs).
    (PROG_SB_MOUNT, "sb_mount"),
    (PROG_SB_UMOUNT, "sb_umount"),
    (PROG_MOVE_MOUNT, "move_mount"),
    (PROG_SB_PIVOTROOT, "sb_pivotroot"),
    (PROG_PATH_CHROOT, "path_chroot"),
];

/// LSM programs for hooks that not every supported kernel has, attached where its BTF has the
/// hook: `file_truncate` (6.2+; 6.1's ftruncate calls path_truncate instead).
pub const OPTIONAL_LSM_PROGRAMS: &[(&str, &str)] = &[
    (PROG_FILE_TRUNCATE, "file_truncate"),
    (PROG_BPF_CALL3, "bpf"),
    (PROG_BPF_CALL4, "bpf"),
    // 32-bit ioctls (kernels with the hook; older ones pass them to file_ioctl).
    (PROG_FILE_IOCTL_COMPAT, "file_ioctl_compat"),
    (PROG_USERNS_CREATE, "userns_create"),
];

/// The `bpf` hook exists in two shapes (3 or 4 arguments): only the program built for this
/// kernel's shape can read the previous verdict.
fn shape_fits(prog: &str, hook: &str) -> Result<bool, KernelError> {
    let want = match prog {
        PROG_BPF_CALL3 => 3,
        PROG_BPF_CALL4 => 4,
        _ => return Ok(true),
    };
    let btf = offsets::kernel_btf()?;
    Ok(offsets::lsm_hook_nargs(btf, hook)? == want)
}

/// Does this kernel have the LSM hook `hook` (its `bpf_lsm_<hook>` attach point in BTF)?
fn kernel_has_hook(hook: &str) -> Result<bool, KernelError> {
    let btf = offsets::kernel_btf()?;
    Ok(btf
        .resolve_types_by_name(&format!("bpf_lsm_{hook}"))
        .is_ok_and(|t| !t.is_empty()))
}

pub struct LsmBackend {
    loaded: Loaded,
    features: Vec<super::Feature>,
}

/// Every program this backend attaches (LSM hooks and identity tracepoints).
pub fn program_names() -> Vec<&'static str> {
    LSM_PROGRAMS
        .iter()
        .map(|(p, _)| *p)
        .chain(IDENTITY_TRACEPOINTS.iter().map(|(p, _, _)| *p))
        .collect()
}

/// Load and attach the LSM programs `want` selects. On kernels where BPF LSM is unusable this
/// fails at the first program with the kernel's reason (e.g. EPERM before the verifier runs on
/// the host).
pub fn attach_lsm(
    ebpf: &mut Ebpf,
    pins: Option<&PinDir>,
    want: &dyn Fn(&str) -> bool,
) -> Result<(), KernelError> {
    let btf = Btf::from_sys_fs().map_err(|e| KernelError::Load(format!("kernel BTF: {e}")))?;
    let mut programs: Vec<&(&str, &str)> = LSM_PROGRAMS.iter().collect();
    for optional in OPTIONAL_LSM_PROGRAMS {
        if kernel_has_hook(optional.1)? && shape_fits(optional.0, optional.1)? {
            programs.push(optional);
        }
    }
    for (prog, hook) in programs.into_iter().filter(|(p, _)| want(p)) {
        let p: &mut Lsm = ebpf
            .program_mut(prog)
            .ok_or_else(|| KernelError::Load(format!("program {prog} missing from the object")))?
            .try_into()
            .map_err(|e| KernelError::Load(format!("{prog}: {e}")))?;
        p.load(hook, &btf).map_err(|e| attach_error(prog, e))?;
        let id = p.attach().map_err(|e| attach_error(prog, e))?;
        let link = match pins {
            Some(_) => Some(FdLink::from(
                p.take_link(id).map_err(|e| attach_error(prog, e))?,
            )),
            None => None,
        };
        keep(ebpf, pins, prog, link)?;
    }
    Ok(())
}

impl LsmBackend {
    /// Load, attach (or adopt what a previous daemon pinned: see [`loaded::install`]) and prove
    /// the programs run.
    pub fn load(opts: &LoadOptions) -> Result<Self, KernelError> {
        loaded::install(
            opts,
            "lsm",
            &program_names(),
            &|ebpf, pins, want| {
                attach_identity(ebpf, pins, want)?;
                attach_lsm(ebpf, pins, want)
            },
            &|ebpf, (), pinned, adoption| Self::running(ebpf, pinned, adoption),
        )
    }

    /// Prove the attached programs run, then take the ring buffer.
    fn running(
        mut ebpf: Ebpf,
        pinned: bool,
        adoption: Option<Adoption>,
    ) -> Result<Self, KernelError> {
        // Attached is not running (a kernel without `bpf` in lsm= accepts the programs and never
        // calls them): never claim enforcement a canary process has not seen.
        super::canary::canary(&mut ebpf, super::canary::CanaryOp::Open)
            .map_err(KernelError::Unsupported)?;
        let mut features = vec![
            ("bpf-lsm".to_string(), Ok(())),
            ("tracepoints".to_string(), Ok(())),
        ];
        features.extend(process_features()?);
        Ok(LsmBackend {
            loaded: Loaded::new(ebpf, pinned, adoption)?,
            features,
        })
    }

    /// The ring buffer's fd, for async readiness (epoll) in the daemon.
    pub fn events_fd(&self) -> i32 {
        self.loaded.events_fd()
    }
}

/// What the LSM backend does about other processes, terminals, mounts and namespaces: one
/// feature line each, with what this kernel lacks (status, startup log).
fn process_features() -> Result<Vec<super::Feature>, KernelError> {
    let userns = if kernel_has_hook("userns_create")? {
        Ok(())
    } else {
        Err("this kernel has no userns_create LSM hook: agents may create user namespaces (mounts and chroots inside them are still refused)".to_string())
    };
    Ok(vec![
        ("process-access".to_string(), Ok(())),
        ("tty-inject".to_string(), Ok(())),
        ("mounts".to_string(), Ok(())),
        ("userns-create".to_string(), userns),
        ("socket-kinds".to_string(), Ok(())),
        ("listen".to_string(), Ok(())),
    ])
}

impl Driver for LsmBackend {
    fn loaded(&self) -> &Loaded {
        &self.loaded
    }

    fn loaded_mut(&mut self) -> &mut Loaded {
        &mut self.loaded
    }

    fn status(&self) -> BackendStatus {
        BackendStatus {
            backend: "lsm".into(),
            kernel: super::kernel_release(),
            features: self.features.clone(),
            rules: super::rule_status(self.loaded.policy.as_deref(), super::Enforcement::Enforced),
        }
    }
}
