//! One file: TOML text -> validated header (agent or set), includes and rules. Every problem
//! becomes a positioned diagnostic; a file with errors yields no rules.

use std::{collections::HashMap, ops::Range};

use enforcer_common::{PROTO_ANY, PROTO_ICMP, PROTO_LISTEN, PROTO_TCP, SOCKET_KINDS};
use toml::Spanned;

use super::{
    compile::{Mode, OnViolation, RuleKind, SourceLoc},
    diag::{Diagnostics, SourceFile},
    model::{Located, Rule, RuleTarget},
    net::NetTarget,
    pattern::{Allowed, PathPattern},
    schema::{RawFile, RuleSpec},
    when::Condition,
};

/// What a file declares.
#[derive(Clone, Debug)]
pub enum Header {
    Agent(AgentHeader),
    Set { name: String, description: String },
}

#[derive(Clone, Debug)]
pub struct AgentHeader {
    pub name: String,
    pub name_at: Located,
    pub description: String,
    pub mode: Mode,
    pub on_violation: OnViolation,
    pub log_file_allow: bool,
    pub delegate: Vec<(String, Located)>,
    pub process: ProcessPerms,
}

/// The `[process]` permissions of an agent (all false by default), and the socket kinds its
/// `net.sockets` names (`AGENT_ALLOW_SOCK_*` bits, none by default).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ProcessPerms {
    pub mount: bool,
    pub chroot: bool,
    pub userns: bool,
    pub sockets: u32,
}

#[derive(Clone, Debug)]
pub struct ParsedFile {
    pub source: SourceFile,
    pub header: Header,
    pub includes: Vec<(String, Located)>,
    /// Rules in source order (match rules included, for agents).
    pub rules: Vec<Rule>,
}

