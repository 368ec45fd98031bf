//! `enforcer check`: validate policies and report the map entries they compile to.
//! Exit status: 0 valid, 1 invalid, 2 usage error.

use std::{io::Write as _, net::IpAddr, path::PathBuf, process::ExitCode};

use crate::{
    audit::text::{escape_lines, TerminalSafe},
    policy::{self, hosts, CompiledPolicy, Diagnostics, PolicySet, ResolvedHosts},
};

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    #[default]
    Text,
    Json,
}

#[derive(Debug, clap::Args)]
pub struct CheckArgs {
    /// Policy files or directories (directories: every *.toml below them).
    #[arg(default_value = crate::paths::POLICY_DIR)]
    pub paths: Vec<PathBuf>,
    #[arg(long, value_enum, default_value_t)]
    pub format: Format,
    /// Use this address for a host name in net rules (repeatable).
    #[arg(long = "resolve", value_name = "HOST=IP", value_parser = hosts::parse_resolve_flag)]
    pub resolve: Vec<(String, IpAddr)>,
    /// Also resolve the other host names with the system resolver (off by default: checking
    /// must not depend on DNS; the daemon resolves them at load).
    #[arg(long)]
    pub system_resolver: bool,
    /// Report what this kernel can enforce for each rule.
    #[arg(long)]
    pub kernel: bool,
}

