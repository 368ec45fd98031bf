//! `enforcer replay`: decide the recorded events of an audit log again under a candidate policy
//! with the reference evaluator, and print what would change.
//! Exit status: 0 nothing would change (or changes, without --fail-on-change), 1 something would
//! change and --fail-on-change was given, 2 invalid policy, unreadable log or usage error.

use std::{io::Write as _, net::IpAddr, path::PathBuf, process::ExitCode};

use anyhow::bail;

use super::check::Format;
use crate::{
    audit::text::{escape, escape_lines, TerminalSafe},
    daemon::config::DaemonConfig,
    lifecycle::{
        describe, for_each_event,
        replay::{Change, Decided, Replay, ReplayReport},
        requests::HostsSeen,
        LogSource,
    },
    policy::{self, hosts, Diagnostics},
};

#[derive(Debug, clap::Args)]
pub struct ReplayArgs {
    /// Candidate policy files or directories (repeatable).
    #[arg(long = "policy", value_name = "FILE_OR_DIR", required = true)]
    pub policy: Vec<PathBuf>,
    /// Audit log files, read in the order given (repeatable: name rotated files oldest first)
    /// [default: the daemon's audit log with its rotated files]
    #[arg(long = "log", value_name = "FILE")]
    pub log: Vec<PathBuf>,
    /// Replay only this agent's events.
    #[arg(long, value_name = "NAME")]
    pub agent: Option<String>,
    #[arg(long, value_enum, default_value_t)]
    pub format: Format,
    /// Exit 1 when any recorded event would be decided the other way.
    #[arg(long)]
    pub fail_on_change: bool,
    /// Use this address for a host name in net rules (repeatable). Without it, a host gets the
    /// addresses the log shows it allowed.
    #[arg(long = "resolve", value_name = "HOST=IP", value_parser = hosts::parse_resolve_flag)]
    pub resolve: Vec<(String, IpAddr)>,
    /// Resolve host names neither the log nor --resolve gives addresses for (off by default: a
    /// replay must not depend on DNS).
    #[arg(long)]
    pub system_resolver: bool,
    /// Daemon configuration naming the audit log (used without --log).
    #[arg(long, value_name = "FILE", default_value = crate::paths::CONFIG_FILE)]
    pub config: PathBuf,
}

