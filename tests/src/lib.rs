//! Shared support for the kernel integration tests (one test file per feature in `tests/`).
//!
//! Protocol with `cargo xtask test`: a test that cannot run on this kernel still runs, asserts
//! that the limitation is detected and reported, and prints `ENFORCER-NA <test>: <reason>`; the
//! harness shows it as n/a for that kernel and fails any test that ran nowhere.

pub mod adversarial;
pub mod agent;
pub mod backend;
pub mod chains;
pub mod daemon;
pub mod events;
pub mod execdiff;
pub mod filediff;
pub mod fixtures;
pub mod hostile;
pub mod identity;
pub mod identity_escape;
pub mod netdiff;
pub mod probe_object;
pub mod workload;

pub use agent::{Agent, OpResult};
pub use backend::{fallback, kernel_label, lsm_or_na, DaemonBackend};
pub use fixtures::{compile, compile_files, TempDir};

pub const EPERM: i32 = libc::EPERM;

/// Kernel tests load eBPF programs: they need root.
pub fn require_root() {
    assert!(
        nix::unistd::geteuid().is_root(),
        "kernel integration tests must run as root"
    );
}

/// Report that `test` cannot run on this kernel, and why (read by `cargo xtask test`).
pub fn not_applicable(test: &str, reason: &str) {
    let reason = reason.replace('\n', " ");
    println!("ENFORCER-NA {test}: {reason}");
    eprintln!("ENFORCER-NA {test}: {reason}");
}
