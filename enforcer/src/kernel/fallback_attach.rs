//! What the fallback backend attaches, and attaching it (pinned in bpffs for the daemon, so
//! enforcement outlives it; unpinned for probes and tests).
//!
//! Every attachment has a pin name: the program name for the identity tracepoints and the
//! cgroup programs (attached once each), `<program>@<tracepoint>` for the programs attached to
//! several tracepoints.

use aya::{
    programs::{
        links::{CgroupAttachMode, FdLink},
        CgroupSockAddr, TracePoint,
    },
    Ebpf,
};
use enforcer_common::{
    PROG_CG_CONNECT4, PROG_CG_CONNECT6, PROG_CG_SENDMSG4, PROG_CG_SENDMSG6, PROG_FB_EXIT_OPEN,
    PROG_FB_REFUSED, PROG_FB_REFUSED2, PROG_FB_SCHED_EXEC, PROG_FB_SECCOMP_KILL, PROG_FB_STASH,
};

use super::{fallback_syscalls, loaded, pin::PinDir, KernelError};

/// Attachments fail or succeed as groups; only identity and network are essential.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Group {
    Identity,
    /// cgroup connect4/6, sendmsg4/6 at the cgroup2 root: EPERM for IPv4/IPv6.
    Network,
    /// Opens (sys_exit_open*) and execs (sched_process_exec).
    FileExec,
    /// sys_enter of unlink, rename, ... and of unix-socket connect/send.
    FileChange,
    /// sys_enter/sys_exit of opens, execs and path changes: what the kernel refused before it
    /// happened (the Landlock envelope's EACCES/EXDEV) becomes a `deny` event.
    Refused,
    /// sys_enter of ptrace, process_vm_*, pidfd_getfd, ioctl, mount calls, chroot,
    /// pivot_root, unshare, setns, clone/clone3 (hooks/observe_process.rs).
    Process,
    /// signal:signal_generate: the launcher's seccomp kills become events
    /// (hooks/seccomp_kill.rs, `kernel::seccomp`).
    SeccompKill,
}

impl Group {
    /// Every group, in attachment order.
    pub const ALL: [Group; 7] = [
        Group::Identity,
        Group::Network,
        Group::FileExec,
        Group::FileChange,
        Group::Refused,
        Group::Process,
        Group::SeccompKill,
    ];

    pub fn feature(self) -> &'static str {
        match self {
            Group::Identity => "identity-tracepoints",
            Group::Network => "cgroup-sock-addr",
            Group::FileExec => "file-exec-tracepoints",
            Group::FileChange => "file-change-tracepoints",
            Group::Refused => "refused-ops-tracepoints",
            Group::Process => "process-tracepoints",
            Group::SeccompKill => "seccomp-kill-tracepoint",
        }
    }
}

pub enum Hook {
    Tracepoint {
        category: &'static str,
        name: String,
    },
    CgroupRoot,
}

pub struct Attachment {
    pub prog: &'static str,
    pub hook: Hook,
    pub group: Group,
}

impl Attachment {
    pub fn pin_name(&self) -> String {
        match (&self.hook, self.group) {
            (
                Hook::Tracepoint { name, .. },
                Group::FileExec | Group::FileChange | Group::Refused | Group::Process,
            ) => {
                format!("{}@{name}", self.prog)
            }
            _ => self.prog.to_string(),
        }
    }
}

/// cgroup sock_addr programs (program name in the object), attached at the cgroup2 root.
pub const CGROUP_PROGRAMS: &[&str] = &[
    PROG_CG_CONNECT4,
    PROG_CG_CONNECT6,
    PROG_CG_SENDMSG4,
    PROG_CG_SENDMSG6,
];

/// (program, category, tracepoint) observing opens and execs. `fb_sched_exec` comes after the
/// identity programs (attachment order is run order): a non-leader thread's exec moves its
/// process-table entry first.
const FILE_TRACEPOINTS: &[(&str, &str, &str)] = &[
    (PROG_FB_EXIT_OPEN, "syscalls", "sys_exit_openat"),
    (PROG_FB_EXIT_OPEN, "syscalls", "sys_exit_openat2"),
    (PROG_FB_EXIT_OPEN, "syscalls", "sys_exit_open"),
    (PROG_FB_EXIT_OPEN, "syscalls", "sys_exit_creat"),
    (PROG_FB_SCHED_EXEC, "sched", "sched_process_exec"),
];

fn tracepoint_exists(category: &str, name: &str) -> bool {
    std::path::Path::new(crate::paths::TRACEFS)
        .join("events")
        .join(category)
        .join(name)
        .exists()
}

/// Everything, in attachment order, and the optional syscalls this kernel does not have.
pub fn attachments() -> (Vec<Attachment>, Vec<&'static str>) {
    let tp = |prog, category, name: &str, group| Attachment {
        prog,
        hook: Hook::Tracepoint {
            category,
            name: name.into(),
        },
        group,
    };
    let mut out: Vec<Attachment> = loaded::IDENTITY_TRACEPOINTS
        .iter()
        .map(|(p, c, n)| tp(p, c, n, Group::Identity))
        .collect();
    out.extend(CGROUP_PROGRAMS.iter().map(|p| Attachment {
        prog: p,
        hook: Hook::CgroupRoot,
        group: Group::Network,
    }));
    out.extend(
        FILE_TRACEPOINTS
            .iter()
            .map(|(p, c, n)| tp(p, c, n, Group::FileExec)),
    );
    let mut skipped = Vec::new();
    for w in fallback_syscalls::watched() {
        let name = format!("sys_enter_{}", w.name);
        if w.optional && !tracepoint_exists("syscalls", &name) {
            skipped.push(w.name);
            continue;
        }
        let group = if fallback_syscalls::is_process(&w.shape) {
            Group::Process
        } else {
            Group::FileChange
        };
        for prog in fallback_syscalls::programs_for(&w.shape) {
            out.push(tp(prog, "syscalls", &name, group));
        }
        if fallback_syscalls::refusable(&w.shape) {
            out.push(tp(PROG_FB_STASH, "syscalls", &name, Group::Refused));
            let exit = format!("sys_exit_{}", w.name);
            out.push(tp(PROG_FB_REFUSED, "syscalls", &exit, Group::Refused));
            if w.shape.path2_arg != enforcer_common::NO_ARG && w.shape.second_only == 0 {
                out.push(tp(PROG_FB_REFUSED2, "syscalls", &exit, Group::Refused));
            }
        }
    }
    out.push(tp(
        PROG_FB_SECCOMP_KILL,
        "signal",
        "signal_generate",
        Group::SeccompKill,
    ));
    (out, skipped)
}