/// Parse and validate one file. `id_name` is the file's name in rule ids (relative to the
/// directory argument, so ids do not depend on where policies are installed).
pub fn parse_file(source: SourceFile, id_name: &str) -> Result<ParsedFile, Diagnostics> {
    let raw: RawFile = toml::from_str(&source.text).map_err(|e| {
        let span = e.span().unwrap_or(0..0);
        Diagnostics::from(source.error(span, e.message().to_string()))
    })?;
    let mut diags = Diagnostics::default();
    let at = |span: Range<usize>| located(&source, span);

    let header = match (&raw.agent, &raw.set) {
        (Some(agent), None) => {
            let a = agent.get_ref();
            let name = a.name.get_ref().clone();
            if let Err(msg) = check_name(&name, "agent") {
                diags.push(source.error(a.name.span(), msg));
            }
            let mut delegate = Vec::new();
            for d in a.delegate.iter().flatten() {
                match check_name(d.get_ref(), "agent") {
                    Err(msg) => diags.push(source.error(d.span(), msg)),
                    Ok(()) if d.get_ref() == &name => {
                        diags.push(source.error(d.span(), "an agent cannot delegate to itself"))
                    }
                    Ok(()) => delegate.push((d.get_ref().clone(), at(d.span()))),
                }
            }
            Header::Agent(AgentHeader {
                name,
                name_at: at(a.name.span()),
                description: a.description.clone(),
                mode: a.mode.unwrap_or(Mode::Enforce),
                on_violation: a.on_violation.unwrap_or(OnViolation::Audit),
                log_file_allow: a.log.as_ref().is_some_and(|l| l.file_allow),
                delegate,
                process: ProcessPerms {
                    sockets: socket_kinds(&raw, &source, &mut diags),
                    ..raw
                        .process
                        .as_ref()
                        .map(|p| {
                            let p = p.get_ref();
                            ProcessPerms {
                                mount: p.mount,
                                chroot: p.chroot,
                                userns: p.userns,
                                sockets: 0,
                            }
                        })
                        .unwrap_or_default()
                },
            })
        }
        (None, Some(set)) => {
            if let Some(s) = raw.net.as_ref().and_then(|n| n.sockets.as_ref()) {
                // Like [process]: a kind of socket is a capability an agent's own file grants.
                return Err(source
                    .error(
                        s.span(),
                        "net.sockets belongs in an agent policy, not in a permission set",
                    )
                    .into());
            }
            if let Some(p) = &raw.process {
                // A permission set is included by many agents: widening what each may do to
                // its file system view must be written in the agent's own file.
                return Err(source
                    .error(
                        p.span(),
                        "[process] belongs in an agent policy, not in a permission set",
                    )
                    .into());
            }
            let s = set.get_ref();
            if let Err(msg) = check_name(s.name.get_ref(), "set") {
                diags.push(source.error(s.name.span(), msg));
            }
            Header::Set {
                name: s.name.get_ref().clone(),
                description: s.description.clone(),
            }
        }
        (Some(_), Some(set)) => return Err(source
            .error(
                set.span(),
                "a file is either an agent policy ([agent]) or a permission set ([set]), not both",
            )
            .into()),
        (None, None) => return Err(source
            .error(
                0..0,
                "expected an [agent] table (an agent policy) or a [set] table (a permission set)",
            )
            .into()),
    };

    let includes: Vec<(String, Located)> = raw
        .include
        .iter()
        .flatten()
        .map(|i| (i.get_ref().clone(), at(i.span())))
        .collect();

    // Every rule list with its kind, then sorted into source order.
    let agent_match = raw.agent.as_ref().and_then(|a| a.get_ref().match_.as_ref());
    let lists: [(RuleKind, Option<Vec<Spanned<RuleSpec>>>); 12] = [
        (
            RuleKind::MatchExe,
            agent_match.and_then(|m| unwrap_specs(&m.exe, |s| &s.0)),
        ),
        (
            RuleKind::MatchCgroup,
            agent_match.and_then(|m| unwrap_specs(&m.cgroup, |s| &s.0)),
        ),
        (
            RuleKind::FileRead,
            raw.file
                .as_ref()
                .and_then(|f| unwrap_specs(&f.read, |s| &s.0)),
        ),
        (
            RuleKind::FileWrite,
            raw.file
                .as_ref()
                .and_then(|f| unwrap_specs(&f.write, |s| &s.0)),
        ),
        (
            RuleKind::FileDeny,
            raw.file
                .as_ref()
                .and_then(|f| unwrap_specs(&f.deny, |s| &s.0)),
        ),
        (
            RuleKind::FileDenyRead,
            raw.file
                .as_ref()
                .and_then(|f| unwrap_specs(&f.deny_read, |s| &s.0)),
        ),
        (
            RuleKind::FileDenyWrite,
            raw.file
                .as_ref()
                .and_then(|f| unwrap_specs(&f.deny_write, |s| &s.0)),
        ),
        (
            RuleKind::ExecAllow,
            raw.exec
                .as_ref()
                .and_then(|e| unwrap_specs(&e.allow, |s| &s.0)),
        ),
        (
            RuleKind::ExecDeny,
            raw.exec
                .as_ref()
                .and_then(|e| unwrap_specs(&e.deny, |s| &s.0)),
        ),
        (
            RuleKind::NetConnect,
            raw.net
                .as_ref()
                .and_then(|n| unwrap_specs(&n.connect, |s| &s.0)),
        ),
        (
            RuleKind::NetDeny,
            raw.net
                .as_ref()
                .and_then(|n| unwrap_specs(&n.deny, |s| &s.0)),
        ),
        (
            RuleKind::NetListen,
            raw.net
                .as_ref()
                .and_then(|n| unwrap_specs(&n.listen, |s| &s.0)),
        ),
    ];
    let mut specs: Vec<(RuleKind, Spanned<RuleSpec>)> = Vec::new();
    for (kind, list) in lists {
        specs.extend(list.into_iter().flatten().map(|s| (kind, s)));
    }
    specs.sort_by_key(|(_, s)| s.span().start);

    // Rules sharing a line get the column in their id so ids stay unique.
    let mut per_line: HashMap<u32, usize> = HashMap::new();
    for (_, s) in &specs {
        *per_line
            .entry(source.line_col(s.span().start).0)
            .or_default() += 1;
    }

    let mut rules = Vec::with_capacity(specs.len());
    for (kind, spec) in &specs {
        let kind = *kind;
        let rule_span = spec.span();
        let RuleSpec {
            pattern,
            pattern_span,
            id,
            when,
        } = spec.get_ref();
        let pattern_span = pattern_span.clone().unwrap_or(rule_span.clone());
        let (line, col) = source.line_col(rule_span.start);
        let text_id = match id {
            Some(id) => {
                if let Err(msg) = check_rule_id(id.get_ref()) {
                    diags.push(source.error(id.span(), msg));
                }
                id.get_ref().clone()
            }
            None if per_line[&line] > 1 => format!("{id_name}:{line}:{col}"),
            None => format!("{id_name}:{line}"),
        };
        let target = match parse_target(kind, pattern) {
            Ok(t) => t,
            Err(msg) => {
                diags.push(source.error(pattern_span, format!("{}: {msg}", kind.field())));
                continue;
            }
        };
        let when = match when {
            None => None,
            Some(w) => match parse_when(kind, &target, w) {
                Ok(c) => Some(c),
                Err((span, msg)) => {
                    diags.push(source.error(
                        span.unwrap_or(rule_span.clone()),
                        format!("{}: {msg}", kind.field()),
                    ));
                    continue;
                }
            },
        };
        rules.push(Rule {
            text_id,
            explicit_id: id.is_some(),
            kind,
            pattern: pattern.clone(),
            at: at(pattern_span),
            target,
            when,
        });
    }
    diags.into_result(ParsedFile {
        source,
        header,
        includes,
        rules,
    })
}

