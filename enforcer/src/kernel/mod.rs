//! Everything that talks to the kernel: the embedded eBPF object, loading and attaching
//! programs, writing compiled policies into maps, registering agent processes, and reading the
//! event ring buffer and loss counters.
//!
//! The daemon programs against [`Backend`]. `loaded.rs` implements it once for both backends
//! (the loaded object, pins, events, process tables); `lsm.rs` (BPF LSM) and `fallback.rs` add
//! only what they attach and what they say in status ([`loaded::Driver`]); tests use a mock.

pub mod canary;
pub mod fallback;
pub mod fallback_attach;
pub mod fallback_syscalls;
pub mod fill;
pub mod landlock;
pub mod loaded;
pub mod lsm;
pub mod object;
pub mod offsets;
pub mod pin;
pub mod policy_maps;
pub mod probe;
pub mod ring;
pub mod seccomp;

use enforcer_common::{EventHeader, ProcState};

use crate::policy::compile::CompiledPolicy;

/// One decoded kernel record: the fixed header and the target bytes (path / unix path).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RawEvent {
    pub header: EventHeader,
    pub target: Vec<u8>,
    /// Where the kernel queued it in the `EVENTS` ring buffer: a byte position that only grows
    /// while the (pinned) map exists, so the same record read twice has the same one.
    pub ring_pos: u64,
}

/// How one rule (or one agent feature) is enforced on this kernel.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Enforcement {
    /// Denied in the kernel with EPERM.
    Enforced,
    /// The offending process is SIGKILLed in the kernel (fallback, on_violation = "kill").
    EnforcedByKill,
    /// Decided and logged, never blocked.
    AuditOnly,
    /// Fallback, launcher sessions: refused with EACCES before the operation outside the
    /// agent's Landlock envelope (docs/landlock.md); inside it SIGKILLed as `EnforcedByKill`.
    LandlockThenKill,
    /// As [`Enforcement::LandlockThenKill`], inside the envelope logged only.
    LandlockThenAudit,
    /// This kernel cannot even observe it.
    Unsupported,
}

impl Enforcement {
    /// The name used in status tables and JSON (`enforced-by-kill`...).
    pub fn label(self) -> &'static str {
        match self {
            Enforcement::Enforced => "enforced",
            Enforcement::EnforcedByKill => "enforced-by-kill",
            Enforcement::AuditOnly => "audit-only",
            Enforcement::LandlockThenKill => "landlock+enforced-by-kill",
            Enforcement::LandlockThenAudit => "landlock+audit-only",
            Enforcement::Unsupported => "unsupported",
        }
    }
}

/// Per-rule status line for `enforcer status`, the startup log and `enforcer check --kernel`.
#[derive(Clone, Debug, serde::Serialize)]
pub struct RuleStatus {
    pub agent: String,
    pub rule: String,
    pub enforcement: Enforcement,
    pub why: String,
}

/// What the kernel side can do here and what it does.
#[derive(Clone, Debug, serde::Serialize)]
pub struct BackendStatus {
    /// "lsm" or "fallback".
    pub backend: String,
    pub kernel: String,
    /// Features probed by trying (not by reading the lsm list), with the reason when missing.
    pub features: Vec<Feature>,
    pub rules: Vec<RuleStatus>,
}

/// A probed feature: its name, and why it is missing.
pub type Feature = (String, Result<(), String>);

