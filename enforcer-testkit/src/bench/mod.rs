//! `enforcer-testkit bench` (run by `cargo xtask bench`): what enforcement costs, measured side
//! by side in one process run so that only ratios within the run are reported.
//!
//! - `micro`: per-operation cost (open, exec, connect, sendto) without programs, for the confined
//!   agent and for a non-agent process, with policies of 10 to 100,000 rules.
//! - `cost`: policy compile + load and reload time, daemon RSS.
//! - `pipeline`: events per second from the kernel into the audit log, losses counted exactly.
//! - `peers`: the enforcer, auditd (`auditd`) logging the same syscalls and AppArmor
//!   (`apparmor`) enforcing the same file rules, side by side in the same rounds.

pub mod apparmor;
pub mod auditd;
pub mod command;
pub mod cost;
pub mod daemon;
pub mod fixture;
pub mod hooks;
pub mod micro;
pub mod peers;
pub mod pipeline;
pub mod report;
pub mod stats;
pub mod worker;
