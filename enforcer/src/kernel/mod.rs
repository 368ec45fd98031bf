//! Everything that talks to the kernel: the embedded eBPF object, loading and attaching
//! programs, writing compiled policies into maps, registering agent processes, and reading the
//! event ring buffer and loss counters.
//!
//! The daemon programs against [`Backend`]; `lsm.rs` (BPF LSM) and the fallback backend
//! implement it, and tests use a mock.

use enforcer_common::{EventHeader, ProcState};

use crate::policy::compile::CompiledPolicy;

/// One decoded kernel record: the fixed header and the target bytes (path / unix path).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RawEvent {
    pub header: EventHeader,
    pub target: Vec<u8>,
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
    /// This kernel cannot even observe it.
    Unsupported,
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
    pub features: Vec<(String, Result<(), String>)>,
    pub rules: Vec<RuleStatus>,
}

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
}

/// The kernel side as the daemon sees it.
pub trait Backend: Send {
    /// Install a compiled policy atomically (fill the inactive slot, flip, clear the old one).
    fn apply(&mut self, policy: &CompiledPolicy, version: u32) -> Result<(), KernelError>;
    /// Make every thread of process `pid` a member of `agent` (launcher registration).
    /// Fails if the process is already an agent (membership is sticky).
    fn register(&mut self, pid: u32, agent: u32, session: u64) -> Result<(), KernelError>;
    /// The agent state of thread `tid`, if it is an agent.
    fn proc_state(&self, tid: u32) -> Result<Option<ProcState>, KernelError>;
    /// Drain available events (non-blocking).
    fn poll_events(&mut self, out: &mut Vec<RawEvent>) -> Result<(), KernelError>;
    /// Ring-buffer reserve failures counted in the kernel, per agent id (summed over CPUs).
    fn losses(&self) -> Result<Vec<(u32, u64)>, KernelError>;
    fn status(&self) -> BackendStatus;
}

/// Which backend the daemon should use.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Deserialize, serde::Serialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum BackendChoice {
    /// BPF LSM when it really works here (tried by loading), else the fallback.
    #[default]
    Auto,
    /// BPF LSM or fail.
    Lsm,
    /// Tracepoints + cgroup socket hooks, even where BPF LSM works.
    Fallback,
}

#[derive(Clone, Debug)]
pub struct LoadOptions {
    pub choice: BackendChoice,
    /// Where programs, maps and links are pinned (bpffs), so enforcement survives the daemon.
    pub pin_dir: std::path::PathBuf,
    /// Capacity of the process table (`PROCS`).
    pub max_procs: u32,
}

impl Default for LoadOptions {
    fn default() -> Self {
        LoadOptions {
            choice: BackendChoice::Auto,
            pin_dir: crate::paths::PIN_DIR.into(),
            max_procs: 65536,
        }
    }
}

/// Load (or adopt the pinned state of) the best backend for `opts.choice` on this kernel.
pub fn open_backend(_opts: &LoadOptions) -> Result<Box<dyn Backend>, KernelError> {
    Err(KernelError::Unsupported("kernel backends are not implemented yet".into()))
}

/// Remove everything pinned under `pin_dir` (deliberate uninstall: enforcement stops).
pub fn uninstall(pin_dir: &std::path::Path) -> Result<(), KernelError> {
    Err(KernelError::Unsupported(format!("uninstall of {} is not implemented yet", pin_dir.display())))
}