#[derive(Debug, thiserror::Error)]
pub enum KernelError {
    #[error("loading the eBPF object: {0}")]
    Load(String),
    #[error("attaching {program}: {reason}")]
    Attach { program: String, reason: String },
    #[error("map {map}: {reason}")]
    Map { map: String, reason: String },
    #[error("process {pid}: {reason}")]
    Process { pid: u32, reason: String },
    #[error("{0}")]
    Unsupported(String),
    #[error("pinned state: {0}")]
    Pin(#[from] pin::PinError),
    #[error("event ring buffer: {0}")]
    Ring(#[from] ring::RingError),
}

/// The kernel side as the daemon sees it.
pub trait Backend: Send {
    /// Install a compiled policy atomically (fill the inactive slot, flip, clear the old one).
    /// The policy is shared with the caller (the daemon keeps it too): a backend that keeps the
    /// running policy (status, map fill) holds no second copy, which at 100,000 rules is tens
    /// of MB.
    fn apply_shared(
        &mut self,
        policy: std::sync::Arc<CompiledPolicy>,
        version: u32,
    ) -> Result<(), KernelError>;
    /// [`Backend::apply_shared`] of a copy of `policy`, for callers that keep theirs (tests).
    fn apply(&mut self, policy: &CompiledPolicy, version: u32) -> Result<(), KernelError> {
        self.apply_shared(std::sync::Arc::new(policy.clone()), version)
    }
    /// Make every thread of process `pid` a member of `agent` (launcher registration).
    /// Fails if the process is already an agent (membership is sticky).
    fn register(&mut self, pid: u32, agent: u32, session: u64) -> Result<(), KernelError> {
        self.register_chain(pid, &[agent], session)
    }
    /// Make every thread of `pid` a member of `chain` (outermost first) with a new session.
    /// A process that is already an agent can only be extended by one agent (delegation: its
    /// chain must be `chain` minus the last); the caller checks that the policy allows it.
    fn register_chain(&mut self, pid: u32, chain: &[u32], session: u64) -> Result<(), KernelError>;
    /// The agent state of thread `tid`, if it is an agent.
    fn proc_state(&self, tid: u32) -> Result<Option<ProcState>, KernelError>;
    /// Whether thread `tid` is in the doomed table (an agent's child the process table had no
    /// room for). An error is an error, never "no".
    fn doomed(&self, tid: u32) -> Result<bool, KernelError>;
    /// Read up to `max` queued events (non-blocking) without releasing them: until
    /// [`Backend::release_events`], a reader started later (the next daemon) reads them again.
    fn read_events(&mut self, max: usize, out: &mut Vec<RawEvent>) -> Result<(), KernelError>;
    /// Every event read so far is handled (in the audit log): the kernel may reuse the space.
    fn release_events(&mut self) -> Result<(), KernelError>;
    /// Read and release everything queued (probes and tests: at most once, no durability).
    fn poll_events(&mut self, out: &mut Vec<RawEvent>) -> Result<(), KernelError> {
        self.read_events(usize::MAX, out)?;
        self.release_events()
    }
    /// Ring-buffer reserve failures counted in the kernel, per agent id (summed over CPUs).
    fn losses(&self) -> Result<Vec<(u32, u64)>, KernelError>;
    /// Internal failures counted in the kernel (`FAILS`), every point of
    /// `enforcer_common::FAIL_NAMES` in that order with its count (summed over CPUs).
    fn failures(&self) -> Result<Vec<(u32, u64)>, KernelError>;
    fn status(&self) -> BackendStatus;
    /// How full the maps are whose capacity limits enforcement (process tables counted in the
    /// kernel, rule maps from the applied policy).
    fn map_fill(&self) -> Result<Vec<fill::MapFill>, KernelError>;
    /// The pinned state a previous daemon left, if this backend adopted it at load.
    fn adopted(&self) -> Option<pin::Adoption> {
        None
    }
    /// Whether launcher sessions get a Landlock envelope (docs/landlock.md): the fallback,
    /// which cannot refuse file operations itself.
    fn uses_envelope(&self) -> bool {
        false
    }
    /// Whether launcher sessions get the seccomp filter that kills what the backend's hooks
    /// cannot see (other syscall ABIs, clones sharing the descriptor table: `seccomp.rs`).
    fn uses_syscall_guard(&self) -> bool {
        false
    }
    /// Record in the pinned state that a daemon runs (`running`) or has stopped cleanly, so the
    /// next daemon can tell since when none ran.
    fn heartbeat(&mut self, _running: bool) -> Result<(), KernelError> {
        Ok(())
    }
}

/// Which backend the daemon should use.
#[derive(
    Clone,
    Copy,
    Debug,
    Default,
    PartialEq,
    Eq,
    serde::Deserialize,
    serde::Serialize,
    clap::ValueEnum,
)]
#[serde(rename_all = "kebab-case")]
pub enum BackendChoice {
    /// BPF LSM when it really works here (tried by loading, proven by a canary), else the
    /// fallback (with the reason LSM was not used in the status).
    #[default]
    Auto,
    /// BPF LSM or fail.
    Lsm,
    /// cgroup socket hooks (EPERM for network rules) + tracepoints (file and exec rules are
    /// logged or enforced by SIGKILL, per `on_violation`).
    Fallback,
}

#[derive(Clone, Debug)]
pub struct LoadOptions {
    pub choice: BackendChoice,
    /// Where programs, maps and links are pinned (bpffs), so enforcement survives the daemon,
    /// and where a restarted daemon adopts them. `None` (probes, tests): nothing is pinned and
    /// the programs detach when the backend is dropped.
    pub pin_dir: Option<std::path::PathBuf>,
    /// Capacity of the process table (`PROCS`).
    pub max_procs: u32,
}

impl Default for LoadOptions {
    fn default() -> Self {
        LoadOptions {
            choice: BackendChoice::Auto,
            pin_dir: None,
            max_procs: enforcer_common::PROCS_ENTRIES,
        }
    }
}

