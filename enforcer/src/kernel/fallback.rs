//! The fallback backend, for kernels where BPF LSM is unusable: cgroup v2 sock_addr programs
//! refuse denied connects and datagrams with EPERM in the kernel; tracepoint programs see opens,
//! execs and file changes after the fact and can only log them or SIGKILL the offender
//! (`on_violation`). Identity is the same tracepoint code the LSM backend uses.

use std::os::fd::AsRawFd as _;

use aya::{
    maps::{MapData, RingBuf},
    programs::{links::CgroupAttachMode, CgroupSockAddr, TracePoint},
    Ebpf,
};
use enforcer_common::*;

use super::{
    cgroup2_mount, lsm, Backend, BackendStatus, Enforcement, KernelError, LoadOptions, RawEvent,
    RuleStatus,
};
use crate::policy::compile::{CompiledPolicy, Mode, OnViolation, RuleKind};

/// cgroup sock_addr programs (program name in the object), attached at the cgroup2 root.
pub const CGROUP_PROGRAMS: &[&str] = &["cg_connect4", "cg_connect6", "cg_sendmsg4", "cg_sendmsg6"];

/// (program name, category, tracepoint) that observe file and exec operations. A program may
/// appear several times (one attachment per tracepoint). `fb_sched_exec` must come after the
/// identity programs (attachment order is run order): a non-leader thread's exec moves its
/// process-table entry first.
pub const FILE_TRACEPOINTS: &[(&str, &str, &str)] = &[
    ("fb_exit_open", "syscalls", "sys_exit_openat"),
    ("fb_exit_open", "syscalls", "sys_exit_openat2"),
    ("fb_exit_open", "syscalls", "sys_exit_open"),
    ("fb_exit_open", "syscalls", "sys_exit_creat"),
    ("fb_sched_exec", "sched", "sched_process_exec"),
];

pub struct FallbackBackend {
    ebpf: Ebpf,
    events: RingBuf<MapData>,
    features: Vec<(String, Result<(), String>)>,
    /// Whether the file/exec tracepoints are attached (else file and exec rules are unsupported).
    file_hooks: bool,
    /// Whether the sys_enter tracepoints for unlink/rename/... and unix sockets are attached.
    change_hooks: bool,
    policy: Option<CompiledPolicy>,
    /// Why BPF LSM is not used (the reason auto-selection fell back), for the status table.
    lsm_problem: Option<String>,
}

fn attach_cgroup_programs(ebpf: &mut Ebpf) -> Result<(), KernelError> {
    let root = cgroup2_mount()?;
    let dir = std::fs::File::open(&root).map_err(|e| {
        KernelError::Unsupported(format!("opening cgroup2 root {}: {e}", root.display()))
    })?;
    for prog in CGROUP_PROGRAMS {
        let p: &mut CgroupSockAddr = ebpf
            .program_mut(prog)
            .ok_or_else(|| KernelError::Load(format!("program {prog} missing from the object")))?
            .try_into()
            .map_err(|e| KernelError::Load(format!("{prog}: {e}")))?;
        p.load().map_err(|e| KernelError::Attach {
            program: (*prog).into(),
            reason: format!("{e:#}"),
        })?;
        // A BPF link (kernel >= 5.7) always coexists with other programs on the cgroup (systemd,
        // container runtimes) and takes no flags: the kernel rejects BPF_F_ALLOW_MULTI there.
        p.attach(&dir, CgroupAttachMode::Single)
            .map_err(|e| KernelError::Attach {
                program: (*prog).into(),
                reason: format!("{} at {}", super::error_chain(&e), root.display()),
            })?;
    }
    Ok(())
}

fn attach_tracepoints(ebpf: &mut Ebpf, list: &[(&str, &str, &str)]) -> Result<(), KernelError> {
    for (prog, category, name) in list {
        let p: &mut TracePoint = ebpf
            .program_mut(prog)
            .ok_or_else(|| KernelError::Load(format!("program {prog} missing from the object")))?
            .try_into()
            .map_err(|e| KernelError::Load(format!("{prog}: {e}")))?;
        if p.fd().is_err() {
            p.load().map_err(|e| KernelError::Attach {
                program: (*prog).into(),
                reason: super::error_chain(&e),
            })?;
        }
        p.attach(category, name).map_err(|e| KernelError::Attach {
            program: format!("{prog} ({category}:{name})"),
            reason: super::error_chain(&e),
        })?;
    }
    Ok(())
}

