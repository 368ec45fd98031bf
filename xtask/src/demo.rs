//! `cargo xtask demo`: build, then run `enforcer demo` inside the Debian 6.12 VM (BPF LSM
//! enforces there), or with `--host` on this machine's kernel.
//!
//! The VM is the default because the host kernel of these machines refuses BPF LSM programs and
//! the fallback backend (tracepoints + cgroup socket hooks) is not implemented yet: on the host
//! the daemon refuses to start and says exactly that, which is the honest answer, not a demo.

use std::process::Command;

use crate::process;
use crate::project::Project;
use crate::vm::{self, KernelChoice, VmArgs};

#[derive(Debug, clap::Args)]
pub struct DemoArgs {
    /// Run inside the Debian 6.12 VM (the default; kept for compatibility).
    #[arg(long, conflicts_with = "host")]
    pub vm: bool,
    /// Run on this machine's kernel instead of the VM (needs BPF LSM on this kernel until the
    /// fallback backend lands).
    #[arg(long)]
    pub host: bool,
}

pub fn run(args: DemoArgs) -> anyhow::Result<u8> {
    if !args.host {
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
    let enforcer = crate::build::build_enforcer(&project, &toolchain, false)?;
    let status = process::status(
        Command::new(&enforcer)
            .arg("demo")
            .env("ENFORCER_BIN", &enforcer)
            .env("ENFORCER_POLICIES", project.policies_dir())
            .env("ENFORCER_KERNEL", "host")
            .current_dir(&project.root),
    )?;
    Ok(status
        .code()
        .and_then(|code| u8::try_from(code).ok())
        .unwrap_or(1))
}
