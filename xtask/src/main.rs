//! Project automation, run as `cargo xtask <task>` (alias in .cargo/config.toml).

mod adversarial;
mod bench;
mod bootstrap;
mod build;
mod demo;
mod fuzz;
mod initramfs;
mod kernel_tests;
mod kernels;
mod libtest;
mod lint;
mod process;
mod project;
mod summary;
mod test;
mod vm;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "cargo xtask",
    bin_name = "cargo xtask",
    about = "Build, boot test kernels and run every test of enforcer"
)]
struct Cli {
    #[command(subcommand)]
    task: Task,
}

#[derive(Debug, Subcommand)]
enum Task {
    /// Install what the build and the VMs need (run automatically by every other task).
    Bootstrap,
    /// Build `enforcer` with its eBPF object embedded.
    Build(build::BuildArgs),
    /// Boot a Debian kernel under QEMU and run a command as root inside it.
    Vm(vm::VmArgs),
    /// Formatting, clippy (host crates and the eBPF crate) and cargo-deny; a summary line per step.
    Lint(lint::LintArgs),
    /// Unit tests, kernel tests on the host and in every VM kernel, fuzzing; prints a table.
    Test(test::TestArgs),
    /// Run `enforcer demo` on the host, or with --vm inside the 6.12 VM.
    Demo(demo::DemoArgs),
    /// Measure what enforcement costs (host: fallback; 6.12 VM: BPF LSM); writes docs/benchmarks.md.
    Bench(bench::BenchArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.task {
        Task::Bootstrap => bootstrap::ensure(&project::Project::locate())
            .map(|_| 0)
            .map_err(anyhow::Error::from),
        Task::Build(args) => build::run(args).map(|()| 0),
        Task::Vm(args) => vm::run(args),
        Task::Lint(args) => lint::run(args),
        Task::Test(args) => test::run(args),
        Task::Demo(args) => demo::run(args),
        Task::Bench(args) => bench::run(args),
    };
    match result {
        Ok(code) => ExitCode::from(code),
        Err(err) => {
            eprintln!("xtask: error: {err:#}");
            ExitCode::FAILURE
        }
    }
}
