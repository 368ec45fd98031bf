//! enforcer: per-agent syscall confinement with eBPF.
//!
//! Layers, from the pure core outwards:
//! - `policy` (pure): parse, validate and compile policies; the reference evaluator.
//! - `lifecycle` (pure): replay audit logs against policies, learn policies from logs.
//! - `audit`: the audit record model, its JSON/text encodings, the log writer and reader.
//! - `kernel`: loads the eBPF object (BPF LSM or fallback backend), writes compiled policies
//!   into maps, pins and adopts kernel state, decodes events.
//! - `api`: the daemon's unix-socket protocol, its server and client.
//! - `daemon`: the core state machine (policy versions, registrations, grants, the event pump)
//!   and the async service around it (API, metrics, reloads, DNS refresh).
//! - `cli` and `cmd`: the command-line tree and one file per subcommand; `paths`: every
//!   well-known path; `version`: what `--version` says about the build.

pub mod api;
pub mod audit;
pub mod cli;
pub mod cmd;
pub mod daemon;
pub mod kernel;
pub mod lifecycle;
pub mod paths;
pub mod policy;
pub mod version;
