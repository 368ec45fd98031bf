//! `cargo xtask vm`: boot a Debian cloud kernel under QEMU (TCG) with enforcer, the policies and
//! any added files in an initramfs, run one command as root and return its exit status.

use std::{
    io::{BufRead as _, BufReader, Write as _},
    path::{Path, PathBuf},
    process::{Command, Stdio},
    sync::mpsc,
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use anyhow::Context as _;

use crate::{
    initramfs::{self, Contents},
    kernels::{self, Kernel, Series},
    process::{self, ProcessError},
    project::Project,
};

/// Default limit for one boot; TCG is slow but a test run that takes longer is stuck.
pub const DEFAULT_TIMEOUT_SECS: u64 = 600;
/// How long QEMU may take to exit after the guest reported its status.
const POWEROFF_GRACE: Duration = Duration::from_secs(30);

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum KernelChoice {
    #[value(name = "6.1")]
    V6_1,
    #[value(name = "6.12")]
    V6_12,
    All,
}

impl KernelChoice {
    pub fn series(self) -> Vec<Series> {
        match self {
            KernelChoice::V6_1 => vec![Series::V6_1],
            KernelChoice::V6_12 => vec![Series::V6_12],
            KernelChoice::All => Series::ALL.to_vec(),
        }
    }
}

#[derive(Debug, clap::Args)]
pub struct VmArgs {
    /// Which kernel(s) to boot; `all` boots each in turn.
    #[arg(long, value_enum)]
    pub kernel: KernelChoice,
    /// Boot without `bpf` in `lsm=`: BPF LSM programs load and attach but never run.
    #[arg(long)]
    pub no_bpf_lsm: bool,
    /// Put FILE into the guest at /add/<basename> (on PATH), with its shared libraries.
    #[arg(long = "add", value_name = "FILE")]
    pub added: Vec<PathBuf>,
    /// Give up (and fail) after this many seconds per boot.
    #[arg(long, default_value_t = DEFAULT_TIMEOUT_SECS, value_name = "SECS")]
    pub timeout: u64,
    /// Use the release build of enforcer.
    #[arg(long)]
    pub release: bool,
    /// The command to run as root inside the guest.
    #[arg(last = true, required = true, value_name = "CMD")]
    pub command: Vec<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum VmError {
    #[error(transparent)]
    Process(#[from] ProcessError),
    #[error("kernel {kernel}: no exit status after {seconds} s; QEMU was killed (raise --timeout if the guest is just slow)")]
    Timeout { kernel: String, seconds: u64 },
    #[error("kernel {kernel}: the guest stopped without reporting the command's exit status (kernel panic or /init failure?); last console lines:\n{tail}")]
    NoExitStatus { kernel: String, tail: String },
    #[error("kernel {kernel}: the guest crashed before /init started, {attempts} times in a row; last console lines:\n{tail}")]
    CrashedBeforeInit {
        kernel: String,
        attempts: u32,
        tail: String,
    },
}

pub fn run(args: VmArgs) -> anyhow::Result<u8> {
    let project = Project::locate();
    let toolchain = crate::bootstrap::ensure(&project)?;
    let binaries = crate::build::build_binaries(&project, &toolchain, args.release)?;
    let mut first_failure = None;
    for series in args.kernel.series() {
        let kernel = kernels::resolve(series, &project.cache_dir())?;
        if matches!(args.kernel, KernelChoice::All) {
            println!("=== kernel {} ({}) ===", series.label(), kernel.package);
        }
        let marker = exit_marker();
        let scratch = project
            .scratch_dir(&format!("vm-{}", series.label()))
            .context("creating a scratch directory for the initramfs")?;
        let image = initramfs::build(
            &Contents {
                enforcer: &binaries.enforcer,
                testkit: &binaries.testkit,
                policies: &project.policies_dir(),
                added: &args.added,
                unpacked: &[],
                kernel_label: series.label(),
                command: &args.command,
                exit_marker: &marker,
            },
            scratch.path(),
        )?;
        let stdout = std::io::stdout();
        let status = boot(
            &Boot {
                kernel: &kernel,
                initrd: &image,
                bpf_lsm: !args.no_bpf_lsm,
                apparmor: false,
                timeout: Duration::from_secs(args.timeout),
                exit_marker: &marker,
            },
            &mut |phase, line| {
                // Firmware and boot messages only matter when the boot fails, and then the error
                // quotes them.
                if phase == Phase::Command {
                    let _ = writeln!(stdout.lock(), "{line}");
                }
            },
        )?;
        if status.code != 0 && first_failure.is_none() {
            first_failure = Some(status.code);
        }
        if matches!(args.kernel, KernelChoice::All) {
            println!(
                "=== kernel {}: exit status {} after {:.1} s ===",
                series.label(),
                status.code,
                status.elapsed.as_secs_f64()
            );
        }
    }
    Ok(first_failure
        .map(|code| u8::try_from(code).unwrap_or(1))
        .unwrap_or(0))
}

/// A marker line no command would print by accident.
pub fn exit_marker() -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or_default();
    format!(
        "@@ENFORCER-VM-EXIT-{}-{nanos}@@ status=",
        std::process::id()
    )
}

pub struct Boot<'a> {
    pub kernel: &'a Kernel,
    pub initrd: &'a Path,
    pub bpf_lsm: bool,
    /// Also AppArmor in `lsm=` (Debian's kernels build it in).
    pub apparmor: bool,
    pub timeout: Duration,
    pub exit_marker: &'a str,
}

#[derive(Debug, Clone, Copy)]
pub struct BootStatus {
    /// The guest command's exit status.
    pub code: i32,
    /// From QEMU start to the exit status line.
    pub elapsed: Duration,
}

/// Where a console line came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Firmware and kernel messages before /init started, and the kernel's power-off lines.
    Boot,
    /// Everything between /init's start and the exit status: the command's output.
    Command,
}

