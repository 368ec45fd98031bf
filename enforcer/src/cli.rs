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
    /// Decide the audit log's recorded events again under a candidate policy; print what changes.
    Replay(cmd::replay::ReplayArgs),
    /// Write a least-privilege policy for an agent from an audit log recorded in audit mode.
    Learn(cmd::learn::LearnArgs),
    /// Report what this kernel supports (BTF, struct offsets, cgroup v2, identity tracepoints,
    /// BPF LSM), found by trying; exit 0 only if BPF LSM enforcement works here.
    Probe(cmd::probe::ProbeArgs),
    /// Run the enforcement daemon (foreground; prints a `ready` line once enforcing).
    Daemon(cmd::daemon::DaemonArgs),
    /// Run a command as an agent: register with the daemon, then exec it.
    Run(cmd::run::RunArgs),
    /// Show audit events from the log and, with --follow, live from the daemon.
    Events(cmd::events::EventsArgs),
    /// Show the daemon's health, backend, agents, per-rule enforcement and counters.
    Status(cmd::status::StatusArgs),
    /// Give an agent a temporary allow that expires by itself (checked in the kernel); --list, --revoke.
    Grant(cmd::grant::GrantArgs),
    /// Start a daemon with the demo policy, run a scripted agent, show its audit events live.
    Demo(cmd::demo::DemoArgs),
    /// Perform file/exec/network operations and report errno per operation (tests, demo).
    #[command(hide = true)]
    TryOps(cmd::try_ops::TryOpsArgs),
    /// Measure what enforcement costs (run by `cargo xtask bench`).
    #[command(hide = true)]
    Bench(cmd::bench::BenchArgs),
    /// A measured process of `enforcer bench` (serves batches of operations on stdin).
    #[command(hide = true)]
    BenchWorker,
}