pub fn run(args: ReplayArgs) -> anyhow::Result<ExitCode> {
    let set = match policy::load_paths(&args.policy) {
        Ok(set) => set,
        Err(diags) => return invalid(&diags, args.format),
    };
    let source = if args.log.is_empty() {
        let config = DaemonConfig::load(&args.config, false)?;
        if !config.audit.path.exists() {
            bail!(
                "no audit log at {} (use --log FILE)",
                config.audit.path.display()
            );
        }
        LogSource::WithRotations(config.audit.path)
    } else {
        LogSource::Files(args.log.clone())
    };
    let mut malformed = 0u64;
    let mut on_error = |e: crate::audit::AuditError| {
        malformed += 1;
        eprintln!("enforcer replay: skipping {}", escape(&e.to_string()));
    };

    // Host rules get the addresses the log shows they allowed: a replay decides them as the
    // kernel did, offline. Only read the log twice when the candidate names hosts.
    let host_names = hosts::host_names(&set.agents);
    let mut seen = HostsSeen::default();
    if !host_names.is_empty() {
        for_each_event(&source, &mut |e| seen.add(e), &mut |_| {})?;
    }
    let mut resolved = seen.resolved();
    for (host, ip) in &args.resolve {
        resolved.insert(host, *ip);
    }
    if args.system_resolver {
        for (host, why) in resolved.resolve_missing(host_names.iter().map(String::as_str)) {
            eprintln!("enforcer replay: cannot resolve {host}: {why}");
        }
    }
    let compiled = match policy::compile(&set, &resolved) {
        Ok(c) => c,
        Err(diags) => return invalid(&diags, args.format),
    };
    if let Some(agent) = &args.agent {
        if compiled.agent_by_name(agent).is_none() {
            bail!("no agent named `{agent}` in the candidate policy");
        }
    }
    let mut replay = Replay::new(&compiled, args.agent.as_deref());
    for_each_event(&source, &mut |e| replay.add(e), &mut on_error)?;
    let report = replay.finish();
    let unresolved: std::collections::BTreeSet<&str> = compiled
        .unresolved_hosts()
        .map(|h| h.host.as_str())
        .collect();

    match print(&args, &source, &report, &unresolved, malformed) {
        // The reader went away (`| head`): what it wanted is printed.
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => {}
        other => other?,
    }
    Ok(if args.fail_on_change && report.changed() {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

fn print(
    args: &ReplayArgs,
    source: &LogSource,
    report: &ReplayReport,
    unresolved: &std::collections::BTreeSet<&str>,
    malformed: u64,
) -> std::io::Result<()> {
    let mut out = std::io::stdout().lock();
    match args.format {
        Format::Json => {
            let json = serde_json::json!({
                "changed": report.changed(),
                "policy": args.policy,
                "logs": describe(source),
                "malformed_lines": malformed,
                "unresolved_hosts": unresolved,
                "report": report,
            });
            writeln!(
                out,
                "{}",
                serde_json::to_string_pretty(&json).expect("reports serialize")
            )?;
        }
        Format::Text => {
            let policies: Vec<String> = args
                .policy
                .iter()
                .map(|p| p.display().to_string())
                .collect();
            let mut out = TerminalSafe(&mut out);
            writeln!(
                out,
                "replay of {} against {}",
                policies.join(" "),
                describe(source)
            )?;
            print_text(&mut out, report)?;
            for host in unresolved {
                writeln!(out, "note: host {host} has no address (not in the log; use --resolve {host}=IP): its rules matched nothing")?;
            }
            if malformed > 0 {
                writeln!(out, "note: {malformed} malformed log lines skipped")?;
            }
        }
    }
    Ok(())
}

/// Exactly what `enforcer check` prints for invalid policies; exit 2.
fn invalid(diags: &Diagnostics, format: Format) -> anyhow::Result<ExitCode> {
    match format {
        Format::Text => {
            let mut err = std::io::stderr().lock();
            write!(err, "{}", escape_lines(&diags.to_string()))?;
            let s = if diags.len() == 1 { "" } else { "s" };
            writeln!(err, "{} error{s} in policies", diags.len())?;
        }
        Format::Json => {
            let report = serde_json::json!({ "valid": false, "errors": diags });
            println!("{}", serde_json::to_string_pretty(&report)?);
        }
    }
    Ok(ExitCode::from(2))
}

fn print_text(out: &mut impl std::io::Write, r: &ReplayReport) -> std::io::Result<()> {
    let sum = |c: &[Change]| c.iter().map(|c| c.count).sum::<u64>();
    writeln!(
        out,
        "{} events: {} replayed, {} unchanged, {} newly denied, {} newly allowed",
        r.events,
        r.replayed,
        r.unchanged,
        sum(&r.newly_denied),
        sum(&r.newly_allowed)
    )?;
    for (title, changes) in [
        ("newly denied (was allowed, now denied)", &r.newly_denied),
        ("newly allowed (was denied, now allowed)", &r.newly_allowed),
    ] {
        if changes.is_empty() {
            continue;
        }
        writeln!(out, "{title}:")?;
        for c in changes {
            // `exec exec` says nothing twice; `open read`, `connect udp` say what was asked.
            let access = if c.access == c.op {
                String::new()
            } else {
                format!(" {}", c.access)
            };
            writeln!(
                out,
                "  {:>5}x {} {}{access} {}",
                c.count, c.agent, c.op, c.target
            )?;
            writeln!(out, "          was {}", decided(&c.old))?;
            writeln!(out, "          now {}", decided(&c.new))?;
        }
    }
    if !r.unknown_agents.is_empty() {
        let agents: Vec<String> = r
            .unknown_agents
            .iter()
            .map(|a| format!("{} ({} events)", a.agent, a.events))
            .collect();
        writeln!(
            out,
            "not in the candidate policy, not replayed: {}",
            agents.join(", ")
        )?;
    }
    for s in &r.skipped {
        writeln!(out, "not replayable: {} {}", s.events, s.reason.describe())?;
    }
    if !r.changed() {
        writeln!(out, "no recorded decision would change")?;
    }
    Ok(())
}

fn decided(d: &Decided) -> String {
    match &d.pattern {
        Some(p) => format!("{} by {} \"{}\"", d.verdict, d.rule, p),
        None => format!("{} ({})", d.verdict, d.rule),
    }
}