fn attach_error(what: &str, e: impl std::fmt::Display) -> KernelError {
    KernelError::Attach {
        program: what.into(),
        reason: e.to_string(),
    }
}

/// Attach one; with `pins`, pin the program and the link (the link then outlives the daemon).
pub fn attach(ebpf: &mut Ebpf, a: &Attachment, pins: Option<&PinDir>) -> Result<(), KernelError> {
    let what = a.pin_name();
    let link: Option<FdLink> = match &a.hook {
        Hook::Tracepoint { category, name } => {
            let p: &mut TracePoint = ebpf
                .program_mut(a.prog)
                .ok_or_else(|| {
                    KernelError::Load(format!("program {} missing from the object", a.prog))
                })?
                .try_into()
                .map_err(|e| KernelError::Load(format!("{}: {e}", a.prog)))?;
            if p.fd().is_err() {
                p.load()
                    .map_err(|e| attach_error(&what, super::error_chain(&e)))?;
            }
            let id = p
                .attach(category, name)
                .map_err(|e| attach_error(&what, super::error_chain(&e)))?;
            match pins {
                Some(_) => {
                    let link = p.take_link(id).map_err(|e| attach_error(&what, e))?;
                    // Only BPF perf links (kernel 5.15+) can be pinned.
                    Some(FdLink::try_from(link).map_err(|e| {
                        attach_error(&what, format!("not pinnable (no BPF perf links?): {e}"))
                    })?)
                }
                None => None,
            }
        }
        Hook::CgroupRoot => {
            let root = super::cgroup2_mount()?;
            let dir = std::fs::File::open(&root).map_err(|e| {
                KernelError::Unsupported(format!("opening cgroup2 root {}: {e}", root.display()))
            })?;
            let p: &mut CgroupSockAddr = ebpf
                .program_mut(a.prog)
                .ok_or_else(|| {
                    KernelError::Load(format!("program {} missing from the object", a.prog))
                })?
                .try_into()
                .map_err(|e| KernelError::Load(format!("{}: {e}", a.prog)))?;
            if p.fd().is_err() {
                p.load()
                    .map_err(|e| attach_error(&what, super::error_chain(&e)))?;
            }
            // A BPF link (kernel >= 5.7) always coexists with other programs on the cgroup
            // (systemd, container runtimes) and takes no flags: the kernel rejects
            // BPF_F_ALLOW_MULTI there.
            let id = p.attach(&dir, CgroupAttachMode::Single).map_err(|e| {
                attach_error(
                    &what,
                    format!("{} at {}", super::error_chain(&e), root.display()),
                )
            })?;
            match pins {
                Some(_) => {
                    let link = p.take_link(id).map_err(|e| attach_error(&what, e))?;
                    Some(
                        FdLink::try_from(link)
                            .map_err(|e| attach_error(&what, format!("not pinnable: {e}")))?,
                    )
                }
                None => None,
            }
        }
    };
    if let (Some(pins), Some(link)) = (pins, link) {
        pins.pin_program(ebpf, a.prog)?;
        pins.pin_link(&what, link)?;
    }
    Ok(())
}

/// A file group and whether attaching it worked (the error text is what its rules report).
pub type GroupOutcome = (Group, Result<(), String>);

/// Attach what `want` selects (all, or on adoption the attachments whose pin is missing).
/// Identity and network failures are errors; a file group that fails is reported per group
/// (its rules then say unsupported). Returns the per-group outcome.
pub fn attach_all(
    ebpf: &mut Ebpf,
    pins: Option<&PinDir>,
    want: &dyn Fn(&str) -> bool,
) -> Result<Vec<GroupOutcome>, KernelError> {
    fallback_syscalls::fill(ebpf, &fallback_syscalls::watched())?;
    let (list, _) = attachments();
    let mut outcome: Vec<GroupOutcome> = Group::ALL.into_iter().map(|g| (g, Ok(()))).collect();
    for a in list.iter().filter(|a| want(&a.pin_name())) {
        let slot = outcome
            .iter_mut()
            .find(|(g, _)| *g == a.group)
            .expect("every group has a slot");
        if slot.1.is_err() {
            continue; // the group already failed here: its rules are reported unsupported
        }
        if let Err(e) = attach(ebpf, a, pins) {
            match a.group {
                Group::Identity | Group::Network => return Err(e),
                _ => slot.1 = Err(e.to_string()),
            }
        }
    }
    Ok(outcome)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `attach_all` keeps one outcome per group of `Group::ALL`: a group missing there would
    /// make the daemon panic at load.
    #[test]
    fn every_attachment_group_is_listed_once() {
        let (list, _) = attachments();
        for a in &list {
            assert_eq!(
                Group::ALL.iter().filter(|g| **g == a.group).count(),
                1,
                "{:?} of {} in Group::ALL",
                a.group,
                a.pin_name()
            );
        }
    }
}