/// Boot attempts when the guest kernel dies before /init starts. That is not the project's code
/// failing: under TCG with two vCPUs the kernel's own boot-time code patching occasionally
/// oopses (`Oops: int3` during initcalls), more often on a loaded machine.
const BOOT_ATTEMPTS: u32 = 3;

/// Boots, hands every console line (without `\r` and without the markers) to `on_line`, and
/// returns the status the guest reported. A guest that crashes before /init starts is booted
/// again (up to [`BOOT_ATTEMPTS`] times); one that fails after /init started never is.
pub fn boot(boot: &Boot<'_>, on_line: &mut dyn FnMut(Phase, &str)) -> Result<BootStatus, VmError> {
    let mut attempt = 1;
    loop {
        match boot_once(boot, on_line) {
            Err(VmError::CrashedBeforeInit { kernel, .. }) if attempt < BOOT_ATTEMPTS => {
                let note = format!(
                    "xtask: kernel {kernel} crashed before /init started (attempt {attempt} of {BOOT_ATTEMPTS}); booting it again"
                );
                eprintln!("{note}");
                on_line(Phase::Boot, &note);
                attempt += 1;
            }
            Err(VmError::CrashedBeforeInit { kernel, tail, .. }) => {
                return Err(VmError::CrashedBeforeInit {
                    kernel,
                    attempts: attempt,
                    tail,
                })
            }
            other => return other,
        }
    }
}

fn boot_once(boot: &Boot<'_>, on_line: &mut dyn FnMut(Phase, &str)) -> Result<BootStatus, VmError> {
    // In the order of Debian's CONFIG_LSM.
    let lsm = match (boot.apparmor, boot.bpf_lsm) {
        (false, true) => "landlock,lockdown,yama,bpf",
        (false, false) => "landlock,lockdown,yama",
        (true, true) => "landlock,lockdown,yama,apparmor,bpf",
        (true, false) => "landlock,lockdown,yama,apparmor",
    };
    let mut qemu = Command::new("qemu-system-x86_64");
    qemu.args([
        "-accel",
        "tcg",
        "-cpu",
        "max",
        "-m",
        "2048",
        "-smp",
        "2",
        "-nographic",
        "-no-reboot",
    ])
    // No network card: nothing needs one, and its boot ROM only adds console noise.
    .args(["-nic", "none"])
    .arg("-kernel")
    .arg(&boot.kernel.vmlinuz)
    .arg("-initrd")
    .arg(boot.initrd)
    .arg("-append")
    .arg(format!("console=ttyS0 quiet lsm={lsm} panic=-1"))
    // No stdin: QEMU must not grab a terminal, and CI has none.
    .stdin(Stdio::null())
    .stdout(Stdio::piped())
    .stderr(Stdio::inherit());
    let label = boot.kernel.series.label().to_string();
    let started = Instant::now();
    let mut child = qemu.spawn().map_err(|source| ProcessError::Spawn {
        command: process::describe(&qemu),
        source,
    })?;
    let console = child.stdout.take().expect("piped stdout");
    let (sender, receiver) = mpsc::channel::<String>();
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(console).split(b'\n') {
            let Ok(line) = line else { break };
            let text = String::from_utf8_lossy(&line).replace('\r', "");
            if sender.send(text).is_err() {
                break;
            }
        }
    });

    let deadline = started + boot.timeout;
    let mut reported: Option<BootStatus> = None;
    let mut phase = Phase::Boot;
    let mut init_started = false;
    let mut tail: Vec<String> = Vec::new();
    loop {
        let limit = match reported {
            Some(status) => started + status.elapsed + POWEROFF_GRACE,
            None => deadline,
        };
        let Some(wait) = limit.checked_duration_since(Instant::now()) else {
            break;
        };
        match receiver.recv_timeout(wait) {
            Ok(line) => {
                if phase == Phase::Boot
                    && reported.is_none()
                    && line.contains(initramfs::START_MARKER)
                {
                    phase = Phase::Command;
                    init_started = true;
                } else if let Some(position) = line.find(boot.exit_marker) {
                    let (before, after) = line.split_at(position);
                    if !before.is_empty() {
                        on_line(phase, before);
                    }
                    let code = after[boot.exit_marker.len()..].trim().parse().unwrap_or(-1);
                    reported = Some(BootStatus {
                        code,
                        elapsed: started.elapsed(),
                    });
                    phase = Phase::Boot;
                } else {
                    on_line(phase, &line);
                    tail.push(line);
                    if tail.len() > 40 {
                        tail.remove(0);
                    }
                }
            }
            Err(mpsc::RecvTimeoutError::Timeout) => break,
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
        }
    }
    // Either QEMU closed the console (it exited) or a limit passed: make sure it is gone.
    let _ = child.kill();
    let _ = child.wait();
    let _ = reader.join();
    match reported {
        Some(status) => Ok(status),
        None if started.elapsed() >= boot.timeout => Err(VmError::Timeout {
            kernel: label,
            seconds: boot.timeout.as_secs(),
        }),
        None if !init_started => Err(VmError::CrashedBeforeInit {
            kernel: label,
            attempts: 1,
            tail: tail.join("\n"),
        }),
        None => Err(VmError::NoExitStatus {
            kernel: label,
            tail: tail.join("\n"),
        }),
    }
}
