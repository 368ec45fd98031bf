//! `cargo xtask bench`: what enforcement costs. Runs `enforcer-testkit bench` (release build,
//! with the release `enforcer` beside it) on this
//! machine's kernel (fallback backend, policy cost, event pipeline) and inside the Debian 6.12
//! kernel under QEMU (BPF LSM), and writes the tables with the command, kernel, machine and date
//! to docs/benchmarks.md. Every figure is a ratio or a count from one run: the machine is shared
//! and the VM is software-emulated, so absolute times are not comparable across runs.

use std::{
    io::Write as _,
    process::{Command, Stdio},
    time::Duration,
};

use anyhow::{bail, Context as _};

use crate::{
    initramfs::{self, Contents, Unpacked},
    kernels::{self, Series},
    project::Project,
    vm::{self, Boot, Phase},
};

const BEGIN: &str = "@@ENFORCER-BENCH-BEGIN@@";
const END: &str = "@@ENFORCER-BENCH-END@@";

#[derive(Debug, clap::Args)]
pub struct BenchArgs {
    /// A few iterations only (proves the benchmark runs; figures mean nothing). Does not write
    /// docs/benchmarks.md unless --write is given.
    #[arg(long)]
    pub quick: bool,
    /// Write docs/benchmarks.md even with --quick.
    #[arg(long)]
    pub write: bool,
    /// Skip the QEMU (BPF LSM) part.
    #[arg(long)]
    pub host_only: bool,
    /// Skip the host (fallback, cost, pipeline) part.
    #[arg(long)]
    pub vm_only: bool,
    /// Only the event pipeline on the host (kernel -> audit log, release build): prints its
    /// table, never writes docs/benchmarks.md (a partial run).
    #[arg(long, conflicts_with_all = ["vm_only", "host_only", "write"])]
    pub pipeline_only: bool,
    /// Limit for the VM boot.
    #[arg(long, default_value_t = 1800, value_name = "SECS")]
    pub vm_timeout: u64,
}

/// The section `enforcer-testkit bench` printed between its markers.
fn section(output: &str) -> Option<String> {
    let start = output.find(BEGIN)? + BEGIN.len();
    let end = output[start..].find(END)? + start;
    Some(output[start..end].trim().to_string() + "\n")
}

/// The Debian packages of the peers: auditd (with the libraries it needs that a minimal system
/// lacks) and AppArmor's parser.
const PEER_PACKAGES: [&str; 4] = ["auditd", "libauparse0", "libwrap0", "apparmor"];
/// Their programs the benchmark runs (relative to the unpacked root).
const PEER_PROGRAMS: [&str; 3] = ["sbin/auditd", "sbin/auditctl", "sbin/apparmor_parser"];
/// Where the guest finds them.
const GUEST_PEERS: &str = "/peers";

/// The peers' packages, unpacked with `apt-get download` + `dpkg-deb -x` under target/: they
/// are run from there (and from a copy in the guest), never installed.
fn unpack_peers(project: &Project) -> anyhow::Result<std::path::PathBuf> {
    let dir = project.root.join("target/xtask/peers");
    let root = dir.join("root");
    if PEER_PROGRAMS.iter().all(|p| root.join(p).exists()) {
        return Ok(root);
    }
    std::fs::create_dir_all(&dir)?;
    let download = || {
        Command::new("apt-get")
            .arg("download")
            .args(PEER_PACKAGES)
            .current_dir(&dir)
            .status()
    };
    let mut status = download()?;
    if !status.success() {
        // A fresh machine has no package lists yet: fetch them once and try again.
        crate::bootstrap::apt_get_update()?;
        status = download()?;
    }
    if !status.success() {
        bail!(
            "apt-get download {} failed ({status})",
            PEER_PACKAGES.join(" ")
        );
    }
    for deb in std::fs::read_dir(&dir)?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "deb"))
    {
        let status = Command::new("dpkg-deb")
            .arg("-x")
            .arg(&deb)
            .arg(&root)
            .status()?;
        if !status.success() {
            bail!("dpkg-deb -x {} failed ({status})", deb.display());
        }
    }
    Ok(root)
}

fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines().find_map(|l| {
                l.strip_prefix("model name")
                    .map(|v| v.trim_start_matches([' ', '\t', ':']).to_string())
            })
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let mem = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines()
                .find_map(|l| l.strip_prefix("MemTotal:").map(|v| v.trim().to_string()))
        })
        .unwrap_or_default();
    let nproc = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(0);
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    format!(
        "{nproc} CPUs ({cpu}), {mem} memory, host kernel {}",
        kernel.trim()
    )
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|l| l.split_whitespace().next().map(str::to_string))
        .unwrap_or_else(|| "unknown".into())
}

fn date() -> String {
    Command::new("date")
        .args(["-u", "+%Y-%m-%d %H:%M UTC"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default()
}

pub fn run(args: BenchArgs) -> anyhow::Result<u8> {
    let project = Project::locate();
    let toolchain = crate::bootstrap::ensure(&project)?;
    let binaries = crate::build::build_binaries(&project, &toolchain, true)?;
    // `enforcer-testkit bench` starts `enforcer daemon` / `enforcer run` from ENFORCER_BIN.
    let testkit = || {
        let mut command = Command::new(&binaries.testkit);
        command.env("ENFORCER_BIN", &binaries.enforcer);
        command
    };
    let quick: &[&str] = if args.quick { &["--quick"] } else { &[] };
    let mut sections = Vec::new();
    let started = std::time::Instant::now();

    if args.pipeline_only {
        let status = testkit()
            .args(["bench", "--backend", "fallback", "--no-micro", "--pipeline"])
            .args(quick)
            .status()
            .context("running enforcer-testkit bench --pipeline on the host")?;
        if !status.success() {
            bail!("enforcer-testkit bench --pipeline failed ({status})");
        }
        return Ok(0);
    }
    let load_before = load_average();
    // Without them the report says the peers were not measured, and why.
    let peer_root = unpack_peers(&project)
        .map_err(|e| eprintln!("xtask bench: auditd and AppArmor unavailable: {e:#}"))
        .ok();

    if !args.vm_only {
        eprintln!(
            "xtask bench: host kernel, fallback backend (+ policy cost, event pipeline, auditd)"
        );
        let mut peers = vec!["--peers".to_string()];
        if let Some(root) = &peer_root {
            peers.extend([
                "--audit-root".to_string(),
                root.to_string_lossy().into_owned(),
            ]);
            // The host kernel runs no AppArmor: the report says so.
            peers.extend([
                "--apparmor-parser".to_string(),
                root.join("sbin/apparmor_parser")
                    .to_string_lossy()
                    .into_owned(),
            ]);
        }
        let output = testkit()
            .args(["bench", "--backend", "fallback", "--cost", "--pipeline"])
            .args(&peers)
            .args(quick)
            .args(["--note", "Host kernel, real hardware threads shared with other work: ratios within this run only."])
            .stderr(Stdio::inherit())
            .output()
            .context("running enforcer-testkit bench on the host")?;
        let out = String::from_utf8_lossy(&output.stdout);
        match section(&out) {
            Some(s) if output.status.success() => sections.push(s),
            _ => bail!(
                "enforcer-testkit bench on the host failed ({}):\n{out}",
                output.status
            ),
        }
    }

    if !args.host_only {
        eprintln!("xtask bench: Debian 6.12 under QEMU TCG, BPF LSM backend");
        let kernel = kernels::resolve(Series::V6_12, &project.cache_dir())?;
        let marker = vm::exit_marker();
        let scratch = project.scratch_dir("bench-vm").context("scratch dir")?;
        let mut command = vec![
            "enforcer-testkit".to_string(),
            "bench".into(),
            "--backend".into(),
            "lsm".into(),
            "--peers".into(),
        ];
        if peer_root.is_some() {
            command.extend([
                "--audit-root".into(),
                GUEST_PEERS.into(),
                "--apparmor-parser".into(),
                format!("{GUEST_PEERS}/sbin/apparmor_parser"),
            ]);
        }
        command.extend(quick.iter().map(|s| s.to_string()));
        command.extend([
            "--note".into(),
            "QEMU TCG is software emulation of the CPU: absolute times are meaningless, only ratios within this one run mean anything.".into(),
        ]);
        let image = initramfs::build(
            &Contents {
                enforcer: &binaries.enforcer,
                testkit: &binaries.testkit,
                policies: &project.policies_dir(),
                added: &[],
                unpacked: &peer_root
                    .iter()
                    .map(|root| Unpacked {
                        root,
                        guest: GUEST_PEERS,
                        programs: &PEER_PROGRAMS,
                    })
                    .collect::<Vec<_>>(),
                kernel_label: Series::V6_12.label(),
                command: &command,
                exit_marker: &marker,
            },
            scratch.path(),
        )?;
        let mut console = String::new();
        let status = vm::boot(
            &Boot {
                kernel: &kernel,
                initrd: &image,
                bpf_lsm: true,
                apparmor: true,
                timeout: Duration::from_secs(args.vm_timeout),
                exit_marker: &marker,
            },
            &mut |phase, line| {
                if phase == Phase::Command {
                    if !line.contains(BEGIN) && console.contains(BEGIN) == console.contains(END) {
                        eprintln!("  vm: {line}");
                    }
                    console.push_str(line);
                    console.push('\n');
                }
            },
        )?;
        match section(&console) {
            Some(s) if status.code == 0 => sections.push(format!(
                "{s}\nGuest kernel package: `{}`.\n",
                kernel.package
            )),
            _ => bail!(
                "enforcer-testkit bench in the 6.12 VM failed (exit {}):\n{console}",
                status.code
            ),
        }
    }

    let mut doc = String::from("# Benchmarks\n\n");
    doc.push_str(
        "What enforcement costs, measured by `cargo xtask bench` (see \"Method\" below).\n\n",
    );
    doc.push_str(&format!(
        "- Command: `cargo xtask bench{}`\n- Machine: {}\n- Load: 1-minute load average {} at the start, {} at the end (`/proc/loadavg`; the machine is shared with other work, which the figures' spread shows)\n- Date: {}\n- Wall time: {:.0} s\n\n",
        if args.quick { " --quick" } else { "" },
        machine(),
        load_before,
        load_average(),
        date(),
        started.elapsed().as_secs_f64()
    ));
    doc.push_str(METHOD);
    doc.push_str("\n## Results\n\n");
    for s in &sections {
        doc.push_str(s);
        doc.push('\n');
    }
    print!("{doc}");
    if !args.quick || args.write {
        let path = project.root.join("docs/benchmarks.md");
        // The analysis of missed targets is written by hand: keep it, marked as belonging to
        // the previous figures, so a refresh never silently drops it.
        if let Some(analysis) = std::fs::read_to_string(&path)
            .ok()
            .as_deref()
            .and_then(hand_written_analysis)
        {
            doc.push_str(&format!("\n{ANALYSIS_HEADING}\n\n> Carried over from an earlier run by `cargo xtask bench`: check it against the figures above.\n"));
            doc.push_str(analysis);
        }
        let mut f =
            std::fs::File::create(&path).with_context(|| format!("writing {}", path.display()))?;
        f.write_all(doc.as_bytes())?;
        eprintln!("xtask bench: wrote {}", path.display());
    }
    Ok(0)
}

/// The hand-written section of docs/benchmarks.md that a rewrite carries over.
const ANALYSIS_HEADING: &str = "## Targets missed and why";

/// What follows the analysis heading (without the heading and any earlier carry-over notice).
fn hand_written_analysis(doc: &str) -> Option<&str> {
    let (_, rest) = doc.split_once(ANALYSIS_HEADING)?;
    let rest = rest.trim_start_matches('\n');
    Some(match rest.strip_prefix("> Carried over") {
        Some(notice) => notice.split_once("\n").map_or("", |(_, after)| after),
        None => rest,
    })
}

const METHOD: &str = "## Method

- **One process run, side by side.** `enforcer-testkit bench` starts two worker processes running the
  same code: one registered as the agent `bench` (\"confined agent\"), one not (\"non-agent\").
  Each round measures every operation in both workers twice: once with the enforcer's programs
  unloaded (\"baseline\": no enforcer program in the kernel at all) and once with them attached.
  Phases alternate ABBA across rounds and the workers alternate within a phase, so the noise of
  this shared 2-CPU machine hits every variant alike.
- **Figures.** Per-operation time in ns: median with the 10th-90th percentile over all samples.
  The ratio is taken per round (round median with / round median without the programs, same
  process), then its median and range over rounds are reported. Only ratios within one run mean
  anything; absolute times move with the machine's load and, in the VM, with emulation.
- **Operations.** open+close (O_RDONLY) of an allowed and a denied file, 1 and 16 path
  components deep; posix_spawn+waitpid of `/bin/busybox` as `true`; TCP connect to a loopback
  listener (+close with RST); UDP sendto loopback. Opens repeat with policies of 10, 1,000,
  10,000 and 100,000 rules (a generated mix of exact paths, subtrees, `*` wildcards, `**/NAME`
  and `**/*.EXT` denies and CIDR:port rules, plus the benchmark's own allows).
- **Peers, side by side.** A second run of the same operations with the 10-rule policy puts
  the peers in the same rounds as the enforcer: each round runs every phase once (baseline,
  enforcer, enforcer with every decision logged, auditd, AppArmor; the order reverses every
  other round) on the same two workers, and each phase's ratio is to that round's baseline.
  The measured worker is at once the enforcer's agent, the process auditd's rule selects (by
  its login uid) and the process AppArmor confines (aa_change_profile); each peer is switched
  on only for its phase (programs attached; auditd started with its rule and stopped once it
  received every record; profile loaded, and removed after, which leaves the worker
  unconfined). The enforcer's events are written to a JSON-lines audit log as the daemon
  writes them. *Same audit coverage*: auditd logs every open/openat/openat2/execve/connect/
  sendto/sendmsg of the measured process (Debian's auditd 3.0.9 with its shipped auditd.conf
  and rule-file settings, log on the same file system); the enforcer, with `log.file_allow`,
  logs every decision on those operations except allowed sends, which it never logs (that row
  is not compared). The report counts both logs' records against the operations done. Auditing
  is enabled once before the workers start, as on any system with auditd installed (the kernel
  gives a process an audit context only if auditing was ever enabled when it forked), so every
  phase, the baseline included, runs with the audit syscall path. *Same file rules*: the
  AppArmor profile is generated from the agent's compiled rules (reads `r`, exec `ix`; its
  connect rules can only become `network inet stream/dgram`, so the network rows are not
  compared) and loaded with Debian's apparmor_parser 3.0.8 on the running kernel; it is
  compared with the enforcer's default logging, as AppArmor logs denials only.
- **Event pipeline.** A real daemon (fallback backend) and one agent opening a denied file at
  stepped rates; every open must be a line in the log or counted in a `lost` record. One agent
  process on this 2-CPU machine cannot offer more than roughly 100-250k opens/s, so `written/s`
  is bounded by what is offered; the daemon CPU per event gives the rate one daemon CPU
  sustains (`capacity`). `cargo xtask bench --pipeline-only` runs only this part.
- **Where.** BPF LSM and AppArmor figures come from the Debian 6.12 kernel under QEMU TCG
  (software emulation of the CPU: only ratios within that run mean anything), booted with
  `lsm=landlock,lockdown,yama,apparmor,bpf` so one boot serves both; processes without a
  profile then pass AppArmor's unconfined checks in every phase, baselines included.
  Fallback, policy cost and event pipeline figures, and auditd beside the fallback, come from
  the host kernel (no usable BPF LSM there, no AppArmor). On the fallback a denied open is not
  refused (audit mode; the policy's `on_violation` decides between logging and SIGKILL), so
  it still succeeds.
";

#[cfg(test)]
mod tests {
    #[test]
    fn section_is_found_between_markers_in_console_noise() {
        let out =
            "boot noise\n@@ENFORCER-BENCH-BEGIN@@\n### t\n| a |\n@@ENFORCER-BENCH-END@@\npoweroff";
        assert_eq!(super::section(out).as_deref(), Some("### t\n| a |\n"));
    }

    #[test]
    fn the_hand_written_analysis_survives_a_rewrite_once() {
        let first = "# B\n## Results\nold\n\n## Targets missed and why\n\nWhy: slow.\n";
        assert_eq!(super::hand_written_analysis(first), Some("Why: slow.\n"));
        let carried = "# B\n## Results\nnew\n\n## Targets missed and why\n\n> Carried over from an earlier run\nWhy: slow.\n";
        assert_eq!(super::hand_written_analysis(carried), Some("Why: slow.\n"));
        assert_eq!(super::hand_written_analysis("# B\n## Results\n"), None);
    }
}
