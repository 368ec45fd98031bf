//! The reference evaluator: docs/kernel-maps.md's matching algorithm, step for step, over the
//! compiler's entries. Kernel tests compare in-kernel verdicts and rule ids against it, so it
//! mirrors the kernel (LPM longest prefix, 252-byte key cut, wildcard variants, basename and
//! suffix lookups, candidate order), not a nicer algorithm.

use std::net::IpAddr;

use enforcer_common::*;

use super::{
    compile::{CompiledPolicy, NetEntry, PathEntry},
    net::{mapped, mask},
};

/// One operation as the kernel sees it. Paths are absolute and normalized (as `bpf_d_path`
/// returns them); abstract unix socket names are written `@name`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Request {
    /// `read`/`write`: the open's modes (an open with neither is checked as a read).
    Open {
        path: String,
        write: bool,
        read: bool,
    },
    Exec {
        path: String,
    },
    Connect {
        addr: IpAddr,
        port: u16,
        udp: bool,
    },
    ConnectUnix {
        path: String,
    },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Verdict {
    Allow,
    Deny,
    /// Audit-mode agent: the policy denies, the operation proceeds and is logged.
    AuditDeny,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Decision {
    pub verdict: Verdict,
    /// Deciding rule id (0 = denied by default, or not an agent).
    pub rule: u32,
    /// `EVENT_FLAG_*` the kernel would set on the event.
    pub flags: u32,
}

/// Which step of the algorithm decided.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case", tag = "step")]
pub enum Step {
    /// Agent id 0: not confined.
    NotAnAgent,
    /// No agent with this id is loaded: fail closed.
    UnknownAgent,
    /// The path does not fit PATH_MAX: fail closed.
    PathUnresolved,
    /// A relative unix socket path cannot be matched: fail closed.
    RelativeUnixPath,
    /// The `PATH_RULES` longest-prefix match of the path itself (`entry` shown with NUL as `\0`).
    PathPrefix { entry: String },
    /// The lookup with component `depth` replaced by `*`.
    Wildcard { depth: u32, entry: String },
    /// `NAME_RULES` exact basename.
    NameExact { name: String },
    /// `NAME_RULES` suffix.
    NameSuffix { suffix: String },
    /// `NET_RULES` longest-prefix match, then the port rule at `index`.
    NetPrefix { prefix: String, index: u32 },
    /// No candidate said anything about this access: denied by default.
    DefaultDeny,
}

/// A decision with the step that made it and the access kind (`ACCESS_*`) it was about.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Trace {
    pub decision: Decision,
    pub step: Step,
    pub access: u32,
}

pub fn evaluate(policy: &CompiledPolicy, agent: u32, request: &Request) -> Decision {
    trace(policy, agent, request).decision
}

/// `evaluate` at wall-clock time `now` (conditional allows count only inside their windows).
pub fn evaluate_at(
    policy: &CompiledPolicy,
    agent: u32,
    request: &Request,
    now: jiff::Timestamp,
) -> Decision {
    trace_at(policy, agent, request, now).decision
}

/// `evaluate`, also saying which step decided.
pub fn trace(policy: &CompiledPolicy, agent: u32, request: &Request) -> Trace {
    trace_at(policy, agent, request, jiff::Timestamp::now())
}

/// `trace` at wall-clock time `now`.
pub fn trace_at(
    policy: &CompiledPolicy,
    agent: u32,
    request: &Request,
    now: jiff::Timestamp,
) -> Trace {
    let (mut t, audit) = judge(policy, agent, request, now);
    if audit && t.decision.verdict == Verdict::Deny {
        t.decision.verdict = Verdict::AuditDeny;
    }
    t
}

/// A decision for a sub-agent chain, and the member whose rule decided.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct ChainTrace {
    pub trace: Trace,
    /// Agent id of the deciding member: the first (outermost) that denied, else the innermost.
    pub rule_agent: u32,
}

/// The decision for a process of `chain` (agent ids, outermost first): every member judges by
/// its own rules, in chain order, and the first that denies decides; if all allow, the innermost
/// member's allow is reported. Audit only if every member audits. Flags are those of the
/// members judged (the kernel stops at the first deny). A chain of one is [`trace`].
pub fn trace_chain(policy: &CompiledPolicy, chain: &[u32], request: &Request) -> ChainTrace {
    trace_chain_at(policy, chain, request, jiff::Timestamp::now())
}

