//! `enforcer status`: the running daemon's health, backend, agents, per-rule enforcement and
//! counters. The text starts with one line, `healthy` or `degraded: <why>; <why>...`
//! ([`degraded`]). Exit status 0 healthy, 1 degraded, 3 when no daemon is running (like
//! systemctl), 2 any other error.

use std::{path::PathBuf, process::ExitCode};

use crate::{
    api::{
        client::{socket_path, ApiClient},
        protocol::StatusReport,
        ApiError, Request, Response,
    },
    audit::text::escape_lines,
};

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Text,
    Json,
}

#[derive(Debug, clap::Args)]
pub struct StatusArgs {
    /// The daemon's API socket [default: $ENFORCER_SOCKET or /run/enforcer/api.sock]
    #[arg(long, value_name = "PATH")]
    pub socket: Option<PathBuf>,
    #[arg(long, value_enum, default_value_t = Format::Text)]
    pub format: Format,
}

/// Exit status when no daemon answers.
const NOT_RUNNING: u8 = 3;
/// Exit status when the daemon answers but is degraded.
const DEGRADED: u8 = 1;
/// A kernel map this full is reported: at capacity, enforcement suffers (a full `PROCS` denies
/// new agent children everything, docs/daemon.md "Metrics").
const MAP_FULL_PERCENT: u64 = 90;

/// Why the daemon is not doing all its policy asks, from its status reply; empty when healthy.
/// Counts are since the daemon started. A rejected reload is not here: the running policy still
/// applies, and the reply does not say whether a later reload succeeded.
pub fn degraded(s: &StatusReport) -> Vec<String> {
    let mut why = Vec::new();
    if s.audit_backlog > 0 {
        why.push(format!(
            "{} audit records not written (the audit log cannot take them)",
            s.audit_backlog
        ));
    }
    let lost: u64 = s.losses.iter().map(|l| l.count).sum();
    if lost > 0 {
        why.push(format!("{lost} events lost"));
    }
    let failed: u64 = s.failures.iter().map(|f| f.count).sum();
    if failed > 0 {
        why.push(format!(
            "{failed} internal failures in the kernel programs (denied)"
        ));
    }
    let unsupported = s
        .rules
        .iter()
        .filter(|r| r.enforcement == crate::kernel::Enforcement::Unsupported.label())
        .count();
    if unsupported > 0 {
        why.push(format!(
            "{unsupported} rules unsupported by the {} backend on this kernel",
            s.backend
        ));
    }
    for m in &s.maps {
        if m.capacity > 0 && m.entries * 100 >= m.capacity * MAP_FULL_PERCENT {
            why.push(format!(
                "kernel map {} {} of {} entries in use",
                m.map, m.entries, m.capacity
            ));
        }
    }
    why
}

/// The first line of the text output.
pub fn summary(s: &StatusReport) -> String {
    let why = degraded(s);
    if why.is_empty() {
        "healthy".into()
    } else {
        format!("degraded: {}", why.join("; "))
    }
}

pub fn run(args: StatusArgs) -> anyhow::Result<ExitCode> {
    let socket = socket_path(args.socket);
    let status = match ApiClient::connect(&socket).and_then(|mut c| c.call(&Request::Status {})) {
        Ok(Response::Status(status)) => status,
        Ok(other) => anyhow::bail!("the daemon answered the status request with {other:?}"),
        Err(e @ ApiError::NotRunning { .. }) => {
            eprintln!("enforcer: {e}");
            return Ok(ExitCode::from(NOT_RUNNING));
        }
        Err(e) => return Err(e.into()),
    };
    match args.format {
        Format::Json => println!("{}", serde_json::to_string_pretty(&status)?),
        // Agent names, exe paths and daemon messages can hold anything: terminal-safe.
        Format::Text => print!("{}", escape_lines(&render_text(&status))),
    }
    Ok(if degraded(&status).is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(DEGRADED)
    })
}

