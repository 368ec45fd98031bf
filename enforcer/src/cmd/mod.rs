//! One module per subcommand.

pub mod check;
pub mod explain;
pub mod probe;

use std::process::ExitCode;

use crate::cli::{Cli, Command};

pub fn dispatch(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Check(args) => check::run(args),
        Command::Explain(args) => explain::run(args),
        Command::Probe(args) => probe::run(args),
    }
}
