//! `enforcer explain`: decide one operation for an agent with the reference evaluator (exactly
//! the kernel's algorithm) and say which rule decided and why.
//! Exit status: 0 allowed, 1 denied (or audit-denied), 2 usage error or invalid policies.

use std::{
    io::Write as _,
    net::{IpAddr, SocketAddr},
    path::{Component, Path, PathBuf},
    process::ExitCode,
};

use anyhow::{bail, Context as _};

use super::check::Format;
use crate::{
    audit::text::{escape_lines, TerminalSafe},
    policy::{
        self,
        eval::{self, Request, Step, Trace, Verdict},
        hosts, CompiledPolicy, PolicySet, ResolvedHosts,
    },
};

#[derive(Debug, clap::Args)]
pub struct ExplainArgs {
    /// The agent whose rules decide.
    #[arg(long)]
    pub agent: String,
    /// Policy files or directories (repeatable; default: the policy directory).
    #[arg(long = "policy", value_name = "PATH")]
    pub policy: Vec<PathBuf>,
    /// Use this address for a host name in net rules (repeatable).
    #[arg(long = "resolve", value_name = "HOST=IP", value_parser = hosts::parse_resolve_flag)]
    pub resolve: Vec<(String, IpAddr)>,
    /// Do not use the system resolver for host names without --resolve.
    #[arg(long)]
    pub offline: bool,
    #[arg(long, value_enum, default_value_t)]
    pub format: Format,
    #[command(subcommand)]
    pub operation: Operation,
}

#[derive(Debug, clap::Subcommand)]
pub enum Operation {
    /// Open a file (for reading unless --write; --read --write for both).
    Open {
        path: String,
        #[arg(long)]
        write: bool,
        #[arg(long)]
        read: bool,
    },
    /// Execute a program.
    Exec { path: String },
    /// Connect to ADDR:PORT, [V6]:PORT, HOST:PORT, unix:/path or unix:@abstract.
    Connect {
        target: String,
        #[arg(long)]
        udp: bool,
    },
}

