//! The fallback backend, for kernels where BPF LSM is unusable: cgroup v2 sock_addr programs
//! refuse denied connects and datagrams with EPERM in the kernel; tracepoint programs see opens,
//! execs and file changes after the fact and can only log them or SIGKILL the offender
//! (`on_violation`). Identity is the same tracepoint code the LSM backend uses.

use aya::Ebpf;
pub use fallback_attach::CGROUP_PROGRAMS;

use super::{
    fallback_attach::{self, Group},
    loaded::{self, Driver, Loaded},
    pin::Adoption,
    BackendStatus, Enforcement, KernelError, LoadOptions, RuleStatus,
};
use crate::policy::compile::{CompiledPolicy, Mode, OnViolation, RuleKind};

pub struct FallbackBackend {
    loaded: Loaded,
    features: Vec<super::Feature>,
    /// Whether the file/exec tracepoints are attached (else file and exec rules are unsupported).
    file_hooks: bool,
    /// Whether the sys_enter tracepoints for unlink/rename/... and unix sockets are attached.
    change_hooks: bool,
    /// This kernel's Landlock ABI (probed by trying): launcher sessions get an envelope.
    landlock_abi: Option<u32>,
}

impl FallbackBackend {
    /// `lsm_problem`: why BPF LSM is not used here (shown in status), if it was tried. Load,
    /// attach (or adopt what a previous fallback daemon pinned: see [`loaded::install`]) and
    /// prove the network programs run.
    pub fn load(opts: &LoadOptions, lsm_problem: Option<String>) -> Result<Self, KernelError> {
        let lsm_feature = (
            "bpf-lsm".to_string(),
            Err(lsm_problem.unwrap_or_else(|| "not tried (backend = fallback)".into())),
        );
        let (list, _) = fallback_attach::attachments();
        let names: Vec<String> = list.iter().map(|a| a.pin_name()).collect();
        let name_refs: Vec<&str> = names.iter().map(String::as_str).collect();
        loaded::install(
            opts,
            "fallback",
            &name_refs,
            &fallback_attach::attach_all,
            &|ebpf, groups, pinned, adoption| {
                Self::running(ebpf, lsm_feature.clone(), groups, pinned, adoption)
            },
        )
    }

    /// Prove the network programs run for a registered agent, then take the ring buffer.
    fn running(
        mut ebpf: Ebpf,
        lsm_feature: super::Feature,
        groups: Vec<fallback_attach::GroupOutcome>,
        pinned: bool,
        adoption: Option<Adoption>,
    ) -> Result<Self, KernelError> {
        super::canary::canary(&mut ebpf, super::canary::CanaryOp::Connect)
            .map_err(KernelError::Unsupported)?;
        let ok = |g: Group| groups.iter().any(|(x, r)| *x == g && r.is_ok());
        let (file_hooks, change_hooks) = (ok(Group::FileExec), ok(Group::FileChange));
        let mut features = vec![lsm_feature];
        features.extend(
            groups
                .iter()
                .map(|(g, r)| (g.feature().to_string(), r.clone())),
        );
        let (_, skipped) = fallback_attach::attachments();
        if !skipped.is_empty() {
            features.push((
                "optional-syscalls".to_string(),
                Err(format!(
                    "not on this kernel (not watched): {}",
                    skipped.join(", ")
                )),
            ));
        }
        // Said on every fallback: io_uring opens and connects pass none of the tracepoints the
        // file rules are judged at (the cgroup connect hooks do see them).
        features.push((
            "io-uring-ops".to_string(),
            Err(IO_URING_LIMITATION.to_string()),
        ));
        features.push(super::landlock::feature());
        let landlock_abi = super::landlock::probe_abi();
        // Said on every fallback: calls into other processes, terminals, mounts and namespaces
        // are seen at syscall entry, never refused.
        if ok(Group::Process) {
            features.push((
                "process-ops".to_string(),
                Err(PROCESS_LIMITATION.to_string()),
            ));
        }
        // Said on every fallback: what the launcher's seccomp filter covers, and what it cannot
        // (agents that no launcher started have none).
        let guard = if ok(Group::SeccompKill) {
            ""
        } else {
            " (the signal_generate tracepoint did not attach: killed without an event)"
        };
        features.push((
            "compat-syscalls".to_string(),
            Err(format!("{COMPAT_LIMITATION}{guard}")),
        ));
        features.push((
            "shared-descriptors".to_string(),
            Err(format!("{SHARED_FILES_LIMITATION}{guard}")),
        ));
        Ok(FallbackBackend {
            loaded: Loaded::new(ebpf, pinned, adoption)?,
            features,
            file_hooks,
            change_hooks,
            landlock_abi,
        })
    }

