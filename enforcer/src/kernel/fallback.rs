//! The fallback backend, for kernels where BPF LSM is unusable: cgroup v2 sock_addr programs
//! refuse denied connects and datagrams with EPERM in the kernel; tracepoint programs see opens,
//! execs and file changes after the fact and can only log them or SIGKILL the offender
//! (`on_violation`). Identity is the same tracepoint code the LSM backend uses.

use std::os::fd::{AsFd as _, AsRawFd as _};

use aya::Ebpf;
use enforcer_common::*;

use super::{
    fallback_attach::{self, Group},
    lsm,
    pin::{self, Adoption, Found, Layout, PinDir},
    Backend, BackendStatus, Enforcement, KernelError, LoadOptions, RawEvent, RuleStatus,
};
use crate::policy::compile::{CompiledPolicy, Mode, OnViolation, RuleKind};

pub use fallback_attach::CGROUP_PROGRAMS;

pub struct FallbackBackend {
    ebpf: Ebpf,
    events: lsm::Events,
    features: Vec<(String, Result<(), String>)>,
    /// Whether the file/exec tracepoints are attached (else file and exec rules are unsupported).
    file_hooks: bool,
    /// Whether the sys_enter tracepoints for unlink/rename/... and unix sockets are attached.
    change_hooks: bool,
    policy: Option<std::sync::Arc<CompiledPolicy>>,
    /// Kernel state pinned in bpffs (the daemon); probes and tests load unpinned.
    pinned: bool,
    adoption: Option<Adoption>,
}

impl FallbackBackend {
    /// `lsm_problem`: why BPF LSM is not used here (shown in status), if it was tried. With
    /// `opts.pin_dir`: adopt the state a previous fallback daemon pinned there, or install and
    /// pin a fresh one (same rules as the LSM backend: see pin.rs). Without: load unpinned.
    pub fn load(opts: &LoadOptions, lsm_problem: Option<String>) -> Result<Self, KernelError> {
        let lsm_feature = (
            "bpf-lsm".to_string(),
            Err(lsm_problem.unwrap_or_else(|| "not tried (backend = fallback)".into())),
        );
        let Some(dir) = &opts.pin_dir else {
            let mut ebpf = lsm::load_object(opts, None)?;
            let groups = fallback_attach::attach_all(&mut ebpf, None, &|_| true)?;
            return Self::running(ebpf, lsm_feature, groups, false, None);
        };
        let pins = PinDir::new(dir);
        let layout = Layout::of("fallback");
        let (list, _) = fallback_attach::attachments();
        let names: Vec<String> = list.iter().map(|a| a.pin_name()).collect();
        let name_refs: Vec<&str> = names.iter().map(String::as_str).collect();
        // Before aya opens any pinned map: it would reuse maps of another layout blindly.
        let found = pins.inspect(layout, &name_refs)?;
        pins.create()?;
        match found {
            Found::Adoptable(mut adoption) => {
                let mut ebpf = lsm::load_object(opts, Some(&pins))?;
                // Only attachments whose link pin vanished are made again; the others run on.
                let missing = adoption.relinked.clone();
                let groups = fallback_attach::attach_all(&mut ebpf, Some(&pins), &|p| missing.iter().any(|m| m == p))?;
                adoption.read_state(&ebpf);
                let mut backend = Self::running(ebpf, lsm_feature, groups, true, Some(adoption))?;
                pins.mark_running(&mut backend.ebpf, layout, true)?;
                Ok(backend)
            }
            Found::Nothing => {
                let installed = lsm::load_object(opts, Some(&pins)).and_then(|mut ebpf| {
                    let groups = fallback_attach::attach_all(&mut ebpf, Some(&pins), &|_| true)?;
                    let mut backend = Self::running(ebpf, lsm_feature, groups, true, None)?;
                    pins.mark_running(&mut backend.ebpf, layout, false)?;
                    Ok(backend)
                });
                if installed.is_err() {
                    // Nothing was enforced with it yet: leave no half-installed hooks behind.
                    if let Err(cleanup) = pin::uninstall(dir) {
                        tracing::warn!("removing the incomplete install: {cleanup}");
                    }
                }
                installed
            }
        }
    }

