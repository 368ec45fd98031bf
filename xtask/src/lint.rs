//! `cargo xtask lint`: formatting, clippy and cargo-deny, each step run even when an earlier one
//! failed, then one summary line per step; the exit status is non-zero if any step failed.
//!
//! - `fmt`: `cargo fmt --all --check` with the pinned nightly (rustfmt.toml uses unstable
//!   options), for the workspace and for the fuzz/ workspace.
//! - `clippy host`: `cargo clippy --workspace --exclude enforcer-ebpf --all-targets -- -D warnings`
//!   with the toolchain `rust-version` names, so it also checks that the code builds with the
//!   oldest toolchain the project claims. `AYA_BUILD_SKIP=1`: clippy needs no eBPF object.
//! - `clippy eBPF`: the eBPF crate for its real target, as aya-template lints it: the pinned
//!   nightly, `--target bpfel-unknown-none -Z build-std=core`, bpf-linker on PATH.
//! - `deny`: `cargo deny check` (deny.toml) with cargo-deny installed into target/tools. The
//!   advisory database comes from the network; when it cannot be fetched, a copy fetched earlier
//!   on this machine is used and the summary says so, and with none the advisories step is
//!   reported as not checked (it does not fail the lane: machines without that network access
//!   still lint everything else).
//!
//! Everything builds in `<target>/lint`, so linting neither waits for nor invalidates the
//! builds of `cargo xtask build`/`test` (whose eBPF object AYA_BUILD_SKIP would replace).

use std::{
    path::{Path, PathBuf},
    process::Command,
    time::Instant,
};

use anyhow::Context as _;

use crate::{bootstrap::Toolchain, process, project::Project};

/// cargo-deny release installed into the project's tools dir (declares rust-version 1.88).
const CARGO_DENY_VERSION: &str = "0.20.2";

#[derive(Debug, clap::Args)]
pub struct LintArgs {}

/// How one step ended.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Outcome {
    Pass(Option<String>),
    Fail(String),
    NotChecked(String),
}

struct Step {
    name: &'static str,
    outcome: Outcome,
    seconds: f64,
}

pub fn run(_args: LintArgs) -> anyhow::Result<u8> {
    let project = Project::locate();
    let toolchain = crate::bootstrap::ensure_toolchains(&project)?;
    let target_dir = lint_target_dir(&project);
    let mut steps = Vec::new();
    let mut step = |name: &'static str, run: &mut dyn FnMut() -> Outcome| {
        println!("lint: {name}");
        let start = Instant::now();
        let outcome = run();
        steps.push(Step {
            name,
            outcome,
            seconds: start.elapsed().as_secs_f64(),
        });
    };

    step("fmt (workspace)", &mut || {
        let mut cargo = toolchain.rustup_cargo(&project, &toolchain.nightly);
        cargo.args(["fmt", "--all", "--check"]);
        status_outcome(
            &mut cargo,
            "files are not formatted (`cargo +nightly fmt --all` fixes them)",
        )
    });
    step("fmt (fuzz)", &mut || {
        let mut cargo = toolchain.rustup_cargo(&project, &toolchain.nightly);
        cargo
            .args(["fmt", "--all", "--check", "--manifest-path"])
            .arg(project.fuzz_dir().join("Cargo.toml"));
        status_outcome(
            &mut cargo,
            "files are not formatted (`cargo +nightly fmt --all --manifest-path fuzz/Cargo.toml` fixes them)",
        )
    });
    step("clippy host", &mut || {
        let mut cargo = toolchain.rustup_cargo(&project, &toolchain.rust_version);
        cargo
            .args([
                "clippy",
                "--workspace",
                "--exclude",
                "enforcer-ebpf",
                "--all-targets",
            ])
            .args(["--", "-D", "warnings"])
            .env("CARGO_TARGET_DIR", &target_dir)
            .env("AYA_BUILD_SKIP", "1");
        status_outcome(&mut cargo, "clippy found problems (above)")
    });
    step("clippy eBPF", &mut || {
        let mut cargo = toolchain.rustup_cargo(&project, &toolchain.nightly);
        cargo
            .args(["clippy", "--package", "enforcer-ebpf"])
            .args(["--target", "bpfel-unknown-none", "-Z", "build-std=core"])
            .args(["--", "-D", "warnings"])
            .env("CARGO_TARGET_DIR", &target_dir);
        status_outcome(&mut cargo, "clippy found problems (above)")
    });
    match ensure_cargo_deny(&project, &toolchain) {
        Ok(deny_bin_dir) => {
            // `cargo deny --manifest-path <root>/Cargo.toml <subcommand...>`
            let deny = |subcommand: &[&str]| {
                let mut cargo = toolchain.cargo(&project);
                cargo
                    .env("PATH", prepend_path(&deny_bin_dir, &toolchain))
                    .args(["deny", "--manifest-path"])
                    .arg(project.root.join("Cargo.toml"))
                    .args(subcommand);
                cargo
            };
            step("deny (bans, licenses, sources)", &mut || {
                status_outcome(
                    &mut deny(&["check", "bans", "licenses", "sources"]),
                    "cargo deny found problems (above)",
                )
            });
            step("deny (advisories)", &mut || advisories(&deny));
        }
        Err(err) => step("deny", &mut || {
            Outcome::Fail(format!("cargo-deny could not be installed: {err:#}"))
        }),
    }

    println!();
    let width = steps.iter().map(|s| s.name.len()).max().unwrap_or(0);
    for Step {
        name,
        outcome,
        seconds,
    } in &steps
    {
        let text = match outcome {
            Outcome::Pass(None) => "ok".to_owned(),
            Outcome::Pass(Some(note)) => format!("ok ({note})"),
            Outcome::Fail(reason) => format!("FAILED: {reason}"),
            Outcome::NotChecked(reason) => format!("NOT CHECKED: {reason}"),
        };
        println!("lint: {name:width$}  {seconds:6.1} s  {text}");
    }
    let failed: Vec<&str> = steps
        .iter()
        .filter(|s| matches!(s.outcome, Outcome::Fail(_)))
        .map(|s| s.name)
        .collect();
    let total: f64 = steps.iter().map(|s| s.seconds).sum();
    if failed.is_empty() {
        println!("lint: every step passed in {total:.0} s");
        Ok(0)
    } else {
        println!(
            "lint: {} of {} steps failed: {}",
            failed.len(),
            steps.len(),
            failed.join(", ")
        );
        Ok(1)
    }
}

