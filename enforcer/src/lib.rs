//! enforcer: per-agent syscall confinement with eBPF.
//!
//! Layers: `policy` (pure: parse, validate, compile, reference evaluator), `kernel` (loads the
//! eBPF object, writes compiled policies into maps, decodes events), `lifecycle` (pure: replay
//! logs against policies, learn policies from logs), `cmd` (one file per CLI subcommand),
//! `paths` (every well-known path).

pub mod api;
pub mod audit;
pub mod bench;
pub mod cli;
pub mod cmd;
pub mod daemon;
pub mod kernel;
pub mod lifecycle;
pub mod paths;
pub mod policy;
