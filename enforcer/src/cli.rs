//! The whole command-line tree. Each subcommand's arguments live beside its code in `cmd/`.

use clap::{CommandFactory as _, FromArgMatches as _, Parser, Subcommand};

use crate::cmd;

/// `--version` prints the release, the commit it was built from and the kernel layout (see
/// `version.rs`); `-V` the same.
#[derive(Debug, Parser)]
#[command(
    name = "enforcer",
    version,
    about = "Confine AI agents at the syscall level with eBPF"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

/// Parse the process's command line. The kernel layout is a hash of the whole embedded eBPF
/// object (megabytes): it is computed only when the version is asked for, not on every command.
pub fn parse() -> Cli {
    let asks_version = std::env::args_os()
        .skip(1)
        .any(|a| a == "--version" || a == "-V");
    let command = Cli::command();
    let command = if asks_version {
        // Once per process, then it exits: clap takes a `&'static str` (without its `string`
        // feature).
        let version: &'static str = crate::version::long().leak();
        command.version(version)
    } else {
        command
    };
    Cli::from_arg_matches(&command.get_matches()).unwrap_or_else(|e| e.exit())
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
    /// Run the enforcement daemon (foreground; prints a `ready` line once enforcing, and sends
    /// systemd READY=1 then when started with NOTIFY_SOCKET).
    Daemon(cmd::daemon::DaemonArgs),
    /// Run a command as an agent: register with the daemon (only a socket served by root is
    /// trusted), apply the agent's Landlock envelope and seccomp filter (fallback backend,
    /// docs/landlock.md, docs/fallback.md), then exec it.
    Run(cmd::run::RunArgs),
    /// Show audit events from the log and, with --follow, live from the daemon.
    Events(cmd::events::EventsArgs),
    /// Show the daemon's health, backend, agents, per-rule enforcement and counters.
    ///
    /// The text starts with one line: `healthy`, or `degraded: <why>; <why>...` when audit
    /// records are not written, events were lost, the kernel programs had internal failures,
    /// rules are unsupported on this kernel, or a kernel map is 90% full or more (counts since
    /// the daemon started). Exit status: 0 healthy, 1 degraded (either format), 3 no daemon
    /// running, 2 any other error.
    Status(cmd::status::StatusArgs),
    /// Give an agent a temporary allow that expires by itself (checked in the kernel); --list, --revoke.
    Grant(cmd::grant::GrantArgs),
    /// Start a daemon with the demo policy, run a scripted agent (`enforcer-testkit try-ops`, a
    /// test tool found beside this executable), show its audit events live.
    Demo(cmd::demo::DemoArgs),
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory as _;

    use super::Cli;

    /// The test, benchmark and attack tools live in `enforcer-testkit`, never in this binary.
    const TESTKIT_COMMANDS: &[&str] = &["try-ops", "bench", "bench-worker"];

    /// Every subcommand at any depth, with its path (`enforcer grant`...).
    fn walk(cmd: &clap::Command, path: &str, out: &mut Vec<(String, bool)>) {
        for sub in cmd.get_subcommands() {
            let sub_path = format!("{path} {}", sub.get_name());
            out.push((sub_path.clone(), sub.is_hide_set()));
            walk(sub, &sub_path, out);
        }
    }

    #[test]
    fn the_command_tree_holds_only_product_commands() {
        let cli = Cli::command();
        cli.clone().debug_assert();
        let mut commands = Vec::new();
        walk(&cli, "enforcer", &mut commands);
        assert!(
            commands.len() >= 11,
            "the walk found the commands: {commands:?}"
        );
        for (path, hidden) in &commands {
            assert!(!hidden, "{path} is hidden: every command of the shipped binary is shown in --help (test tooling belongs to enforcer-testkit)");
            let name = path.rsplit(' ').next().unwrap_or_default();
            assert!(
                !TESTKIT_COMMANDS.contains(&name),
                "{path} is test tooling: it belongs to enforcer-testkit"
            );
        }
        let help = cli.clone().render_long_help().to_string();
        for name in TESTKIT_COMMANDS {
            assert!(
                !help
                    .lines()
                    .any(|l| l.trim_start().starts_with(&format!("{name} "))),
                "`enforcer --help` lists {name}:\n{help}"
            );
        }
        for name in TESTKIT_COMMANDS {
            assert!(
                cli.clone()
                    .try_get_matches_from(["enforcer", name, "--help"])
                    .is_err_and(|e| e.kind() == clap::error::ErrorKind::InvalidSubcommand),
                "`enforcer {name}` must not parse"
            );
        }
    }
}