/// `trace_chain` at wall-clock time `now`.
pub fn trace_chain_at(
    policy: &CompiledPolicy,
    chain: &[u32],
    request: &Request,
    now: jiff::Timestamp,
) -> ChainTrace {
    let mut flags = 0;
    let mut last = None;
    for &member in chain {
        let (mut t, _) = judge(policy, member, request, now);
        flags |= t.decision.flags;
        t.decision.flags = flags;
        let denied = t.decision.verdict == Verdict::Deny;
        last = Some(ChainTrace {
            trace: t,
            rule_agent: member,
        });
        if denied {
            break;
        }
    }
    let Some(mut out) = last else {
        return ChainTrace {
            trace: done(Verdict::Deny, 0, 0, Step::UnknownAgent, 0),
            rule_agent: NO_AGENT,
        };
    };
    if out.trace.decision.verdict == Verdict::Deny {
        // An enforcing member anywhere in the chain enforces (members after the denier too).
        let all_audit = chain.iter().all(|&m| {
            policy.agent(m).is_some_and(|a| {
                a.config.flags & (AGENT_PRESENT | AGENT_AUDIT) == AGENT_PRESENT | AGENT_AUDIT
            })
        });
        if all_audit {
            out.trace.decision.verdict = Verdict::AuditDeny;
        }
    }
    out
}

/// One agent's answer and whether that agent is in audit mode.
fn judge(
    policy: &CompiledPolicy,
    agent: u32,
    request: &Request,
    now: jiff::Timestamp,
) -> (Trace, bool) {
    let access_of = |r: &Request| match r {
        Request::Open {
            write: true,
            read: false,
            ..
        } => ACCESS_WRITE,
        Request::Open { .. } => ACCESS_READ,
        Request::Exec { .. } => ACCESS_EXEC,
        Request::Connect { .. } | Request::ConnectUnix { .. } => ACCESS_CONNECT,
    };
    if agent == NO_AGENT {
        return (
            done(Verdict::Allow, 0, 0, Step::NotAnAgent, access_of(request)),
            false,
        );
    }
    let Some(info) = policy
        .agent(agent)
        .filter(|a| a.config.flags & AGENT_PRESENT != 0)
    else {
        return (
            done(Verdict::Deny, 0, 0, Step::UnknownAgent, access_of(request)),
            false,
        );
    };
    let audit = info.config.flags & AGENT_AUDIT != 0;
    let t = match request {
        Request::Open { path, write, read } => {
            // Read then write; the first denied kind is reported, else the first kind's allow.
            let kinds: &[usize] = match (read, write) {
                (_, false) => &[ACCESS_INDEX_READ],
                (false, true) => &[ACCESS_INDEX_WRITE],
                (true, true) => &[ACCESS_INDEX_READ, ACCESS_INDEX_WRITE],
            };
            let mut first = None;
            for &k in kinds {
                let t = path_decision(policy, agent, info.config.wildcard_depths, path, k, now);
                if t.decision.verdict == Verdict::Deny {
                    first = Some(t);
                    break;
                }
                first.get_or_insert(t);
            }
            first.expect("at least one access kind")
        }
        Request::Exec { path } => path_decision(
            policy,
            agent,
            info.config.wildcard_depths,
            path,
            ACCESS_INDEX_EXEC,
            now,
        ),
        Request::ConnectUnix { path } if !path.starts_with('/') && !path.starts_with('@') => done(
            Verdict::Deny,
            0,
            EVENT_FLAG_RELATIVE_PATH,
            Step::RelativeUnixPath,
            ACCESS_CONNECT,
        ),
        Request::ConnectUnix { path } => path_decision(
            policy,
            agent,
            info.config.wildcard_depths,
            path,
            ACCESS_INDEX_CONNECT,
            now,
        ),
        Request::Connect { addr, port, udp } => {
            net_decision(policy, agent, *addr, *port, *udp, now)
        }
    };
    (t, audit)
}

fn done(verdict: Verdict, rule: u32, flags: u32, step: Step, access: u32) -> Trace {
    Trace {
        decision: Decision {
            verdict,
            rule,
            flags,
        },
        step,
        access,
    }
}

/// The lookup key: path, one NUL, cut to `PATH_KEY_BYTES`.
fn key(path: &[u8]) -> Vec<u8> {
    let mut k = Vec::with_capacity(path.len() + 1);
    k.extend_from_slice(path);
    k.push(0);
    k.truncate(PATH_KEY_BYTES);
    k
}

/// LPM emulation: the agent's longest entry that is a prefix of `key`.
fn lpm<'a>(policy: &'a CompiledPolicy, agent: u32, key: &[u8]) -> Option<&'a PathEntry> {
    policy
        .path_entries
        .iter()
        .filter(|e| e.agent == agent && key.starts_with(&e.bytes))
        .max_by_key(|e| e.bytes.len())
}

fn name_lookup(policy: &CompiledPolicy, agent: u32, kind: u32, name: &[u8]) -> Option<PathRule> {
    policy
        .name_entries
        .iter()
        .find(|e| e.agent == agent && e.kind == kind && e.name == name)
        .map(|e| e.value)
}

