//! enforcer-testkit: the test, benchmark and attack tooling of enforcer, kept out of the shipped
//! `enforcer` binary. Never packaged.
//!
//! - [`try_ops`]: `enforcer-testkit try-ops`, the scripted agent of the kernel tests and of
//!   `enforcer demo` (file, exec and network operations, evasion attempts, io_uring, floods);
//! - [`bench`]: `enforcer-testkit bench` / `bench-worker`, run by `cargo xtask bench`
//!   (docs/benchmarks.md);
//! - [`synthetic`]: synthetic policies of any size (benchmarks, `policy_compile_bench`).

pub mod bench;
pub mod synthetic;
mod try_abi;
mod try_failclosed;
mod try_flood;
pub mod try_ops;
mod try_uring;

use std::path::PathBuf;

use anyhow::Context as _;

/// The `enforcer` binary the benchmarks start (`enforcer daemon`, `enforcer run`):
/// `ENFORCER_BIN` if set, else `enforcer` beside this executable (where cargo builds both).
pub fn enforcer_bin() -> anyhow::Result<PathBuf> {
    if let Some(p) = std::env::var_os("ENFORCER_BIN") {
        return Ok(p.into());
    }
    let exe = std::env::current_exe().context("locating the enforcer-testkit executable")?;
    let beside = exe.with_file_name("enforcer");
    anyhow::ensure!(
        beside.is_file(),
        "no enforcer binary: {} does not exist; build it (cargo build -p enforcer) or set ENFORCER_BIN",
        beside.display()
    );
    Ok(beside)
}
