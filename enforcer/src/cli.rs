//! The whole command-line tree. Each subcommand's arguments live beside its code in `cmd/`.

use clap::{Parser, Subcommand};

use crate::cmd;

#[derive(Debug, Parser)]
#[command(name = "enforcer", version, about = "Confine AI agents at the syscall level with eBPF")]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Validate policy files or directories (errors as file:line:col).
    Check(cmd::check::CheckArgs),
    /// Decide one operation for an agent with the reference evaluator and say why.
    Explain(cmd::explain::ExplainArgs),
    /// Report what this kernel supports: BPF LSM, tracepoints, cgroup socket hooks.
    Probe(cmd::probe::ProbeArgs),
}