/// Fill `FB_SYSCALLS` and attach the sys_enter programs. Returns the outcome and the optional
/// syscalls this kernel does not have.
fn attach_syscall_tracepoints(ebpf: &mut Ebpf) -> (Result<(), String>, Vec<&'static str>) {
    use super::fallback_syscalls::{fill, programs_for, watched};
    let list = watched();
    if let Err(e) = fill(ebpf, &list) {
        return (Err(e.to_string()), Vec::new());
    }
    let mut skipped = Vec::new();
    for w in &list {
        let tp = format!("sys_enter_{}", w.name);
        let exists = std::path::Path::new(crate::paths::TRACEFS)
            .join("events/syscalls")
            .join(&tp)
            .exists();
        if !exists && w.optional {
            skipped.push(w.name);
            continue;
        }
        for prog in programs_for(&w.shape) {
            let r = (|| -> Result<(), KernelError> {
                let p: &mut TracePoint = ebpf
                    .program_mut(prog)
                    .ok_or_else(|| {
                        KernelError::Load(format!("program {prog} missing from the object"))
                    })?
                    .try_into()
                    .map_err(|e| KernelError::Load(format!("{prog}: {e}")))?;
                if p.fd().is_err() {
                    p.load().map_err(|e| KernelError::Attach {
                        program: prog.into(),
                        reason: super::error_chain(&e),
                    })?;
                }
                p.attach("syscalls", &tp).map_err(|e| KernelError::Attach {
                    program: format!("{prog} (syscalls:{tp})"),
                    reason: super::error_chain(&e),
                })?;
                Ok(())
            })();
            if let Err(e) = r {
                return (Err(e.to_string()), skipped);
            }
        }
    }
    (Ok(()), skipped)
}

impl FallbackBackend {
    /// `lsm_problem`: why BPF LSM is not used here (shown in status), if it was tried.
    pub fn load(opts: &LoadOptions, lsm_problem: Option<String>) -> Result<Self, KernelError> {
        let mut ebpf = lsm::load_object(opts)?;
        lsm::attach_identity(&mut ebpf)?;
        // Network enforcement is what this backend is for: without it, refuse to pretend.
        attach_cgroup_programs(&mut ebpf)?;
        super::probe::canary(&mut ebpf, super::probe::CanaryOp::Connect)
            .map_err(KernelError::Unsupported)?;
        let mut features = vec![
            (
                "bpf-lsm".to_string(),
                Err(lsm_problem
                    .clone()
                    .unwrap_or_else(|| "not tried (backend = fallback)".into())),
            ),
            ("identity-tracepoints".to_string(), Ok(())),
            ("cgroup-sock-addr".to_string(), Ok(())),
        ];
        let file = attach_tracepoints(&mut ebpf, FILE_TRACEPOINTS).map_err(|e| e.to_string());
        let file_hooks = file.is_ok();
        features.push(("file-exec-tracepoints".to_string(), file));
        let (changes, skipped) = attach_syscall_tracepoints(&mut ebpf);
        let change_hooks = changes.is_ok();
        features.push(("file-change-tracepoints".to_string(), changes));
        if !skipped.is_empty() {
            features.push((
                "optional-syscalls".to_string(),
                Err(format!(
                    "not on this kernel (not watched): {}",
                    skipped.join(", ")
                )),
            ));
        }
        let events = RingBuf::try_from(
            ebpf.take_map(MAP_EVENTS)
                .ok_or_else(|| KernelError::Load("EVENTS map missing".into()))?,
        )
        .map_err(|e| KernelError::Map {
            map: MAP_EVENTS.into(),
            reason: e.to_string(),
        })?;
        Ok(FallbackBackend {
            ebpf,
            events,
            features,
            file_hooks,
            change_hooks,
            policy: None,
            lsm_problem,
        })
    }

    /// The ring buffer's fd, for async readiness (epoll) in the daemon.
    pub fn events_fd(&self) -> i32 {
        self.events.as_raw_fd()
    }

    /// What was probed by trying, with the reason when missing.
    pub fn features(&self) -> &[(String, Result<(), String>)] {
        &self.features
    }

    pub fn ebpf_mut(&mut self) -> &mut Ebpf {
        &mut self.ebpf
    }
}

/// How the fallback enforces one rule, and why.
pub fn fallback_rule_status(
    policy: &CompiledPolicy,
    file_hooks: bool,
    change_hooks: bool,
) -> Vec<RuleStatus> {
    policy
        .rules
        .iter()
        .map(|r| {
            let agent = policy.agent(r.agent);
            let audit_agent = agent.map(|a| a.mode == Mode::Audit).unwrap_or(false);
            let kill = agent
                .map(|a| a.on_violation == OnViolation::Kill)
                .unwrap_or(false);
            let (enforcement, why) =
                rule_enforcement(r.kind, &r.pattern, file_hooks, change_hooks, kill);
            RuleStatus {
                agent: agent.map(|a| a.name.clone()).unwrap_or_default(),
                rule: r.text_id.clone(),
                enforcement: if audit_agent && enforcement != Enforcement::Unsupported {
                    Enforcement::AuditOnly
                } else {
                    enforcement
                },
                why: why.to_string(),
            }
        })
        .collect()
}