/// `path` with component `depth` (1-based: the bytes after the depth-th `/` up to the next
/// `/`) replaced by `*`; `None` if the path has no such non-empty component.
pub fn wildcard_variant(path: &[u8], depth: u32) -> Option<Vec<u8>> {
    let start = path
        .iter()
        .enumerate()
        .filter(|(_, b)| **b == b'/')
        .nth(depth as usize - 1)?
        .0
        + 1;
    let end = path[start..]
        .iter()
        .position(|b| *b == b'/')
        .map_or(path.len(), |i| start + i);
    if end == start {
        return None;
    }
    let mut v = Vec::with_capacity(path.len());
    v.extend_from_slice(&path[..start]);
    v.push(b'*');
    v.extend_from_slice(&path[end..]);
    Some(v)
}

/// The suffixes the kernel tries for a basename: from each of the rightmost `MAX_SUFFIX_TRIES`
/// dots, leftmost first; a suffix longer than `NAME_KEY_BYTES` is skipped (its dot still counts).
pub fn suffix_tries(basename: &[u8]) -> Vec<&[u8]> {
    let dots: Vec<usize> = basename
        .iter()
        .enumerate()
        .filter(|(_, b)| **b == b'.')
        .map(|(i, _)| i)
        .collect();
    let rightmost = &dots[dots.len().saturating_sub(MAX_SUFFIX_TRIES as usize)..];
    rightmost
        .iter()
        .map(|&i| &basename[i..])
        .filter(|s| s.len() <= NAME_KEY_BYTES)
        .collect()
}

/// The basename the kernel uses: after the last `/` within the last 256 bytes of the path (the
/// whole window if it has no `/`; NAME_MAX is 255, so real paths always have one there).
pub fn basename(path: &[u8]) -> &[u8] {
    let window = &path[path.len().saturating_sub(BASENAME_WINDOW)..];
    &window[window.iter().rposition(|b| *b == b'/').map_or(0, |i| i + 1)..]
}

/// True when the kernel, which locates '/' only inside the key window (the first
/// `PATH_KEY_BYTES` bytes), cannot delimit the component at some wildcard depth of `depths`.
pub fn wildcard_undecidable(path: &[u8], depths: u32) -> bool {
    let mut list = Vec::new();
    for d in 1..=MAX_WILDCARD_DEPTH {
        if depths & (1 << (d - 1)) != 0 && list.len() < 4 {
            list.push(d);
        }
    }
    let Some(&deepest) = list.last() else {
        return false;
    };
    let need = (deepest + 1) as usize;
    let hit_nul = path.len() < PATH_KEY_BYTES;
    let window = &path[..path.len().min(PATH_KEY_BYTES)];
    let n = window
        .iter()
        .filter(|b| **b == b'/')
        .count()
        .min(need)
        .min(18);
    let whole = hit_nul || n >= need;
    list.iter().any(|&d| {
        let d = d as usize;
        (n < d && !whole) || (n == d && !hit_nul)
    })
}

/// Bytes at the end of a path the kernel searches for the last `/`.
const BASENAME_WINDOW: usize = 256;