pub fn run(args: ExplainArgs) -> anyhow::Result<ExitCode> {
    let paths = if args.policy.is_empty() {
        vec![PathBuf::from(crate::paths::POLICY_DIR)]
    } else {
        args.policy.clone()
    };
    let set = match policy::load_paths(&paths) {
        Ok(set) => set,
        Err(diags) => {
            eprint!("{}", escape_lines(&diags.to_string()));
            bail!(
                "the policies are invalid ({} errors); fix them first (see `enforcer check`)",
                diags.len()
            );
        }
    };
    let mut resolved = ResolvedHosts::new();
    for (host, ip) in &args.resolve {
        resolved.insert(host, *ip);
    }
    let mut notes = Vec::new();
    // Host rules only matter for an address connect; only this agent's hosts are looked up.
    let connects_to_ip = matches!(&args.operation, Operation::Connect { target, .. } if !target.starts_with("unix:"));
    if !args.offline && connects_to_ip {
        let agent_hosts = hosts::host_names(set.agent(&args.agent));
        for (host, why) in resolved.resolve_missing(agent_hosts.iter().map(String::as_str)) {
            notes.push(format!(
                "cannot resolve {host} ({why}): its rules match nothing"
            ));
        }
    }
    let compiled = policy::compile(&set, &resolved).map_err(|d| {
        eprint!("{}", escape_lines(&d.to_string()));
        anyhow::anyhow!("the policies do not compile ({} errors)", d.len())
    })?;
    let agent = compiled
        .agent_by_name(&args.agent)
        .with_context(|| format!("no agent named `{}` in {}", args.agent, show_paths(&paths)))?;
    let requests = build_requests(&args.operation, &resolved, &mut notes)?;

    let mut out = std::io::stdout().lock();
    let mut denied = false;
    for (what, request) in &requests {
        let t = eval::trace(&compiled, agent.id, request);
        denied |= t.decision.verdict != Verdict::Allow;
        match args.format {
            Format::Text => print_text(
                &mut TerminalSafe(&mut out),
                &set,
                &compiled,
                &agent.name,
                what,
                &t,
                &notes,
            )?,
            Format::Json => {
                let rule = compiled.rule(t.decision.rule);
                let report = serde_json::json!({
                    "agent": agent.name, "operation": what, "verdict": t.decision.verdict,
                    "rule": rule.map(|r| &r.text_id), "rule_index": t.decision.rule, "pattern": rule.map(|r| &r.pattern),
                    "source": rule.map(|r| &r.source), "flags": t.decision.flags, "step": t.step,
                    "why": why(&t), "notes": notes,
                });
                writeln!(out, "{}", serde_json::to_string(&report)?)?;
            }
        }
    }
    Ok(if denied {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

fn show_paths(paths: &[PathBuf]) -> String {
    paths
        .iter()
        .map(|p| p.display().to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

/// The request(s) for the operation; a host name gives one request per address.
fn build_requests(
    op: &Operation,
    resolved: &ResolvedHosts,
    notes: &mut Vec<String>,
) -> anyhow::Result<Vec<(String, Request)>> {
    Ok(match op {
        Operation::Open { path, write, read } => {
            let path = normalize_input(path, notes)?;
            let mode = match (read, write) {
                (true, true) => "read+write",
                (_, true) => "write",
                _ => "read",
            };
            vec![(
                format!("open {path} for {mode}"),
                Request::Open {
                    path,
                    write: *write,
                    read: *read || !*write,
                },
            )]
        }
        Operation::Exec { path } => {
            let path = normalize_input(path, notes)?;
            vec![(format!("exec {path}"), Request::Exec { path })]
        }
        Operation::Connect { target, udp } => {
            if let Some(unix) = target.strip_prefix("unix:") {
                let path = if unix.starts_with('@') {
                    unix.to_string()
                } else {
                    normalize_input(unix, notes)?
                };
                return Ok(vec![(
                    format!("connect unix:{path}"),
                    Request::ConnectUnix { path },
                )]);
            }
            let proto = if *udp { "udp" } else { "tcp" };
            if let Ok(sa) = target.parse::<SocketAddr>() {
                return Ok(vec![(
                    format!("connect {sa}/{proto}"),
                    Request::Connect {
                        addr: sa.ip(),
                        port: sa.port(),
                        udp: *udp,
                    },
                )]);
            }
            let (host, port) = target
                .rsplit_once(':')
                .context("expected ADDR:PORT, [V6]:PORT, HOST:PORT or unix:PATH")?;
            let port: u16 = port
                .parse()
                .with_context(|| format!("invalid port `{port}`"))?;
            let mut addrs = resolved.get(host).to_vec();
            if addrs.is_empty() {
                let mut once = resolved.clone();
                if let Some((_, why)) = once.resolve_missing([host]).pop() {
                    bail!("cannot resolve {host}: {why} (use --resolve {host}=IP)");
                }
                addrs = once.get(host).to_vec();
            }
            addrs
                .into_iter()
                .map(|addr| {
                    (
                        format!("connect {host} ({}):{port}/{proto}", addr),
                        Request::Connect {
                            addr,
                            port,
                            udp: *udp,
                        },
                    )
                })
                .collect()
        }
    })
}

/// Lexical normalization of a user-typed path (the kernel sees resolved paths; symlinks are not
/// followed here). Relative paths are taken from the current directory.
fn normalize_input(path: &str, notes: &mut Vec<String>) -> anyhow::Result<String> {
    let p = Path::new(path);
    let joined = if p.is_absolute() {
        p.to_path_buf()
    } else {
        std::env::current_dir()?.join(p)
    };
    let mut out = PathBuf::from("/");
    for c in joined.components() {
        match c {
            Component::ParentDir => {
                out.pop();
            }
            Component::Normal(n) => out.push(n),
            Component::RootDir | Component::CurDir | Component::Prefix(_) => {}
        }
    }
    let normalized = out.to_string_lossy().into_owned();
    if normalized != path {
        notes.push(format!(
            "`{path}` normalized lexically to `{normalized}` (symlinks are not resolved)"
        ));
    }
    Ok(normalized)
}

fn why(t: &Trace) -> String {
    let access = match t.access {
        enforcer_common::ACCESS_READ => "read",
        enforcer_common::ACCESS_WRITE => "write",
        enforcer_common::ACCESS_EXEC => "exec",
        _ => "connect",
    };
    let allowed = t.decision.verdict == Verdict::Allow;
    let (verb, verbs) = if allowed {
        ("allow", "allows")
    } else {
        ("deny", "denies")
    };
    let precedence = if t.decision.verdict == Verdict::Allow {
        ""
    } else {
        " (an explicit deny beats any allow)"
    };
    match &t.step {
        Step::NotAnAgent => "not an agent: not confined".into(),
        Step::UnknownAgent => "no such agent loaded: denied (fail closed)".into(),
        Step::PathUnresolved => "the path is longer than PATH_MAX: denied (fail closed)".into(),
        Step::RelativeUnixPath => "a relative unix socket path cannot be matched: denied (fail closed)".into(),
        Step::DefaultDeny => format!("no rule matched {access}: denied by default"),
        Step::PathPrefix { entry } => {
            format!("the longest-prefix match of the path is entry \"{entry}\", whose merged rules {verb} {access}{precedence}")
        }
        Step::Wildcard { depth, entry } => format!(
            "with path component {depth} replaced by `*`, the longest-prefix match is entry \"{entry}\", whose \
             merged rules {verb} {access}{precedence}"
        ),
        Step::NameExact { name } => format!("the file name `{name}` has a `**/{name}` rule that {verbs} {access}{precedence}"),
        Step::NameSuffix { suffix } => {
            format!("the file name ends with `{suffix}`, and a `**/*{suffix}` rule {verbs} {access}{precedence}")
        }
        Step::NetPrefix { prefix, index } => format!(
            "the most specific address prefix with rules is {prefix}; its port rule #{index} {verbs} this port and \
             protocol{precedence}"
        ),
    }
}

fn print_text(
    out: &mut impl std::io::Write,
    set: &PolicySet,
    compiled: &CompiledPolicy,
    agent: &str,
    what: &str,
    t: &Trace,
    notes: &[String],
) -> std::io::Result<()> {
    for n in notes {
        writeln!(out, "note: {n}")?;
    }
    let verdict = match t.decision.verdict {
        Verdict::Allow => "ALLOW",
        Verdict::Deny => "DENY",
        Verdict::AuditDeny => "AUDIT-DENY (audit mode: would be denied; allowed and logged)",
    };
    writeln!(out, "{agent}: {what}: {verdict}")?;
    match compiled.rule(t.decision.rule) {
        Some(rule) => {
            writeln!(
                out,
                "rule: {} ({} \"{}\" at {}:{}:{})",
                rule.text_id,
                rule.kind.field(),
                rule.pattern,
                rule.source.file.display(),
                rule.source.line,
                rule.source.col
            )?;
            if let Some(line) = set
                .sources
                .get(&rule.source.file)
                .and_then(|s| s.text.lines().nth(rule.source.line as usize - 1))
            {
                writeln!(out, "  {} | {}", rule.source.line, line.trim_end())?;
            }
        }
        None => writeln!(out, "rule: none")?,
    }
    writeln!(out, "why: {}", why(t))?;
    if t.decision.flags & enforcer_common::EVENT_FLAG_PATH_TRUNCATED != 0 {
        writeln!(out, "note: the path is longer than the kernel's 252-byte key; prefix rules matched its first bytes (exact)")?;
    }
    Ok(())
}
