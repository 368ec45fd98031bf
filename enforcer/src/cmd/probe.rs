//! `enforcer probe`: what this kernel supports, by trying.

use std::process::ExitCode;

use crate::kernel::probe;

#[derive(Debug, clap::Args)]
pub struct ProbeArgs {
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Text)]
    pub format: Format,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Text,
    Json,
}

/// Exit status 0 when BPF LSM enforcement works here, 1 when it does not.
pub fn run(args: ProbeArgs) -> anyhow::Result<ExitCode> {
    let report = probe::probe();
    match args.format {
        Format::Json => println!("{}", serde_json::to_string_pretty(&report)?),
        Format::Text => {
            println!("kernel {}", report.kernel);
            for f in &report.features {
                match &f.problem {
                    None => println!("  {:<22} yes", f.name),
                    Some(why) => println!("  {:<22} no: {why}", f.name),
                }
            }
            if report.usable("bpf-lsm") {
                println!("enforcement: BPF LSM (open, exec, connect/sendmsg denied in the kernel)");
            } else if report.usable("cgroup-sock-addr") {
                let files = if report.usable("file-exec-tracepoints") {
                    "open and exec are observed by tracepoints: logged, or SIGKILL per on_violation"
                } else {
                    "open and exec are not observed"
                };
                let changes = if report.usable("file-change-tracepoints") {
                    "unlink/rename/mkdir/... and unix-socket connects are observed at syscall entry (lexical paths): logged, or SIGKILL"
                } else {
                    "unlink/rename/mkdir/... and unix sockets are not observed"
                };
                println!("enforcement: fallback (connect/sendmsg denied in the kernel by cgroup hooks; {files}; {changes})");
                println!(
                    "  io_uring: {}",
                    crate::kernel::fallback::IO_URING_LIMITATION
                );
                println!(
                    "  processes, terminals, mounts: {}",
                    crate::kernel::fallback::PROCESS_LIMITATION
                );
            } else {
                println!("enforcement: none on this kernel: BPF LSM and the fallback backend are both unusable");
            }
        }
    }
    Ok(
        if report.usable("bpf-lsm") || report.usable("cgroup-sock-addr") {
            ExitCode::SUCCESS
        } else {
            ExitCode::from(1)
        },
    )
}
