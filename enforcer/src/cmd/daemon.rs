//! `enforcer daemon`: run the enforcement daemon in the foreground (systemd, tests), check a
//! configuration without touching the kernel (`--check-config`), or remove its pinned kernel
//! state (`--uninstall`).
//!
//! Exit status: 0 success; 78 (EX_CONFIG) the configuration, a policy or a path it names is
//! not usable (`--check-config`, or a daemon that cannot start for that reason: the systemd
//! unit does not restart it); 2 any other error.

use std::{path::PathBuf, process::ExitCode};

use crate::{
    daemon,
    daemon::config::{DaemonConfig, Overrides},
    kernel, paths,
};

#[derive(Debug, clap::Args)]
pub struct DaemonArgs {
    /// Configuration file [default: /etc/enforcer/enforcer.toml; built-in defaults if that is absent]
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    #[command(flatten)]
    pub overrides: Overrides,
    /// Remove the pinned programs, maps and links and exit. Enforcement stops for every agent.
    #[arg(long, conflicts_with = "check_config")]
    pub uninstall: bool,
    /// Check the configuration, the policies and every path the daemon uses (audit log
    /// writable, pin dir on bpffs, state and socket directories, groups), touching no kernel
    /// state and creating nothing; exit 0 if usable, 78 if not.
    #[arg(long)]
    pub check_config: bool,
}

/// sysexits.h EX_CONFIG: the systemd unit's RestartPreventExitStatus.
pub const EXIT_CONFIG: u8 = 78;

pub fn run(args: DaemonArgs) -> anyhow::Result<ExitCode> {
    let path = args
        .config
        .clone()
        .unwrap_or_else(|| PathBuf::from(paths::CONFIG_FILE));
    let config = DaemonConfig::load(&path, args.config.is_some()).and_then(|mut config| {
        config.apply(&args.overrides)?;
        Ok(config)
    });
    let config = match config {
        Ok(config) => config,
        Err(e) => {
            eprintln!("enforcer: error: {e}");
            return Ok(ExitCode::from(EXIT_CONFIG));
        }
    };
    if args.check_config {
        return Ok(check_config(&config, &path));
    }
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

fn check_config(config: &DaemonConfig, path: &std::path::Path) -> ExitCode {
    println!("config {}: valid", path.display());
    let checks = daemon::check::check(config);
    let mut problems = 0;
    for c in &checks {
        match &c.outcome {
            Ok(how) => println!("ok       {}: {how}", c.what),
            Err(why) => {
                problems += 1;
                println!("PROBLEM  {}: {}", c.what, why.replace('\n', "\n         "));
            }
        }
    }
    if problems == 0 {
        println!("usable: the daemon can start with this configuration (kernel support is not checked: `enforcer probe`)");
        ExitCode::SUCCESS
    } else {
        println!(
            "{problems} problem{} found",
            if problems == 1 { "" } else { "s" }
        );
        ExitCode::from(EXIT_CONFIG)
    }
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