fn path_decision(
    policy: &CompiledPolicy,
    agent: u32,
    depths: u32,
    path: &str,
    k: usize,
    now: jiff::Timestamp,
) -> Trace {
    let access = 1u32 << k;
    let p = path.as_bytes();
    if p.len() + 1 > PATH_BUF_BYTES {
        return done(
            Verdict::Deny,
            0,
            EVENT_FLAG_PATH_UNRESOLVED,
            Step::PathUnresolved,
            access,
        );
    }
    // An unlinked file is judged by the name it had (the kernel cuts bpf_d_path's suffix off
    // opened and executed files' paths; unix socket paths are taken as they are).
    let (p, deleted) = match p.strip_suffix(DELETED_SUFFIX.as_slice()) {
        Some(name) if !name.is_empty() && k != ACCESS_INDEX_CONNECT => (name, EVENT_FLAG_DELETED),
        _ => (p, 0),
    };
    let flags = deleted
        | if p.len() + 1 > PATH_KEY_BYTES {
            EVENT_FLAG_PATH_TRUNCATED
        } else {
            0
        };

    if wildcard_undecidable(p, depths) {
        // The kernel cannot delimit a wildcard component inside its 252-byte key window and
        // fails closed (docs/kernel-maps.md).
        return done(
            Verdict::Deny,
            0,
            flags | EVENT_FLAG_PATH_UNRESOLVED,
            Step::PathUnresolved,
            access,
        );
    }

    let mut candidates: Vec<(Step, PathRule)> = Vec::new();
    if let Some(e) = lpm(policy, agent, &key(p)) {
        candidates.push((
            Step::PathPrefix {
                entry: show(&e.bytes),
            },
            e.value,
        ));
    }
    for d in 1..=32u32 {
        if depths & (1 << (d - 1)) == 0 {
            continue;
        }
        if let Some(variant) = wildcard_variant(p, d) {
            if let Some(e) = lpm(policy, agent, &key(&variant)) {
                candidates.push((
                    Step::Wildcard {
                        depth: d,
                        entry: show(&e.bytes),
                    },
                    e.value,
                ));
            }
        }
    }
    let basename = basename(p);
    // The kernel looks a basename up only when a '/' precedes it (abstract unix names have none).
    let anchored = basename.len() < p.len();
    if !basename.is_empty() {
        if anchored && basename.len() <= NAME_KEY_BYTES {
            if let Some(v) = name_lookup(policy, agent, NAME_EXACT, basename) {
                candidates.push((
                    Step::NameExact {
                        name: show(basename),
                    },
                    v,
                ));
            }
        }
        for suffix in suffix_tries(basename) {
            if let Some(v) = name_lookup(policy, agent, NAME_SUFFIX, suffix) {
                candidates.push((
                    Step::NameSuffix {
                        suffix: show(suffix),
                    },
                    v,
                ));
            }
        }
    }

    if let Some((step, v)) = candidates.iter().find(|(_, v)| v.deny & access != 0) {
        return done(Verdict::Deny, v.deny_rule[k], flags, step.clone(), access);
    }
    // A candidate's allow is its most specific one whose condition is open: `allow_rule`, or
    // `next_rule` while `allow_rule`'s window is closed (as the kernel's `CONDS` check does).
    let open_allow = |v: &PathRule| -> Option<u32> {
        if v.allow & access == 0 {
            return None;
        }
        if cond_open(policy, v.allow_cond[k], now) {
            return Some(v.allow_rule[k]);
        }
        (v.next_rule[k] != 0 && cond_open(policy, v.next_cond[k], now)).then_some(v.next_rule[k])
    };
    if let Some((step, rule)) = candidates
        .iter()
        .find_map(|(step, v)| open_allow(v).map(|r| (step, r)))
    {
        return done(Verdict::Allow, rule, flags, step.clone(), access);
    }
    done(
        Verdict::Deny,
        RULE_DEFAULT_DENY,
        flags,
        Step::DefaultDeny,
        access,
    )
}

fn net_decision(
    policy: &CompiledPolicy,
    agent: u32,
    addr: IpAddr,
    port: u16,
    udp: bool,
    now: jiff::Timestamp,
) -> Trace {
    let a = mapped(addr);
    let proto = if udp { PROTO_UDP } else { PROTO_TCP };
    let entry: Option<&NetEntry> = policy
        .net_entries
        .iter()
        .filter(|e| e.agent == agent && mask(a, e.prefix_bits) == e.addr)
        .max_by_key(|e| e.prefix_bits);
    let Some(entry) = entry else {
        return done(
            Verdict::Deny,
            RULE_DEFAULT_DENY,
            0,
            Step::DefaultDeny,
            ACCESS_CONNECT,
        );
    };
    let prefix = super::merge::describe(entry.addr, entry.prefix_bits);
    let rules = &entry.value.rules[..(entry.value.count as usize).min(NET_RULES_PER_PREFIX)];
    // A conditional rule outside its window does not exist (as in the kernel's `CONDS` check).
    let applies = |r: &&NetPortRule| {
        r.port_lo <= port
            && port <= r.port_hi
            && r.proto & proto != 0
            && cond_open(policy, r.cond, now)
    };
    for action in [ACTION_DENY, ACTION_ALLOW] {
        if let Some((i, r)) = rules
            .iter()
            .enumerate()
            .find(|(_, r)| r.action == action && applies(r))
        {
            let verdict = if action == ACTION_DENY {
                Verdict::Deny
            } else {
                Verdict::Allow
            };
            return done(
                verdict,
                r.rule,
                0,
                Step::NetPrefix {
                    prefix,
                    index: i as u32,
                },
                ACCESS_CONNECT,
            );
        }
    }
    done(
        Verdict::Deny,
        RULE_DEFAULT_DENY,
        0,
        Step::DefaultDeny,
        ACCESS_CONNECT,
    )
}

/// Whether condition `cond` (0: unconditional) is open at `now`; an unknown one never is (the
/// kernel's missing `CONDS` entry: fail closed).
fn cond_open(policy: &CompiledPolicy, cond: u32, now: jiff::Timestamp) -> bool {
    cond == 0
        || policy
            .conditions
            .get(cond as usize - 1)
            .is_some_and(|c| c.is_open_at(now))
}

/// Entry bytes for humans: NUL shown as `\0`.
fn show(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).replace('\0', "\\0")
}