/// The rule specs of one list, without the per-language wrapper type.
fn unwrap_specs<T>(
    list: &Option<Vec<Spanned<T>>>,
    inner: impl Fn(&T) -> &RuleSpec,
) -> Option<Vec<Spanned<RuleSpec>>> {
    list.as_ref().map(|l| {
        l.iter()
            .map(|s| Spanned::new(s.span(), inner(s.get_ref()).clone()))
            .collect()
    })
}

fn located(source: &SourceFile, span: Range<usize>) -> Located {
    let (line, col) = source.line_col(span.start);
    Located {
        loc: SourceLoc {
            file: source.path.clone(),
            line,
            col,
        },
        span,
    }
}

/// `when` narrows an allow to time windows: net.connect rules to addresses or hosts, file.read,
/// file.write and exec.allow (the kernel checks windows in its network and path rules). A deny
/// never takes one (one that lapsed with the daemon stopped would fail open), nor do unix socket
/// paths and `agent.match` (which selects agents, it allows nothing by time). Errors carry the
/// span of the offending value when there is one.
fn parse_when(
    kind: RuleKind,
    target: &RuleTarget,
    w: &super::schema::RawWhen,
) -> Result<Condition, (Option<Range<usize>>, String)> {
    match (kind, target) {
        (RuleKind::NetConnect, RuleTarget::Ip(_)) | (RuleKind::FileRead | RuleKind::FileWrite | RuleKind::ExecAllow, _) => {}
        (RuleKind::NetConnect, _) => {
            return Err((None, "`when` applies to address and host rules, not to unix socket paths".into()))
        }
        (RuleKind::NetDeny | RuleKind::FileDeny | RuleKind::FileDenyRead | RuleKind::FileDenyWrite | RuleKind::ExecDeny, _) => {
            return Err((None, "a deny cannot have `when`: a deny applies always (one that lapsed with the daemon stopped would fail open)".into()))
        }
        _ => return Err((None, "`when` is supported on net.connect, file.read, file.write and exec.allow rules only".into())),
    }
    let Some(tz) = &w.tz else {
        return Err((Some(w.hours.span()), "`when.hours` needs an explicit time zone: add `tz = \"UTC\"` or an IANA name such as \"Europe/Paris\"".into()));
    };
    Condition::hours(w.hours.get_ref(), "UTC").map_err(|m| (Some(w.hours.span()), m))?;
    Condition::hours(w.hours.get_ref(), tz.get_ref()).map_err(|m| (Some(tz.span()), m))
}

