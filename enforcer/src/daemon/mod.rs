//! `enforcer daemon`: owns the kernel backend, the audit log and the API socket.
//!
//! `config` (file + flags), `policy_source` (load, resolve host names, compile), `core` (the
//! state machine: apply, reload, register, pump events; synchronous, so tests drive it with a
//! mock backend), `service` (the async loop: signals, file watching, API, timers), `metrics`
//! (Prometheus text), `procs` (agent membership of live processes), `state` (what outlives a
//! daemon run).

pub mod config;
pub mod core;
pub mod metrics;
pub mod policy_source;
pub mod procs;
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
    Kernel(#[from] crate::kernel::KernelError),
    #[error("audit log: {0}")]
    Audit(#[from] crate::audit::AuditError),
    #[error(transparent)]
    Api(#[from] crate::api::ApiError),
    #[error("registration refused: {0}")]
    Register(String),
    #[error("state file {}: {reason}", path.display())]
    State { path: PathBuf, reason: String },
    #[error("watching {}: {reason}", path.display())]
    Watch { path: PathBuf, reason: String },
    #[error("metrics endpoint {addr}: {source}")]
    Metrics { addr: std::net::SocketAddr, source: std::io::Error },
    #[error("{what}: {source}")]
    Io { what: String, source: std::io::Error },
}