    /// Prove the network programs run for a registered agent, then take the ring buffer.
    fn running(
        mut ebpf: Ebpf,
        lsm_feature: (String, Result<(), String>),
        groups: Vec<(Group, Result<(), String>)>,
        pinned: bool,
        adoption: Option<Adoption>,
    ) -> Result<Self, KernelError> {
        super::probe::canary(&mut ebpf, super::probe::CanaryOp::Connect).map_err(KernelError::Unsupported)?;
        let ok = |g: Group| groups.iter().any(|(x, r)| *x == g && r.is_ok());
        let (file_hooks, change_hooks) = (ok(Group::FileExec), ok(Group::FileChange));
        let mut features = vec![lsm_feature];
        features.extend(groups.iter().map(|(g, r)| (g.feature().to_string(), r.clone())));
        let (_, skipped) = fallback_attach::attachments();
        if !skipped.is_empty() {
            features.push((
                "optional-syscalls".to_string(),
                Err(format!("not on this kernel (not watched): {}", skipped.join(", "))),
            ));
        }
        // Said on every fallback: io_uring opens and connects pass none of the tracepoints the
        // file rules are judged at (the cgroup connect hooks do see them).
        features.push((
            "io-uring-ops".to_string(),
            Err(IO_URING_LIMITATION.to_string()),
        ));
        let events = lsm::Events::take(&mut ebpf)?;
        let mut adoption = adoption;
        if let Some(adoption) = &mut adoption {
            adoption.ring_released_pos = events.ring.released_pos();
        }
        Ok(FallbackBackend { ebpf, events, features, file_hooks, change_hooks, policy: None, pinned, adoption })
    }

    /// The ring buffer's fd, for async readiness (epoll) in the daemon.
    pub fn events_fd(&self) -> i32 {
        self.events.map.fd().as_fd().as_raw_fd()
    }

    /// What was probed by trying, with the reason when missing.
    pub fn features(&self) -> &[(String, Result<(), String>)] {
        &self.features
    }

    pub fn ebpf_mut(&mut self) -> &mut Ebpf {
        &mut self.ebpf
    }
}

/// The `io-uring-ops` feature line of every fallback backend.
pub const IO_URING_LIMITATION: &str = "not decided per target: an agent's io_uring_setup/io_uring_enter is denied as a whole (SIGKILLed with on_violation = \"kill\", else logged as op io_uring); opens it submits are not seen, its TCP/UDP connects still meet the cgroup connect hooks";

/// How the fallback enforces one rule, and why.
pub fn fallback_rule_status(
    policy: &CompiledPolicy,
    file_hooks: bool,
    change_hooks: bool,
) -> Vec<RuleStatus> {
    let lines = policy
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
        .collect();
    super::one_line_per_rule(lines)
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
    fn apply_shared(&mut self, policy: std::sync::Arc<CompiledPolicy>, version: u32) -> Result<(), KernelError> {
        super::policy_maps::apply(&mut self.ebpf, &policy, version)?;
        self.policy = Some(policy);
        Ok(())
    }

    fn register_chain(&mut self, pid: u32, chain: &[u32], session: u64) -> Result<(), KernelError> {
        lsm::register_chain_in(&mut self.ebpf, pid, chain, session)
    }

    fn proc_state(&self, tid: u32) -> Result<Option<ProcState>, KernelError> {
        lsm::proc_state_in(&self.ebpf, tid)
    }

    fn read_events(&mut self, max: usize, out: &mut Vec<RawEvent>) -> Result<(), KernelError> {
        self.events.read(max, out)
    }

    fn release_events(&mut self) -> Result<(), KernelError> {
        self.events.ring.release();
        Ok(())
    }

    fn losses(&self) -> Result<Vec<(u32, u64)>, KernelError> {
        lsm::read_losses(&self.ebpf)
    }

    fn map_fill(&self) -> Result<Vec<super::fill::MapFill>, KernelError> {
        super::fill::map_fill(&self.ebpf, self.policy.as_deref())
    }

    fn adopted(&self) -> Option<Adoption> {
        self.adoption.clone()
    }

    fn heartbeat(&mut self, running: bool) -> Result<(), KernelError> {
        if self.pinned {
            pin::heartbeat(&mut self.ebpf, running)?;
        }
        Ok(())
    }

    fn status(&self) -> BackendStatus {
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
