//! Fuzzing as part of `cargo xtask test`: every `fuzz/fuzz_targets/*.rs` (a cargo-fuzz project,
//! its own workspace) runs for a bounded time on the pinned nightly; a crash fails its row.

use std::{
    fs,
    path::{Path, PathBuf},
    process::{Command, Stdio},
};

use anyhow::Context as _;

use crate::{bootstrap::Toolchain, libtest::Outcome, process, project::Project};

/// cargo-fuzz release installed into the project's tools dir (builds with the stable toolchain).
const CARGO_FUZZ_VERSION: &str = "0.13.1";

/// Target names: the file stems of `fuzz/fuzz_targets/*.rs`, sorted.
pub fn targets(project: &Project) -> Vec<String> {
    let Ok(entries) = fs::read_dir(project.fuzz_dir().join("fuzz_targets")) else {
        return Vec::new();
    };
    let mut names: Vec<String> = entries
        .filter_map(Result::ok)
        .map(|entry| entry.path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "rs"))
        .filter_map(|path| {
            path.file_stem()
                .map(|stem| stem.to_string_lossy().into_owned())
        })
        .collect();
    names.sort();
    names
}

fn ensure_cargo_fuzz(project: &Project, toolchain: &Toolchain) -> anyhow::Result<PathBuf> {
    let root = project.tools_dir().join("cargo-fuzz");
    let bin_dir = root.join("bin");
    if bin_dir.join("cargo-fuzz").is_file() {
        return Ok(bin_dir);
    }
    println!(
        "bootstrap: installing cargo-fuzz {CARGO_FUZZ_VERSION} into {} (once)",
        root.display()
    );
    let mut cargo = toolchain.cargo(project);
    cargo
        .args([
            "install",
            "cargo-fuzz",
            "--locked",
            "--version",
            CARGO_FUZZ_VERSION,
            "--root",
        ])
        .arg(&root)
        .current_dir(project.tools_dir());
    process::run(&mut cargo)?;
    Ok(bin_dir)
}

/// Runs every target whose row name (`fuzz::<target>`) matches `filter`, reporting each through
/// `record(row, outcome, log)`.
pub fn run_all(
    project: &Project,
    toolchain: &Toolchain,
    filter: Option<&str>,
    seconds: u64,
    logs: &Path,
    record: &mut dyn FnMut(&str, Outcome, &Path),
) -> anyhow::Result<()> {
    let rows: Vec<(String, String)> = targets(project)
        .into_iter()
        .map(|target| (format!("fuzz::{target}"), target))
        .filter(|(row, _)| filter.is_none_or(|f| crate::kernel_tests::row_matches(f, row)))
        .collect();
    if rows.is_empty() {
        return Ok(());
    }
    let fuzz_bin_dir = ensure_cargo_fuzz(project, toolchain)?;
    let path = std::env::join_paths(
        std::iter::once(fuzz_bin_dir).chain(std::env::split_paths(&toolchain.path_env())),
    )?;
    for (row, target) in rows {
        let log = logs.join(format!("fuzz-{target}.log"));
        let file = fs::File::create(&log).with_context(|| format!("creating {}", log.display()))?;
        println!("fuzzing {target} for {seconds} s, log: {}", log.display());
        // Fuzzing exercises user-space code only: skip building the eBPF object (AYA_BUILD_SKIP).
        let status = Command::new("rustup")
            .args([
                "run",
                &toolchain.nightly,
                "cargo",
                "fuzz",
                "run",
                &target,
                "--",
            ])
            .arg(format!("-max_total_time={seconds}"))
            .env("PATH", &path)
            .env("AYA_BUILD_SKIP", "1")
            .env_remove("CARGO")
            .env_remove("RUSTUP_TOOLCHAIN")
            .current_dir(project.fuzz_dir())
            .stdin(Stdio::null())
            .stdout(file.try_clone()?)
            .stderr(file)
            .status()
            .context("starting cargo fuzz")?;
        let outcome = if status.success() {
            Outcome::Pass
        } else {
            Outcome::Fail(format!("cargo fuzz run: {status}"))
        };
        record(&row, outcome, &log);
    }
    Ok(())
}