/// `net.sockets = ["icmp", ...]` as `AGENT_ALLOW_SOCK_*` bits; an unknown kind is an error at
/// its position.
fn socket_kinds(raw: &RawFile, source: &SourceFile, diags: &mut Diagnostics) -> u32 {
    let mut bits = 0;
    let Some(list) = raw.net.as_ref().and_then(|n| n.sockets.as_ref()) else {
        return 0;
    };
    for kind in list.get_ref() {
        match SOCKET_KINDS.iter().find(|(name, _)| name == kind.get_ref()) {
            Some((_, bit)) => bits |= bit,
            None => {
                let names: Vec<&str> = SOCKET_KINDS.iter().map(|(n, _)| *n).collect();
                diags.push(source.error(
                    kind.span(),
                    format!(
                        "unknown socket kind `{}` (expected one of: {}; TCP, UDP, unix and netlink-route sockets need no entry)",
                        kind.get_ref(),
                        names.join(", ")
                    ),
                ));
            }
        }
    }
    bits
}

fn parse_target(kind: RuleKind, pattern: &str) -> Result<RuleTarget, String> {
    match kind {
        RuleKind::NetConnect => NetTarget::parse(pattern).map(RuleTarget::from),
        // A deny without a protocol denies every use of the destination: TCP, UDP and ICMP
        // traffic and listening; `/tcp` covers listening on TCP too.
        RuleKind::NetDeny => NetTarget::parse(pattern).map(|t| match t {
            NetTarget::Ip(mut ip) => {
                if ip.proto == PROTO_ANY {
                    ip.proto |= PROTO_ICMP;
                }
                if ip.proto & PROTO_TCP != 0 {
                    ip.proto |= PROTO_LISTEN;
                }
                RuleTarget::Ip(ip)
            }
            unix => RuleTarget::from(unix),
        }),
        RuleKind::NetListen => match NetTarget::parse(pattern)? {
            NetTarget::Ip(mut ip) => {
                if ip.proto != PROTO_ANY && ip.proto != PROTO_TCP {
                    return Err("net.listen rules are for TCP (`/tcp` or no protocol): a UDP server's replies are judged by net.connect, ICMP cannot listen".into());
                }
                ip.proto = PROTO_LISTEN;
                Ok(RuleTarget::Ip(ip))
            }
            NetTarget::Unix(_) => Err("net.listen takes addresses and ports; listening on a unix socket is not judged by net.listen (see docs/policy.md)".into()),
        },
        RuleKind::MatchExe => {
            PathPattern::parse(pattern, Allowed::ExactOrSubtree).map(RuleTarget::Path)
        }
        RuleKind::MatchCgroup => parse_cgroup(pattern).map(RuleTarget::Cgroup),
        _ => PathPattern::parse(pattern, Allowed::All).map(RuleTarget::Path),
    }
}

/// A cgroup v2 path relative to the cgroup2 mount: absolute, normalized, not the root.
fn parse_cgroup(path: &str) -> Result<String, String> {
    if !path.starts_with('/') {
        return Err(
            "a cgroup path is absolute within the cgroup2 hierarchy (e.g. `/agents/coder`)".into(),
        );
    }
    let trimmed = path.trim_end_matches('/');
    if trimmed.is_empty() {
        return Err("the root cgroup `/` would match every process".into());
    }
    if trimmed[1..]
        .split('/')
        .any(|c| c.is_empty() || c == "." || c == ".." || c.contains('*'))
    {
        return Err("a cgroup path must be normalized, without `*`, `.`, `..` or `//`".into());
    }
    Ok(trimmed.to_string())
}

/// Agent and set names: `[A-Za-z0-9][A-Za-z0-9._-]*`, at most 64 bytes.
pub fn check_name(name: &str, what: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name.as_bytes()[0].is_ascii_alphanumeric()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    if ok {
        Ok(())
    } else {
        Err(format!("invalid {what} name `{name}`: use 1-64 letters, digits, `.`, `_`, `-`, starting with a letter or digit"))
    }
}

/// Explicit rule ids: 1-128 printable non-space ASCII characters, not starting with the prefix
/// of the daemon's implicit rules (`enforcer:`, see protect.rs).
fn check_rule_id(id: &str) -> Result<(), String> {
    if id.starts_with(super::protect::ID_PREFIX) {
        return Err(format!(
            "invalid rule id `{id}`: ids starting with `{}` are reserved for the daemon's implicit rules",
            super::protect::ID_PREFIX
        ));
    }
    if !id.is_empty() && id.len() <= 128 && id.bytes().all(|b| b.is_ascii_graphic()) {
        Ok(())
    } else {
        Err(format!(
            "invalid rule id `{id}`: use 1-128 printable characters without spaces"
        ))
    }
}
