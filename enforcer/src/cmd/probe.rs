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
            } else {
                println!("enforcement: none on this kernel: BPF LSM is unusable and the fallback backend is not built yet");
            }
        }
    }
    Ok(if report.usable("bpf-lsm") { ExitCode::SUCCESS } else { ExitCode::from(1) })
}
