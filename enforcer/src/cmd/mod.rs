//! One module per subcommand.

pub mod check;
pub mod daemon;
pub mod demo;
pub mod events;
pub mod explain;
pub mod grant;
pub mod learn;
pub mod probe;
pub mod replay;
pub mod run;
pub mod status;

use std::process::ExitCode;

use crate::cli::{Cli, Command};

pub fn dispatch(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Check(args) => check::run(args),
        Command::Explain(args) => explain::run(args),
        Command::Replay(args) => replay::run(args),
        Command::Learn(args) => learn::run(args),
        Command::Probe(args) => probe::run(args),
        Command::Daemon(args) => daemon::run(args),
        Command::Run(args) => run::run(args),
        Command::Events(args) => events::run(args),
        Command::Status(args) => status::run(args),
        Command::Grant(args) => grant::run(args),
        Command::Demo(args) => demo::run(args),
    }
}