/// `$CARGO_TARGET_DIR/lint`, else `<repo>/target/lint`.
fn lint_target_dir(project: &Project) -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .filter(|dir| !dir.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| project.root.join("target"))
        .join("lint")
}

fn status_outcome(command: &mut Command, failure: &str) -> Outcome {
    let description = process::describe(command);
    match process::status(command) {
        Ok(status) if status.success() => Outcome::Pass(None),
        Ok(status) => Outcome::Fail(format!("{failure}; `{description}` exited with {status}")),
        Err(err) => Outcome::Fail(err.to_string()),
    }
}

fn prepend_path(dir: &Path, toolchain: &Toolchain) -> std::ffi::OsString {
    std::env::join_paths(
        std::iter::once(dir.to_path_buf()).chain(std::env::split_paths(&toolchain.path_env())),
    )
    .unwrap_or_default()
}

/// Fetches the advisory database, then checks against it; without network, against the copy
/// fetched before, if any.
fn advisories(deny: &dyn Fn(&[&str]) -> Command) -> Outcome {
    let fetched = process::stdout(&mut deny(&["fetch", "db"]));
    let note = match &fetched {
        Ok(_) => None,
        Err(err) => {
            let reason = last_error_line(&err.to_string());
            if !advisory_db_exists() {
                return Outcome::NotChecked(format!(
                    "the advisory database could not be fetched ({reason}) and none was fetched \
                     on this machine before"
                ));
            }
            Some(format!(
                "offline: checked against the database fetched before; the fetch failed: {reason}"
            ))
        }
    };
    let mut check = deny(&["check", "--disable-fetch", "advisories"]);
    match status_outcome(&mut check, "cargo deny found advisories (above)") {
        Outcome::Pass(_) => Outcome::Pass(note),
        other => other,
    }
}

/// Whether cargo-deny's default database directory (`$CARGO_HOME/advisory-dbs`) holds one.
fn advisory_db_exists() -> bool {
    let cargo_home = std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".cargo")));
    cargo_home
        .map(|home| home.join("advisory-dbs"))
        .and_then(|dir| std::fs::read_dir(dir).ok())
        .is_some_and(|mut entries| {
            entries.any(|entry| entry.is_ok_and(|e| e.path().join(".git").exists()))
        })
}

/// The line of a failure that says why: the last non-empty one (cargo-deny and git end with the
/// cause, e.g. "Could not resolve host").
fn last_error_line(text: &str) -> String {
    text.lines()
        .map(str::trim)
        .rfind(|line| !line.is_empty())
        .unwrap_or("no output")
        .chars()
        .take(200)
        .collect()
}

/// cargo-deny into `target/tools/cargo-deny-<version>/` (once; about 5 minutes on 2 CPUs).
fn ensure_cargo_deny(project: &Project, toolchain: &Toolchain) -> anyhow::Result<PathBuf> {
    let root = project
        .tools_dir()
        .join(format!("cargo-deny-{CARGO_DENY_VERSION}"));
    let bin_dir = root.join("bin");
    if bin_dir.join("cargo-deny").is_file() {
        return Ok(bin_dir);
    }
    println!(
        "bootstrap: installing cargo-deny {CARGO_DENY_VERSION} into {} (once, a few minutes)",
        root.display()
    );
    let mut cargo = toolchain.cargo(project);
    cargo
        .args([
            "install",
            "cargo-deny",
            "--locked",
            "--version",
            CARGO_DENY_VERSION,
            "--root",
        ])
        .arg(&root)
        // Outside the repository, so the repo's rust-toolchain.toml and .cargo/config.toml don't apply.
        .current_dir(project.tools_dir());
    process::run(&mut cargo).context("installing cargo-deny")?;
    Ok(bin_dir)
}
