//! `cargo xtask build`: the `enforcer` binary (with its eBPF object embedded), the test tooling
//! binary `enforcer-testkit` and the kernel test executables, located through cargo's JSON
//! messages so any `CARGO_TARGET_DIR` works.

use std::{
    io::BufReader,
    path::PathBuf,
    process::{Command, Stdio},
};

use anyhow::{bail, Context as _};

use crate::{bootstrap::Toolchain, process, project::Project};

#[derive(Debug, clap::Args)]
pub struct BuildArgs {
    /// Build with the release profile.
    #[arg(long)]
    pub release: bool,
    /// Also build the kernel integration test executables (package enforcer-tests).
    #[arg(long)]
    pub tests: bool,
}

/// A test executable cargo built: `name` is the cargo target name (the row prefix in summaries).
#[derive(Debug, Clone)]
pub struct TestExecutable {
    pub name: String,
    pub path: PathBuf,
}

/// The two binaries of the workspace: the product and the test tooling (`try-ops`, `bench`).
#[derive(Debug, Clone)]
pub struct Binaries {
    pub enforcer: PathBuf,
    pub testkit: PathBuf,
}

pub fn run(args: BuildArgs) -> anyhow::Result<()> {
    let project = Project::locate();
    let toolchain = crate::bootstrap::ensure(&project)?;
    let binaries = build_binaries(&project, &toolchain, args.release)?;
    println!("built {}", binaries.enforcer.display());
    println!("built {}", binaries.testkit.display());
    if args.tests {
        for test in build_kernel_tests(&project, &toolchain, args.release)? {
            println!("built {} ({})", test.path.display(), test.name);
        }
    }
    Ok(())
}

/// `cargo build` of the `enforcer` and `enforcer-testkit` binaries (one cargo run); returns
/// their paths.
pub fn build_binaries(
    project: &Project,
    toolchain: &Toolchain,
    release: bool,
) -> anyhow::Result<Binaries> {
    let mut command = toolchain.cargo(project);
    command.args([
        "build",
        "-p",
        "enforcer",
        "--bin",
        "enforcer",
        "-p",
        "enforcer-testkit",
        "--bin",
        "enforcer-testkit",
    ]);
    let artifacts = artifacts(command, release)?;
    // The library targets are also called `enforcer` / `enforcer_testkit`; only the binaries
    // have an executable.
    let executable = |name: &str| {
        artifacts
            .iter()
            .filter(|artifact| artifact.target.name == name)
            .find_map(|artifact| artifact.executable.clone())
            .map(PathBuf::from)
            .with_context(|| format!("cargo build reported no `{name}` executable"))
    };
    Ok(Binaries {
        enforcer: executable("enforcer")?,
        testkit: executable("enforcer-testkit")?,
    })
}

/// `cargo test -p enforcer-tests --no-run`; returns every test executable it produced.
pub fn build_kernel_tests(
    project: &Project,
    toolchain: &Toolchain,
    release: bool,
) -> anyhow::Result<Vec<TestExecutable>> {
    let mut command = toolchain.cargo(project);
    command.args(["test", "-p", "enforcer-tests", "--no-run"]);
    let mut tests: Vec<TestExecutable> = artifacts(command, release)?
        .into_iter()
        .filter(|artifact| artifact.profile.test)
        .filter_map(|artifact| {
            let path = PathBuf::from(artifact.executable?);
            Some(TestExecutable {
                name: artifact.target.name.clone(),
                path,
            })
        })
        .collect();
    tests.sort_by(|a, b| a.name.cmp(&b.name));
    tests.dedup_by(|a, b| a.path == b.path);
    Ok(tests)
}

/// Runs a cargo command with `--message-format=json-render-diagnostics` (diagnostics still go to
/// the terminal, rendered) and collects the artifacts it reports.
fn artifacts(mut command: Command, release: bool) -> anyhow::Result<Vec<cargo_metadata::Artifact>> {
    command.arg("--message-format=json-render-diagnostics");
    if release {
        command.arg("--release");
    }
    let description = process::describe(&command);
    let mut child = command
        .stdout(Stdio::piped())
        .stdin(Stdio::null())
        .spawn()
        .with_context(|| format!("starting `{description}`"))?;
    let stdout = child.stdout.take().context("cargo stdout")?;
    let mut found = Vec::new();
    for message in cargo_metadata::Message::parse_stream(BufReader::new(stdout)) {
        if let cargo_metadata::Message::CompilerArtifact(artifact) =
            message.context("reading cargo's JSON messages")?
        {
            found.push(artifact);
        }
    }
    let status = child
        .wait()
        .with_context(|| format!("waiting for `{description}`"))?;
    if !status.success() {
        bail!("`{description}` failed ({status})");
    }
    Ok(found)
}