    /// The ring buffer's fd, for async readiness (epoll) in the daemon.
    pub fn events_fd(&self) -> i32 {
        self.loaded.events_fd()
    }

    /// What was probed by trying, with the reason when missing.
    pub fn features(&self) -> &[(String, Result<(), String>)] {
        &self.features
    }

    pub fn ebpf_mut(&mut self) -> &mut Ebpf {
        &mut self.loaded.ebpf
    }
}

/// The `io-uring-ops` feature line of every fallback backend.
pub const IO_URING_LIMITATION: &str = "not decided per target: an agent's io_uring_setup/io_uring_enter is denied as a whole (SIGKILLed with on_violation = \"kill\", else logged as op io_uring); opens it submits are not seen, its TCP/UDP connects still meet the cgroup connect hooks";

/// The `process-ops` feature line of every fallback backend whose process tracepoints attached.
pub const PROCESS_LIMITATION: &str = "not refused, seen at syscall entry: ptrace attach/seize/traceme and process_vm_readv/writev outside the agent's chain, pidfd_getfd (any target), ioctl TIOCSTI/TIOCLINUX, and mount/umount2/open_tree(clone)/move_mount/fsopen/fsmount, chroot/pivot_root, unshare/clone/clone3 with CLONE_NEWUSER or CLONE_NEWNS, setns unless [process] allows them: the agent is SIGKILLed with on_violation = \"kill\" (the call itself may complete; a tracee is released when its tracer dies), else logged; /proc/<pid>/mem opens are judged by the file rules on their path only; 32-bit calls: see compat-syscalls";

/// The `compat-syscalls` feature line of every fallback backend.
pub const COMPAT_LIMITATION: &str = "not seen by the 64-bit syscall tracepoints: an agent started by `enforcer run` (not in audit mode) is killed by the launcher's seccomp filter at its first 32-bit (int 0x80) or x32 system call, before it runs (event op compat-syscall, verdict kill); the 32-bit calls of exe- and cgroup-matched agents are not seen";

/// The `shared-descriptors` feature line of every fallback backend.
pub const SHARED_FILES_LIMITATION: &str = "a kill-mode kill ends the opener's thread group only: an agent started by `enforcer run` (not in audit mode) is killed by the launcher's seccomp filter when it clones a process sharing its descriptor table (CLONE_FILES without CLONE_THREAD; clone3 fails with ENOSYS so the C library uses clone), event op share-files; exe- and cgroup-matched agents are not covered; threads of the opener on other CPUs can use the descriptor for the microseconds until the kill lands";

/// How the fallback enforces one rule, and why.
///
/// `landlock`: this kernel has Landlock, so launcher sessions get an envelope; file and exec
/// rules whose classes the agent's envelope bounds say so (docs/landlock.md).
pub fn fallback_rule_status(
    policy: &CompiledPolicy,
    file_hooks: bool,
    change_hooks: bool,
    landlock: bool,
) -> Vec<RuleStatus> {
    let envelopes: std::collections::HashMap<u32, crate::policy::envelope::Envelope> = if landlock {
        policy
            .agents
            .iter()
            .filter_map(|a| crate::policy::envelope::compute(policy, &a.name, 0).map(|e| (a.id, e)))
            .collect()
    } else {
        Default::default()
    };
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
            let enforcement = if audit_agent && enforcement != Enforcement::Unsupported {
                Enforcement::AuditOnly
            } else {
                enforcement
            };
            let reaches = envelopes
                .get(&r.agent)
                .map(|e| e.reach_for(r.kind))
                .unwrap_or_default();
            let bounded = !reaches.is_empty()
                && reaches
                    .iter()
                    .all(|x| matches!(x, crate::policy::envelope::Reach::Within(_)));
            let (enforcement, why) = match enforcement {
                Enforcement::EnforcedByKill | Enforcement::AuditOnly if bounded && !audit_agent => (
                    if enforcement == Enforcement::EnforcedByKill {
                        Enforcement::LandlockThenKill
                    } else {
                        Enforcement::LandlockThenAudit
                    },
                    format!("agents started by `enforcer run`: outside the agent's Landlock envelope refused with EACCES before the operation (a `deny` event flagged landlock); inside it, and for exe- or cgroup-matched agents: {why}"),
                ),
                _ if !reaches.is_empty() && !bounded && landlock && !audit_agent => (
                    enforcement,
                    format!("{why}; not bounded by the Landlock envelope (a `**/NAME` or `**/*.EXT` allow of the same access)"),
                ),
                _ => (enforcement, why.to_string()),
            };
            let (enforcement, why) = match script_interpreter(r.kind, &r.pattern) {
                Some(interpreter) => (
                    Enforcement::Unsupported,
                    format!("{} is a script (#!{interpreter}): the fallback recognises a process by the program the kernel runs, its interpreter, so running the script does not make a process this agent; start it with `enforcer run`, or match the interpreter", r.pattern),
                ),
                None => (enforcement, why),
            };
            RuleStatus {
                agent: agent.map(|a| a.name.clone()).unwrap_or_default(),
                rule: r.text_id.clone(),
                enforcement,
                why,
            }
        })
        .collect();
    super::one_line_per_rule(lines)
}