pub fn render_text(s: &StatusReport) -> String {
    use std::fmt::Write as _;
    let mut out = String::new();
    let _ = writeln!(out, "{}", summary(s));
    let _ = writeln!(
        out,
        "daemon:   running, pid {}, since {} (up {}s)",
        s.daemon_pid, s.started, s.uptime_secs
    );
    let _ = writeln!(
        out,
        "policy:   version {} from {}",
        s.policy_version, s.policy_dir
    );
    let _ = writeln!(
        out,
        "reloads:  {} applied, {} rejected",
        s.reloads, s.reload_failures
    );
    if let Some(error) = &s.last_reload_error {
        let _ = writeln!(
            out,
            "          last rejection: {}",
            error.lines().next().unwrap_or("")
        );
    }
    let _ = writeln!(out, "backend:  {} on kernel {}", s.backend, s.kernel);
    for f in &s.features {
        let state = if f.available {
            "available".to_owned()
        } else {
            format!("unavailable: {}", f.reason.as_deref().unwrap_or("?"))
        };
        let _ = writeln!(out, "          {:<28} {state}", f.name);
    }
    let _ = writeln!(
        out,
        "audit:    {} ({} live subscribers)",
        s.audit_log, s.subscribers
    );
    if s.audit_backlog > 0 {
        let _ = writeln!(
            out,
            "          {} records NOT WRITTEN YET: the log cannot take them (see the daemon log)",
            s.audit_backlog
        );
    }
    let _ = writeln!(out, "\nagents:");
    for a in &s.agents {
        let _ = writeln!(
            out,
            "  {:<24} {:<8} {} processes",
            a.name, a.mode, a.processes
        );
        for session in &a.sessions {
            let _ = writeln!(
                out,
                "    session {} chain {}: {} processes, started {}",
                session.session,
                session.chain.join(">"),
                session.processes,
                session.started.as_deref().unwrap_or("(unknown)")
            );
            if let Some(envelope) = &session.envelope {
                let _ = writeln!(out, "      landlock envelope of {envelope}");
            }
        }
    }
    if !s.rules.is_empty() {
        let _ = writeln!(out, "\nrules:");
        let _ = writeln!(
            out,
            "  {:<20} {:<32} {:<17} WHY",
            "AGENT", "RULE", "ENFORCEMENT"
        );
        for r in &s.rules {
            let _ = writeln!(
                out,
                "  {:<20} {:<32} {:<17} {}",
                r.agent, r.rule, r.enforcement, r.why
            );
        }
    }
    let _ = writeln!(
        out,
        "\ngrants (live, each ends by itself in the kernel at its expiry):"
    );
    if s.grants.is_empty() {
        let _ = writeln!(out, "  none");
    }
    for g in &s.grants {
        let reason = g
            .reason
            .as_deref()
            .map(|r| format!(" ({r})"))
            .unwrap_or_default();
        let _ = writeln!(
            out,
            "  {:<5} {:<20} {:<36} until {}{reason}",
            g.id, g.agent, g.rule, g.expires
        );
    }
    let _ = writeln!(out, "\ndecisions since the daemon started:");
    if s.decisions.is_empty() {
        let _ = writeln!(out, "  none");
    }
    for d in &s.decisions {
        let _ = writeln!(
            out,
            "  {:<24} {:<10} {:<11} {}",
            d.agent, d.op, d.verdict, d.count
        );
    }
    if !s.maps.is_empty() {
        let _ = writeln!(out, "\nkernel maps (entries in use of capacity):");
        for m in &s.maps {
            let percent = if m.capacity == 0 {
                0.0
            } else {
                100.0 * m.entries as f64 / m.capacity as f64
            };
            let _ = writeln!(
                out,
                "  {:<14} {:>8} of {:<8} {percent:5.1}%",
                m.map, m.entries, m.capacity
            );
        }
    }
    let lost: u64 = s.losses.iter().map(|l| l.count).sum();
    let _ = writeln!(out, "\nlost events: {lost}");
    for l in &s.losses {
        let _ = writeln!(out, "  {:<24} {}", l.agent, l.count);
    }
    // Each one a decision the kernel could not make and denied (docs/kernel-maps.md).
    let failed: u64 = s.failures.iter().map(|f| f.count).sum();
    let _ = writeln!(out, "\ninternal failures (denied, fail closed): {failed}");
    for f in s.failures.iter().filter(|f| f.count > 0) {
        let _ = writeln!(out, "  {:<24} {}", f.point, f.count);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::protocol::{
        AgentReport, FailureCount, MapFillReport, RuleReport, SessionReport,
    };

    #[test]
    fn the_first_line_says_healthy_or_every_reason_it_is_not() {
        let mut status = StatusReport {
            backend: "fallback".into(),
            rules: vec![RuleReport {
                enforcement: "enforced-by-kill".into(),
                ..Default::default()
            }],
            maps: vec![MapFillReport {
                map: enforcer_common::MAP_PROCS.into(),
                entries: 89,
                capacity: 100,
            }],
            failures: vec![FailureCount {
                point: "path-copy".into(),
                count: 0,
            }],
            ..Default::default()
        };
        assert!(degraded(&status).is_empty());
        assert!(render_text(&status).starts_with("healthy\ndaemon:"));

        status.audit_backlog = 12;
        status.losses = vec![
            crate::api::protocol::LossCount {
                agent: "a".into(),
                count: 3,
            },
            crate::api::protocol::LossCount {
                agent: "b".into(),
                count: 4,
            },
        ];
        status.failures[0].count = 2;
        status.rules.push(RuleReport {
            enforcement: "unsupported".into(),
            ..Default::default()
        });
        status.maps[0].entries = 90;
        // Audit mode is the policy's choice, not a degradation.
        status.rules.push(RuleReport {
            enforcement: "audit-only".into(),
            ..Default::default()
        });
        assert_eq!(
            render_text(&status).lines().next().unwrap(),
            "degraded: 12 audit records not written (the audit log cannot take them); \
             7 events lost; 2 internal failures in the kernel programs (denied); \
             1 rules unsupported by the fallback backend on this kernel; \
             kernel map PROCS 90 of 100 entries in use"
        );
    }

    #[test]
    fn text_shows_agents_sessions_and_rules() {
        let status = StatusReport {
            policy_version: 5,
            agents: vec![AgentReport {
                name: "coder".into(),
                mode: "enforce".into(),
                processes: 2,
                sessions: vec![SessionReport {
                    session: "00000000000000ab".into(),
                    chain: vec!["coder".into()],
                    started: Some("2026-11-23T10:00:00.000000000Z".into()),
                    processes: 2,
                    envelope: Some("policy version 4 (older: ...)".into()),
                }],
            }],
            rules: vec![RuleReport {
                agent: "coder".into(),
                rule: "coder.toml:4".into(),
                enforcement: "enforced".into(),
                why: "BPF LSM".into(),
            }],
            maps: vec![MapFillReport {
                map: enforcer_common::MAP_PROCS.into(),
                entries: 3,
                capacity: 65536,
            }],
            failures: vec![
                FailureCount {
                    point: "path-copy".into(),
                    count: 0,
                },
                FailureCount {
                    point: "user-sockaddr".into(),
                    count: 2,
                },
            ],
            grants: vec![crate::policy::grant::Grant {
                id: 7,
                agent: "coder".into(),
                rule: "file.read /data/x/**".into(),
                granted_at: "2026-11-23T10:00:00Z".parse().unwrap(),
                expires: "2026-11-23T10:10:00Z".parse().unwrap(),
                reason: Some("ticket 42".into()),
                uid: 0,
            }],
            ..Default::default()
        };
        let text = render_text(&status);
        for expected in [
            "version 5",
            "coder",
            "2 processes",
            "session 00000000000000ab chain coder: 2 processes, started 2026-11-23T10:00:00.000000000Z",
            "landlock envelope of policy version 4 (older",
            "coder.toml:4",
            "enforced",
            "PROCS                 3 of 65536      0.0%",
            "7     coder                file.read /data/x/**                 until 2026-11-23T10:10:00Z (ticket 42)",
            "internal failures (denied, fail closed): 2\n  user-sockaddr            2\n",
        ] {
            assert!(text.contains(expected), "missing {expected:?} in:\n{text}");
        }
        assert!(
            !text.contains("path-copy"),
            "a point that never failed is not listed in the text:\n{text}"
        );
    }
}
