//! `enforcer daemon`: run the enforcement daemon in the foreground (systemd, tests), or remove
//! its pinned kernel state with `--uninstall`.

use std::path::PathBuf;
use std::process::ExitCode;

use crate::daemon::config::{DaemonConfig, Overrides};
use crate::{daemon, kernel, paths};

#[derive(Debug, clap::Args)]
pub struct DaemonArgs {
    /// Configuration file [default: /etc/enforcer/enforcer.toml; built-in defaults if that is absent]
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    #[command(flatten)]
    pub overrides: Overrides,
    /// Remove the pinned programs, maps and links and exit. Enforcement stops for every agent.
    #[arg(long)]
    pub uninstall: bool,
}

pub fn run(args: DaemonArgs) -> anyhow::Result<ExitCode> {
    let path = args
        .config
        .clone()
        .unwrap_or_else(|| PathBuf::from(paths::CONFIG_FILE));
    let mut config = DaemonConfig::load(&path, args.config.is_some())?;
    config.apply(&args.overrides)?;
    init_logging(&config.log_level);
    if args.uninstall {
        if kernel::uninstall(&config.pin_dir)? {
            println!(
                "removed pinned kernel state under {}: every hook is detached, agents are no longer confined",
                config.pin_dir.display()
            );
        } else {
            println!("nothing pinned under {}", config.pin_dir.display());
        }
        return Ok(ExitCode::SUCCESS);
    }
    daemon::service::run(&config, Some(&path))?;
    Ok(ExitCode::SUCCESS)
}

fn init_logging(filter: &str) {
    // The filter was validated with the config; stderr keeps stdout for the `ready` line.
    let filter = tracing_subscriber::EnvFilter::try_new(filter).unwrap_or_else(|_| "info".into());
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(ansi)
        .try_init();
}
