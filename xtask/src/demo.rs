//! `cargo xtask demo`: build `enforcer` and the demo's scripted agent (`enforcer-testkit`, test
//! tooling), then run `enforcer demo` on this machine's kernel (the daemon picks
//! BPF LSM where it works, else the fallback backend: cgroup socket hooks refuse denied network,
//! tracepoints log file and exec decisions), or with `--vm` inside the Debian 6.12 VM, where BPF
//! LSM enforces everything with EPERM.

use std::process::Command;

use crate::{
    process,
    project::Project,
    vm::{self, KernelChoice, VmArgs},
};

#[derive(Debug, clap::Args)]
pub struct DemoArgs {
    /// Run inside the Debian 6.12 VM (BPF LSM) instead of on this machine's kernel.
    #[arg(long, conflicts_with = "host")]
    pub vm: bool,
    /// Run on this machine's kernel (the default).
    #[arg(long)]
    pub host: bool,
}

pub fn run(args: DemoArgs) -> anyhow::Result<u8> {
    if args.vm {
        return vm::run(VmArgs {
            kernel: KernelChoice::V6_12,
            no_bpf_lsm: false,
            added: Vec::new(),
            timeout: vm::DEFAULT_TIMEOUT_SECS,
            release: false,
            command: vec!["enforcer".into(), "demo".into()],
        });
    }
    let project = Project::locate();
    let toolchain = crate::bootstrap::ensure(&project)?;
    let binaries = crate::build::build_binaries(&project, &toolchain, false)?;
    let status = process::status(
        Command::new(&binaries.enforcer)
            .arg("demo")
            .arg("--agent-bin")
            .arg(&binaries.testkit)
            .env("ENFORCER_BIN", &binaries.enforcer)
            .env("ENFORCER_POLICIES", project.policies_dir())
            .env("ENFORCER_KERNEL", "host")
            .current_dir(&project.root),
    )?;
    Ok(status
        .code()
        .and_then(|code| u8::try_from(code).ok())
        .unwrap_or(1))
}