pub fn run(args: CheckArgs) -> anyhow::Result<ExitCode> {
    let (resolved, resolve_failures) = resolve(&args)?;
    let result = policy::load_paths(&args.paths).and_then(|set| {
        let compiled = policy::compile(&set, &resolved)?;
        Ok((set, compiled))
    });
    let mut out = std::io::stdout().lock();
    match (result, args.format) {
        (Ok((set, compiled)), Format::Text) => {
            let mut out = TerminalSafe(&mut out);
            print_summary(&mut out, &args, &set, &compiled, &resolve_failures)?;
            if args.kernel {
                let (report, rules) = kernel_report(&compiled);
                writeln!(out, "kernel {}: {}", report.kernel, backend_line(&report))?;
                for r in &rules {
                    let why = if r.why.is_empty() {
                        String::new()
                    } else {
                        format!(" ({})", r.why)
                    };
                    writeln!(
                        out,
                        "  {:<16} {:<28} {}{why}",
                        r.agent,
                        r.rule,
                        r.enforcement.label()
                    )?;
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        (Ok((set, compiled)), Format::Json) => {
            let report = serde_json::json!({
                "valid": true,
                "agents": compiled.agents.iter().map(|a| &a.name).collect::<Vec<_>>(),
                "sets": set.sets.iter().map(|s| &s.name).collect::<Vec<_>>(),
                "sizes": compiled.map_sizes().iter().map(|(k, v)| (k.to_string(), *v)).collect::<std::collections::BTreeMap<_, _>>(),
                "unresolved_hosts": compiled.unresolved_hosts().map(|h| &h.host).collect::<std::collections::BTreeSet<_>>(),
                "warnings": any_address_allows(&compiled),
                "kernel": if args.kernel {
                    let (report, rules) = kernel_report(&compiled);
                    Some(serde_json::json!({ "probe": report, "rules": rules }))
                } else {
                    None
                },
            });
            writeln!(out, "{}", serde_json::to_string_pretty(&report)?)?;
            Ok(ExitCode::SUCCESS)
        }
        (Err(diags), Format::Text) => {
            let mut err = std::io::stderr().lock();
            // Diagnostics quote policy lines (learned policies hold observed paths).
            write!(err, "{}", escape_lines(&diags.to_string()))?;
            writeln!(
                err,
                "{} error{} in policies",
                diags.len(),
                if diags.len() == 1 { "" } else { "s" }
            )?;
            Ok(ExitCode::from(1))
        }
        (Err(diags), Format::Json) => {
            writeln!(
                out,
                "{}",
                serde_json::to_string_pretty(&invalid_report(&diags))?
            )?;
            Ok(ExitCode::from(1))
        }
    }
}

fn invalid_report(diags: &Diagnostics) -> serde_json::Value {
    serde_json::json!({ "valid": false, "errors": diags })
}

/// `--resolve` entries, plus the system resolver when asked. Failures are reported, not fatal.
fn resolve(args: &CheckArgs) -> anyhow::Result<(ResolvedHosts, Vec<(String, String)>)> {
    let mut resolved = ResolvedHosts::new();
    for (host, ip) in &args.resolve {
        resolved.insert(host, *ip);
    }
    if !args.system_resolver {
        return Ok((resolved, Vec::new()));
    }
    // Host names come from the policies, so load them once without resolution first.
    let Ok(set) = policy::load_paths(&args.paths) else {
        return Ok((resolved, Vec::new()));
    };
    let names = hosts::host_names(&set.agents);
    let failures = resolved.resolve_missing(names.iter().map(String::as_str));
    Ok((resolved, failures))
}

fn print_summary(
    out: &mut impl std::io::Write,
    args: &CheckArgs,
    set: &PolicySet,
    compiled: &CompiledPolicy,
    resolve_failures: &[(String, String)],
) -> std::io::Result<()> {
    let paths: Vec<String> = args.paths.iter().map(|p| p.display().to_string()).collect();
    writeln!(
        out,
        "{}: OK: {} agent{} ({}), {} permission set{}",
        paths.join(" "),
        compiled.agents.len(),
        if compiled.agents.len() == 1 { "" } else { "s" },
        compiled
            .agents
            .iter()
            .map(|a| a.name.as_str())
            .collect::<Vec<_>>()
            .join(", "),
        set.sets.len(),
        if set.sets.len() == 1 { "" } else { "s" },
    )?;
    writeln!(out, "map entries:")?;
    for (map, count) in compiled.map_sizes() {
        writeln!(out, "  {map:<13} {count}")?;
    }
    let mut unresolved: Vec<String> = Vec::new();
    for h in compiled.unresolved_hosts() {
        let agent = compiled.agent(h.agent).map_or("?", |a| a.name.as_str());
        let item = format!("{} ({agent})", h.host);
        if !unresolved.contains(&item) {
            unresolved.push(item);
        }
    }
    if !unresolved.is_empty() {
        writeln!(
            out,
            "host names resolved by the daemon at load (not counted above): {}",
            unresolved.join(", ")
        )?;
    }
    for (host, why) in resolve_failures {
        writeln!(out, "warning: cannot resolve {host}: {why}")?;
    }
    for warning in any_address_allows(compiled) {
        writeln!(out, "warning: {warning}")?;
    }
    Ok(())
}

/// Net allows that reach every address (`*`, `0.0.0.0/0`, `::/0`): one line each. Whatever
/// their ports, data can leave through them to any host (a DNS allow to `*:53` is a tunnel to
/// every name server on the internet).
pub fn any_address_allows(compiled: &CompiledPolicy) -> Vec<String> {
    use crate::policy::{
        compile::RuleKind,
        net::{NetAddr, NetTarget},
    };
    const ANY_V4: [u8; 16] = [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 0, 0, 0, 0];
    compiled
        .rules
        .iter()
        .filter(|r| r.kind == RuleKind::NetConnect)
        .filter(|r| {
            matches!(
                NetTarget::parse(&r.pattern),
                Ok(NetTarget::Ip(t)) if matches!(
                    t.addr,
                    NetAddr::Cidr { prefix_bits: 0, .. }
                        | NetAddr::Cidr { addr: ANY_V4, prefix_bits: 96 }
                )
            )
        })
        .map(|r| {
            let agent = compiled.agent(r.agent).map_or("?", |a| a.name.as_str());
            format!(
                "agent {agent}, rule {}: net.connect {:?} allows every address: data can leave to any host on those ports; name the hosts, networks or `@resolvers` instead",
                r.text_id, r.pattern
            )
        })
        .collect()
}

/// What this kernel would do with each rule: the probe (by trying; needs root) and, per rule,
/// enforced / audit-only / unsupported with the caveats the daemon's status table shows.
fn kernel_report(
    compiled: &CompiledPolicy,
) -> (
    crate::kernel::probe::KernelReport,
    Vec<crate::kernel::RuleStatus>,
) {
    let report = crate::kernel::probe::probe();
    let rules = if report.usable("bpf-lsm") {
        crate::kernel::rule_status(Some(compiled), crate::kernel::Enforcement::Enforced)
    } else if report.usable("cgroup-sock-addr") {
        crate::kernel::fallback::fallback_rule_status(
            compiled,
            report.usable("file-exec-tracepoints"),
            report.usable("file-change-tracepoints"),
            crate::kernel::landlock::probe_abi().is_some(),
        )
    } else {
        crate::kernel::rule_status(Some(compiled), crate::kernel::Enforcement::Unsupported)
    };
    (report, rules)
}

fn backend_line(report: &crate::kernel::probe::KernelReport) -> String {
    let problem = |name: &str| {
        report
            .features
            .iter()
            .find(|f| f.name == name)
            .and_then(|f| f.problem.clone())
    };
    match (problem("bpf-lsm"), problem("cgroup-sock-addr")) {
        (None, _) => "BPF LSM backend: rules are enforced in the kernel".into(),
        (Some(why), None) => format!(
            "fallback backend (BPF LSM unusable: {why}): network rules are enforced by cgroup hooks; file and exec rules are logged or enforced by SIGKILL per on_violation"
        ),
        (Some(why), Some(fb)) => format!("no backend: BPF LSM unusable ({why}); fallback unusable ({fb}): no rule is enforced"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn any_address_allows_are_named_and_narrow_ones_are_not() {
        let set = policy::load_sources(&[(
            "a.toml",
            r#"
[agent]
name = "wide"

[net]
connect = [
  { to = "*:53/udp", id = "any-dns" },
  { to = "0.0.0.0/0:443", id = "any-v4" },
  { to = "[::/0]:443", id = "any-v6" },
  { to = "10.0.0.0/8:53", id = "lan" },
  { to = "@resolvers:53", id = "resolvers" },
  "127.0.0.1:8080",
]
"#,
        )])
        .expect("loads");
        let compiled = policy::compile(&set, &ResolvedHosts::default()).expect("compiles");
        let warnings = any_address_allows(&compiled);
        let named: Vec<&str> = ["any-dns", "any-v4", "any-v6"]
            .into_iter()
            .filter(|id| warnings.iter().any(|w| w.contains(&format!("rule {id}:"))))
            .collect();
        assert_eq!(named, ["any-dns", "any-v4", "any-v6"], "{warnings:#?}");
        assert_eq!(warnings.len(), 3, "{warnings:#?}");
    }

    #[test]
    fn the_shipped_dns_set_names_no_any_address() {
        let text = include_str!("../../../policies/sets/dns.toml");
        assert!(
            !text.contains("\"*:"),
            "policies/sets/dns.toml must not allow `*`"
        );
        assert!(text.contains("@resolvers:53/udp") && text.contains("@resolvers:53/tcp"));
    }
}
