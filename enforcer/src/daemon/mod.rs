//! `enforcer daemon`: owns the kernel backend, the audit log and the API socket.
//!
//! `config` (file + flags), `policy_source` (load, resolve host names, compile), `dns` (host
//! name answers and their TTL-driven refresh), `core` (the state machine: apply, reload,
//! register, pump events; synchronous, so tests drive it with a mock backend), `service` (the
//! async loop: signals, file watching, API, timers), `metrics` (Prometheus text), `procs` (agent
//! membership of live processes), `protect` (the daemon's own state, which no agent may
//! change), `roles` (who may ask what on the API socket), `lock` (one daemon per state
//! directory and audit log), `privileges` (the capabilities kept after start-up),
//! `state` (what outlives a daemon run).

pub mod check;
pub mod config;
pub mod core;
pub mod dns;
pub mod grants;
pub mod lock;
pub mod metrics;
pub mod policy_source;
pub mod privileges;
pub mod procs;
pub mod protect;
pub mod roles;
pub mod service;
pub mod state;

use std::path::PathBuf;

pub use config::{ConfigError, DaemonConfig};

#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("policy rejected:\n{0}")]
    Policy(String),
    #[error("kernel: {0}")]
    Kernel(crate::kernel::KernelError),
    #[error("audit log: {0}")]
    Audit(crate::audit::AuditError),
    #[error(transparent)]
    Api(#[from] crate::api::ApiError),
    #[error("registration refused: {0}")]
    Register(String),
    #[error("grant refused: {0}")]
    Grant(String),
    #[error("permission denied: {0}")]
    Refused(String),
    #[error("state file {}: {reason}", path.display())]
    State { path: PathBuf, reason: String },
    #[error("watching {}: {reason}", path.display())]
    Watch { path: PathBuf, reason: String },
    #[error("metrics endpoint {addr}: {cause}")]
    Metrics {
        addr: std::net::SocketAddr,
        cause: std::io::Error,
    },
    #[error(transparent)]
    Lock(#[from] lock::LockError),
    #[error("dropping capabilities: {0}")]
    Privileges(#[from] privileges::PrivilegeError),
    #[error("{what}: {cause}")]
    Io { what: String, cause: std::io::Error },
}

// The wrapped errors are shown in the message, not chained as a source: `anyhow`'s `{:#}` would
// print them twice.
impl From<crate::kernel::KernelError> for DaemonError {
    fn from(e: crate::kernel::KernelError) -> Self {
        DaemonError::Kernel(e)
    }
}

impl From<crate::audit::AuditError> for DaemonError {
    fn from(e: crate::audit::AuditError) -> Self {
        DaemonError::Audit(e)
    }
}
