use std::process::ExitCode;

use clap::{Parser, Subcommand};
use enforcer_testkit::{bench, try_ops};

/// Test, benchmark and attack tooling for enforcer. Not part of the product: it is built for the
/// kernel tests (`cargo xtask test`), `cargo xtask bench` and `enforcer demo`.
#[derive(Debug, Parser)]
#[command(name = "enforcer-testkit", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Perform file/exec/network operations and report errno per operation (tests, demo).
    TryOps(try_ops::TryOpsArgs),
    /// Measure what enforcement costs (run by `cargo xtask bench`).
    Bench(bench::command::BenchArgs),
    /// A measured process of `enforcer-testkit bench` (serves batches of operations on stdin).
    BenchWorker,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::TryOps(args) => try_ops::run(args),
        Command::Bench(args) => bench::command::run(args),
        Command::BenchWorker => bench::command::run_worker(),
    };
    match result {
        Ok(code) => code,
        Err(err) => {
            eprintln!("enforcer-testkit: error: {err:#}");
            ExitCode::from(2)
        }
    }
}