fn rule_enforcement(
    kind: RuleKind,
    pattern: &str,
    file_hooks: bool,
    change_hooks: bool,
    kill: bool,
) -> (Enforcement, &'static str) {
    use RuleKind::*;
    match kind {
        NetConnect | NetDeny if pattern.starts_with("unix:") && !change_hooks => {
            (Enforcement::Unsupported, "unix sockets: the connect/sendto/sendmsg tracepoints are not attached on this kernel")
        }
        NetConnect | NetDeny if pattern.starts_with("unix:") && kill => {
            (Enforcement::EnforcedByKill, "unix sockets: seen at connect/sendto/sendmsg entry; the offender is SIGKILLed before it returns to user space (the connect itself may complete)")
        }
        NetConnect | NetDeny if pattern.starts_with("unix:") => {
            (Enforcement::AuditOnly, "unix sockets: seen at connect/sendto/sendmsg entry; logged, not blocked (on_violation = \"audit\")")
        }
        NetConnect | NetDeny => (Enforcement::Enforced, "cgroup connect4/6 and sendmsg4/6 refuse with EPERM"),
        MatchCgroup => (Enforcement::Enforced, "members are recognised at their first hooked operation"),
        MatchExe if !file_hooks => (Enforcement::Unsupported, "exec tracepoints are not attached: exe-matched processes are not recognised"),
        MatchExe => (Enforcement::Enforced, "recognised when the exec completes (sched_process_exec)"),
        _ if !file_hooks => (Enforcement::Unsupported, "file and exec tracepoints are not attached on this kernel"),
        FileWrite | FileDeny | FileDenyWrite if !change_hooks && kill => (
            Enforcement::EnforcedByKill,
            "opens only: the offender is SIGKILLed after the open (O_CREAT/O_TRUNC already happened); unlink, rename, mkdir/rmdir, link/symlink, truncate, chmod/chown are not observed on this kernel",
        ),
        FileWrite | FileDeny | FileDenyWrite if !change_hooks => (
            Enforcement::AuditOnly,
            "opens only, logged not blocked (on_violation = \"audit\"); unlink, rename, mkdir/rmdir, link/symlink, truncate, chmod/chown are not observed on this kernel",
        ),
        FileWrite | FileDeny | FileDenyWrite if kill => (
            Enforcement::EnforcedByKill,
            "the offender is SIGKILLed: after an open (O_CREAT/O_TRUNC already happened), at entry of unlink/rename/mkdir/rmdir/link/symlink/truncate/chmod/chown (which may still complete); those are judged on the lexical path (dirfd/cwd + string, symlinks in the string not followed)",
        ),
        FileWrite | FileDeny | FileDenyWrite => (
            Enforcement::AuditOnly,
            "logged, not blocked (on_violation = \"audit\"): opens, and unlink/rename/mkdir/rmdir/link/symlink/truncate/chmod/chown on the lexical path (dirfd/cwd + string, symlinks in the string not followed)",
        ),
        ExecAllow | ExecDeny if kill => (Enforcement::EnforcedByKill, "a denied exec is SIGKILLed before the new program runs an instruction"),
        _ if kill => (Enforcement::EnforcedByKill, "seen after the fact: the offender is SIGKILLed in the kernel before it returns to user space"),
        _ => (Enforcement::AuditOnly, "seen by tracepoints after the fact: logged, not blocked (on_violation = \"audit\")"),
    }
}

impl Backend for FallbackBackend {
    fn apply(&mut self, policy: &CompiledPolicy, version: u32) -> Result<(), KernelError> {
        super::policy_maps::apply(&mut self.ebpf, policy, version)?;
        self.policy = Some(policy.clone());
        Ok(())
    }

    fn register(&mut self, pid: u32, agent: u32, session: u64) -> Result<(), KernelError> {
        lsm::register_in(&mut self.ebpf, pid, agent, session)
    }

    fn proc_state(&self, tid: u32) -> Result<Option<ProcState>, KernelError> {
        lsm::proc_state_in(&self.ebpf, tid)
    }

    fn poll_events(&mut self, out: &mut Vec<RawEvent>) -> Result<(), KernelError> {
        lsm::drain_events(&mut self.events, out);
        Ok(())
    }

    fn losses(&self) -> Result<Vec<(u32, u64)>, KernelError> {
        lsm::read_losses(&self.ebpf)
    }

    fn status(&self) -> BackendStatus {
        let _ = &self.lsm_problem;
        BackendStatus {
            backend: "fallback".into(),
            kernel: super::kernel_release(),
            features: self.features.clone(),
            rules: self
                .policy
                .as_ref()
                .map(|p| fallback_rule_status(p, self.file_hooks, self.change_hooks))
                .unwrap_or_default(),
        }
    }
}