/// For an exact `match.exe` path naming a script: its `#!` line's interpreter. The fallback
/// sees `mm->exe_file` at `sched_process_exec`, which is the interpreter, never the script
/// (BPF LSM's `bprm_check_security` sees both).
fn script_interpreter(kind: RuleKind, pattern: &str) -> Option<String> {
    use std::io::Read as _;
    if kind != RuleKind::MatchExe || pattern.contains('*') {
        return None;
    }
    let mut head = [0u8; 128];
    let n = std::fs::File::open(pattern)
        .and_then(|mut f| f.read(&mut head))
        .ok()?;
    let line = head[..n].strip_prefix(b"#!")?;
    let line = line.split(|&b| b == b'\n').next().unwrap_or_default();
    Some(String::from_utf8_lossy(line).trim().to_string())
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
            (Enforcement::Unsupported, "unix sockets: the connect/sendto/sendmsg/sendmmsg tracepoints are not attached on this kernel")
        }
        NetConnect | NetDeny if pattern.starts_with("unix:") && kill => {
            (Enforcement::EnforcedByKill, "unix sockets: seen at connect/sendto/sendmsg/sendmmsg entry; the offender is SIGKILLed before it returns to user space (the connect itself may complete)")
        }
        NetConnect | NetDeny if pattern.starts_with("unix:") => {
            (Enforcement::AuditOnly, "unix sockets: seen at connect/sendto/sendmsg/sendmmsg entry; logged, not blocked (on_violation = \"audit\")")
        }
        NetConnect | NetDeny => (Enforcement::Enforced, "cgroup connect4/6 and sendmsg4/6 refuse with EPERM"),
        NetListen if kill => (Enforcement::EnforcedByKill, "seen at listen() entry (process tracepoints); the offender is SIGKILLed before it returns to user space (the socket may listen for that instant)"),
        NetListen => (Enforcement::AuditOnly, "seen at listen() entry (process tracepoints); logged, not blocked (on_violation = \"audit\")"),
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

impl Driver for FallbackBackend {
    fn loaded(&self) -> &Loaded {
        &self.loaded
    }

    fn loaded_mut(&mut self) -> &mut Loaded {
        &mut self.loaded
    }

    fn uses_envelope(&self) -> bool {
        self.landlock_abi.is_some()
    }

    fn uses_syscall_guard(&self) -> bool {
        true
    }

    fn status(&self) -> BackendStatus {
        BackendStatus {
            backend: "fallback".into(),
            kernel: super::kernel_release(),
            features: self.features.clone(),
            rules: self
                .loaded
                .policy
                .as_ref()
                .map(|p| {
                    fallback_rule_status(
                        p,
                        self.file_hooks,
                        self.change_hooks,
                        self.landlock_abi.is_some(),
                    )
                })
                .unwrap_or_default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_script_named_by_match_exe_is_unsupported_and_says_why() {
        let dir = std::env::temp_dir().join(format!("enforcer-fb-script-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let script = dir.join("agent.js");
        std::fs::write(&script, "#!/usr/bin/env node\nconsole.log(1)\n").expect("script");
        let binary = dir.join("agent-bin");
        std::fs::write(&binary, b"\x7fELF\x02\x01\x01").expect("binary");
        let policy = format!(
            "[agent]\nname = \"s\"\n[agent.match]\nexe = [\"{}\"]\n",
            script.display()
        );
        let other = format!(
            "[agent]\nname = \"b\"\n[agent.match]\nexe = [\"{}\"]\n",
            binary.display()
        );
        let set =
            crate::policy::load_sources(&[("s.toml", &policy), ("b.toml", &other)]).expect("loads");
        let compiled = crate::policy::compile(&set, &Default::default()).expect("compiles");
        let lines = fallback_rule_status(&compiled, true, true, false);
        let line = |agent: &str| {
            lines
                .iter()
                .find(|l| l.agent == agent && l.rule.contains(".toml:"))
                .unwrap_or_else(|| panic!("a line for {agent}: {lines:#?}"))
        };
        let s = line("s");
        assert_eq!(s.enforcement, Enforcement::Unsupported, "{s:?}");
        assert!(
            s.why.contains("is a script (#!/usr/bin/env node)") && s.why.contains("enforcer run"),
            "{s:?}"
        );
        assert_eq!(line("b").enforcement, Enforcement::Enforced);
        std::fs::remove_dir_all(&dir).ok();
    }
}