/// Load the best backend for `opts.choice` on this kernel. BPF LSM usability is decided by
/// loading and attaching the LSM programs, never by reading the lsm list.
pub fn open_backend(opts: &LoadOptions) -> Result<Box<dyn Backend>, KernelError> {
    match opts.choice {
        BackendChoice::Lsm => Ok(Box::new(lsm::LsmBackend::load(opts)?)),
        BackendChoice::Fallback => Ok(Box::new(fallback::FallbackBackend::load(opts, None)?)),
        BackendChoice::Auto => {
            match lsm::LsmBackend::load(opts) {
                Ok(b) => Ok(Box::new(b)),
                Err(lsm_err) => {
                    tracing::warn!("BPF LSM is unusable on this kernel ({lsm_err}); using the fallback backend");
                    let fb = fallback::FallbackBackend::load(opts, Some(lsm_err.to_string())).map_err(|e| {
                    KernelError::Unsupported(format!("BPF LSM is unusable ({lsm_err}) and the fallback backend failed too: {e}"))
                })?;
                    Ok(Box::new(fb))
                }
            }
        }
    }
}

/// An error and its sources, `: `-separated (aya's errors keep the kernel's errno in a source).
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    // A verifier log can be thousands of lines: keep its start and its verdict at the end.
    if s.len() > 1200 {
        let head: String = s.chars().take(300).collect();
        let tail: String = s
            .chars()
            .rev()
            .take(700)
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .collect();
        s = format!("{head} [...] {tail}");
    }
    s
}

/// `uname -r`.
pub fn kernel_release() -> String {
    nix::sys::utsname::uname()
        .map(|u| u.release().to_string_lossy().into_owned())
        .unwrap_or_else(|e| format!("unknown ({e})"))
}

/// Where cgroup v2 is mounted, from /proc/mounts (hybrid layouts put it at .../unified).
pub fn cgroup2_mount() -> Result<std::path::PathBuf, KernelError> {
    let mounts = std::fs::read_to_string(crate::paths::PROC_MOUNTS)
        .map_err(|e| KernelError::Unsupported(format!("{}: {e}", crate::paths::PROC_MOUNTS)))?;
    mounts
        .lines()
        .filter_map(|l| {
            let mut f = l.split_whitespace();
            let (_, dir, fstype) = (f.next()?, f.next()?, f.next()?);
            (fstype == "cgroup2").then(|| std::path::PathBuf::from(dir))
        })
        .next()
        .ok_or_else(|| KernelError::Unsupported("no cgroup2 filesystem is mounted".into()))
}

/// What a rule kind does not cover on the LSM backend yet. Said in every status table so
/// nobody reads "enforced" as more than it is.
fn rule_caveat(kind: crate::policy::compile::RuleKind) -> &'static str {
    use crate::policy::compile::RuleKind::*;
    match kind {
        FileWrite | FileDeny | FileDenyWrite => {
            "writing is enforced as opens for write, file creation, unlink, rename (both names), mkdir/rmdir, mknod, link (both names), symlink, truncate/ftruncate, chmod/chown; not hooked: timestamps (utime) and extended attributes"
        }
        MatchCgroup => "members are recognised at their first hooked operation",
        _ => "",
    }
}

/// One line per rule id: a rule compiled from several patterns under one id (the daemon's
/// `enforcer:audit-log-rotated`, one path per retained file) is said once, not once per pattern
/// (with `audit.retain = 1000` the startup record would otherwise list it a thousand times per
/// agent).
pub fn one_line_per_rule(mut lines: Vec<RuleStatus>) -> Vec<RuleStatus> {
    lines.dedup_by(|b, a| {
        a.agent == b.agent && a.rule == b.rule && a.enforcement == b.enforcement && a.why == b.why
    });
    lines
}

/// One status line per rule of `policy`, all with the same enforcement (backends refine this).
pub fn rule_status(policy: Option<&CompiledPolicy>, enforcement: Enforcement) -> Vec<RuleStatus> {
    let Some(policy) = policy else {
        return Vec::new();
    };
    one_line_per_rule(
        policy
            .rules
            .iter()
            .map(|r| RuleStatus {
                agent: policy
                    .agent(r.agent)
                    .map(|a| a.name.clone())
                    .unwrap_or_default(),
                rule: r.text_id.clone(),
                enforcement: match policy.agent(r.agent).map(|a| a.mode) {
                    Some(crate::policy::compile::Mode::Audit) => Enforcement::AuditOnly,
                    _ => enforcement,
                },
                why: match enforcement {
                    Enforcement::Unsupported => "no enforcement backend on this kernel".to_string(),
                    _ => rule_caveat(r.kind).to_string(),
                },
            })
            .collect(),
    )
}

/// Remove everything pinned under `pin_dir` (deliberate uninstall): the links first, which
/// detaches every hook, then programs and maps. Refused while a daemon runs on it. A missing
/// directory is not an error; returns whether there was anything to remove.
pub fn uninstall(pin_dir: &std::path::Path) -> Result<bool, KernelError> {
    Ok(pin::uninstall(pin_dir)?)
}
