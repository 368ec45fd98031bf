//! Audit records and the mapping from kernel events onto them. Field names and meanings are the
//! schema documented in docs/events.md.

use std::{
    borrow::Cow,
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
    sync::Arc,
};

use enforcer_common::{abi::*, EventHeader};
use serde::{Deserialize, Serialize};

use super::{
    clock::{format_rfc3339_ns, BootClock},
    history::{PolicyHistory, PolicyNames},
    names,
};
use crate::kernel::RawEvent;

/// One line of the audit log.
// Records live briefly in one batch; boxing events would cost an allocation each for nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "kebab-case")]
pub enum Record {
    Event(EventRecord),
    Lost(LostRecord),
    Daemon(DaemonRecord),
}

/// A kernel decision.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct EventRecord {
    /// Position in the log, assigned by the writer (increasing across rotations and restarts).
    #[serde(default)]
    pub seq: u64,
    pub time: String,
    pub host: String,
    /// The agent whose process acted (innermost agent of the chain); absent if unknown.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent: Option<String>,
    /// Delegation chain, outermost first; only when the process is a sub-agent (depth > 1).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub chain: Vec<String>,
    /// The agent whose rule decided, when it differs from `agent` (chains).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rule_agent: Option<String>,
    /// Session id, 16 hex digits (a JSON number would lose bits in many readers).
    pub session: String,
    pub pid: u32,
    pub tid: u32,
    pub ppid: u32,
    pub uid: u32,
    pub comm: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exe: Option<String>,
    pub op: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub addr: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub proto: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unix_path: Option<String>,
    /// The socket an agent made (`socket` events): `<kind> family=<n> type=<n> protocol=<n>`,
    /// `kind` as `net.sockets` names it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub socket: Option<String>,
    /// The process an agent reached for (`ptrace`): `<pid> (<comm>)`, or `<pid>` where only the
    /// pid is known (the fallback).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub process: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub access: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub open_flags: Option<u32>,
    pub verdict: String,
    /// Textual rule id (`<file>:<line>` or the rule's `id`), `default-deny`, or `#<n>` when the
    /// event's policy version is no longer known.
    pub rule: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rule_pattern: Option<String>,
    pub policy_version: u32,
    /// Where the kernel queued the event in its ring buffer (see docs/events.md): the same value
    /// on two records means the same kernel decision, written twice across a daemon restart.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ring_pos: Option<u64>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub flags: Vec<String>,
    /// The hash chain (docs/events.md, "Hash chain"): SHA-256 of the line before this one, hex.
    /// Written by the audit writer after the rest of the record; None on records being built.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prev: Option<String>,
}

/// Events the kernel (or a slow live subscriber) could not deliver.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct LostRecord {
    #[serde(default)]
    pub seq: u64,
    pub time: String,
    pub host: String,
    pub count: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent: Option<String>,
    /// `kernel` (ring buffer full; these events are not in the log) or `subscriber` (a live
    /// stream fell behind; the events are in the log).
    pub source: String,
    /// `kernel` only: the kernel's loss counter for `agent` (since the kernel state was installed)
    /// including these losses. A later record with the same agent and `total` reports the same
    /// losses again (a daemon killed after writing it, before saving that it had).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub total: Option<u64>,
    /// The hash chain (docs/events.md, "Hash chain"): SHA-256 of the line before this one, hex.
    /// Written by the audit writer after the rest of the record; None on records being built.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prev: Option<String>,
}

/// Daemon lifecycle: start, ready, stop, reload, reload-failed, register, backend; API
/// decisions: api-refused, grant, grant-revoked.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct DaemonRecord {
    #[serde(default)]
    pub seq: u64,
    pub time: String,
    pub host: String,
    pub event: String,
    pub pid: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy_version: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// `api-refused`: the request refused (`grant`, `subscribe`...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verb: Option<String>,
    /// Records of API requests (`api-refused`, `register`, `grant`, `grant-revoked`, `reload`
    /// by request): the caller as the kernel recorded it at `connect()`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub peer: Option<PeerRecord>,
    /// `restarted`: when the previous daemon was last seen alive (its last heartbeat, at most
    /// 500 ms before it died, or its stop). From then until this record no daemon ran.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub down_since: Option<String>,
    /// Backend report (`backend` events): kernel, features, per-rule enforcement.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<serde_json::Value>,
    /// The hash chain (docs/events.md, "Hash chain"): SHA-256 of the line before this one, hex.
    /// Written by the audit writer after the rest of the record; None on records being built.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prev: Option<String>,
}

/// The caller of an API request.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeerRecord {
    /// Absent when the caller's pid is not visible to the daemon (another pid namespace).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pid: Option<u32>,
    pub uid: u32,
    pub gid: u32,
    /// The caller's roles (`agent-member`, `launcher`, `auditor`, `admin`); empty: none.
    #[serde(default)]
    pub roles: Vec<String>,
}

impl Record {
    /// Forget a `prev` read from a log: the writer appends the chain's own.
    pub fn clear_prev(&mut self) {
        match self {
            Record::Event(r) => r.prev = None,
            Record::Lost(r) => r.prev = None,
            Record::Daemon(r) => r.prev = None,
        }
    }

    pub fn seq(&self) -> u64 {
        match self {
            Record::Event(e) => e.seq,
            Record::Lost(l) => l.seq,
            Record::Daemon(d) => d.seq,
        }
    }
    pub fn set_seq(&mut self, seq: u64) {
        match self {
            Record::Event(e) => e.seq = seq,
            Record::Lost(l) => l.seq = seq,
            Record::Daemon(d) => d.seq = seq,
        }
    }
    pub fn time(&self) -> &str {
        match self {
            Record::Event(e) => &e.time,
            Record::Lost(l) => &l.time,
            Record::Daemon(d) => &d.time,
        }
    }
}

pub fn session_hex(session: u64) -> String {
    format!("{session:016x}")
}

/// Everything besides the raw event that the mapping needs.
pub struct EventContext<'a> {
    pub host: &'a str,
    pub clock: BootClock,
    pub policies: &'a PolicyHistory,
    /// Executable of a process (`/proc/<tgid>/exe`), when it still exists.
    pub exe_of: &'a dyn Fn(u32) -> Option<Arc<str>>,
}

pub use enforcer_common::CANARY_AGENT;
/// How audit records name it.
pub const CANARY_NAME: &str = "enforcer-canary";

/// How an event names agent `id` under the policy names of its version.
pub fn agent_name(policy: Option<&PolicyNames>, id: u32) -> Cow<'_, str> {
    if id == CANARY_AGENT {
        // The backend's own probe at load: a registered child that must be refused.
        return Cow::Borrowed(CANARY_NAME);
    }
    match policy.and_then(|p| p.agent(id)) {
        Some(name) => Cow::Borrowed(name),
        None => Cow::Owned(format!("#{id}")),
    }
}

/// The agent chain's valid part (outermost first).
pub fn chain_ids(h: &EventHeader) -> &[u32] {
    &h.chain[..(h.depth as usize).min(MAX_CHAIN)]
}

/// The agent that decided, when it is not the process's own (innermost) agent.
pub fn rule_agent_id(h: &EventHeader) -> Option<u32> {
    (h.rule_agent != NO_AGENT && Some(h.rule_agent) != chain_ids(h).last().copied())
        .then_some(h.rule_agent)
}

/// Ops whose `open_flags` field is logged (the open flags, or a mode).
pub fn logs_open_flags(op: u32) -> bool {
    matches!(
        op,
        OP_OPEN
            | OP_CHMOD
            | OP_MKDIR
            | OP_MKNOD
            | OP_BPF
            | OP_SIGNAL
            | OP_PTRACE
            | OP_TTY_INJECT
            | OP_MOUNT
            | OP_NAMESPACE
    )
}

/// Where an event's target goes in the record.
pub enum TargetField {
    /// `addr`, `port`, `proto` (IP sockets; the target bytes are unused).
    Net,
    UnixPath,
    Path,
    /// `process` (`ptrace` events).
    Process,
    /// `socket` (`socket` events): from the net fields, the target bytes are unused.
    Socket,
    None,
}

/// The `socket` field of a `socket` event: the family, type (in `net_port`) and protocol (in
/// `net_proto`) the agent asked for.
pub fn socket_text(h: &EventHeader) -> String {
    let stype = u32::from(h.net_port);
    format!(
        "{} family={} type={} protocol={}",
        names::socket_kind(h.net_family, stype, h.net_proto),
        h.net_family,
        stype,
        h.net_proto
    )
}

pub fn target_field(h: &EventHeader, target: &[u8]) -> TargetField {
    let is_net_op = h.op == OP_CONNECT || h.op == OP_SENDMSG || h.op == OP_LISTEN;
    if h.op == OP_SOCKET {
        return TargetField::Socket;
    }
    match (is_net_op, h.net_family) {
        (true, AF_INET) | (true, AF_INET6) => TargetField::Net,
        (true, AF_UNIX) => TargetField::UnixPath,
        _ if target.is_empty() => TargetField::None,
        _ if h.op == OP_PTRACE => TargetField::Process,
        _ => TargetField::Path,
    }
}

/// Map one kernel event onto its audit record (seq is assigned by the writer). The daemon
/// writes events with `encode::EventEncoder`, which produces exactly this record's JSON.
pub fn event_record(raw: &RawEvent, ctx: &EventContext<'_>) -> EventRecord {
    let h = &raw.header;
    let policy = ctx.policies.get(h.policy_version).map(|p| p.as_ref());
    let mut flags = names::flag_names(h.flags);
    if policy.is_none() {
        flags.push(names::FLAG_POLICY_UNKNOWN.to_owned());
    }
    let chain: Vec<String> = chain_ids(h)
        .iter()
        .map(|&id| agent_name(policy, id).into_owned())
        .collect();
    let agent = chain.last().cloned();
    let rule_agent = rule_agent_id(h).map(|id| agent_name(policy, id).into_owned());
    let (rule, rule_pattern) = rule_text(policy, h.rule);

    let mut record = EventRecord {
        seq: 0,
        time: format_rfc3339_ns(ctx.clock.wall_ns(h.ts_boot_ns)),
        host: ctx.host.to_owned(),
        agent,
        chain: if chain.len() > 1 { chain } else { Vec::new() },
        rule_agent,
        session: session_hex(h.session),
        pid: h.tgid,
        tid: h.pid,
        ppid: h.ppid,
        uid: h.uid,
        comm: c_string(&h.comm).into_owned(),
        exe: (ctx.exe_of)(h.tgid).map(|e| e.to_string()),
        op: names::op_name(h.op),
        access: names::access_names(h.access),
        open_flags: logs_open_flags(h.op).then_some(h.open_flags),
        verdict: names::verdict_name(h.verdict),
        rule: rule.into_owned(),
        rule_pattern: rule_pattern.map(str::to_owned),
        policy_version: h.policy_version,
        ring_pos: Some(raw.ring_pos),
        ..EventRecord::default()
    };

    let (target, escaped) = target_text(&raw.target);
    match target_field(h, &raw.target) {
        TargetField::Net => {
            record.addr = Some(ip_text(h.net_family, &h.net_addr));
            record.port = Some(h.net_port);
            record.proto = Some(names::proto_name(h.net_proto).to_owned());
        }
        TargetField::UnixPath => record.unix_path = Some(target.into_owned()),
        TargetField::Process => record.process = Some(target.into_owned()),
        TargetField::Socket => record.socket = Some(socket_text(h)),
        TargetField::Path => record.path = Some(target.into_owned()),
        TargetField::None => {}
    }
    if escaped {
        flags.push(names::FLAG_TARGET_ESCAPED.to_owned());
    }
    record.flags = flags;
    record
}

/// Rule id -> (textual id, pattern as written).
pub fn rule_text(policy: Option<&PolicyNames>, rule: u32) -> (Cow<'_, str>, Option<&str>) {
    if rule == RULE_DEFAULT_DENY {
        return (Cow::Borrowed("default-deny"), None);
    }
    if rule == RULE_HELD_OBJECT {
        return (Cow::Borrowed("held-object"), None);
    }
    match policy.and_then(|p| p.rule(rule)) {
        Some(info) => (
            Cow::Borrowed(info.text_id.as_str()),
            Some(info.pattern.as_str()),
        ),
        None => (Cow::Owned(format!("#{rule}")), None),
    }
}

/// The exact bytes of a `path`/`unix_path` field: the text itself, or, when the record is
/// flagged `target-escaped`, the text with `\\` and `\xNN` decoded (the inverse of the escape
/// applied to non-UTF-8 targets; docs/events.md). None for an escape that is not well formed.
pub fn target_bytes(text: &str, escaped: bool) -> Option<Vec<u8>> {
    if !escaped {
        return Some(text.as_bytes().to_vec());
    }
    let mut out = Vec::with_capacity(text.len());
    let mut rest = text.as_bytes();
    while let Some((&b, tail)) = rest.split_first() {
        rest = tail;
        if b != b'\\' {
            out.push(b);
            continue;
        }
        match rest {
            [b'\\', tail @ ..] => {
                out.push(b'\\');
                rest = tail;
            }
            [b'x', h, l, tail @ ..] => {
                let hex = std::str::from_utf8(&[*h, *l])
                    .ok()
                    .and_then(|s| u8::from_str_radix(s, 16).ok())?;
                out.push(hex);
                rest = tail;
            }
            _ => return None,
        }
    }
    Some(out)
}

/// NUL-terminated kernel string (comm) to text.
pub fn c_string(bytes: &[u8]) -> Cow<'_, str> {
    let end = bytes.iter().position(|&b| b == 0).unwrap_or(bytes.len());
    String::from_utf8_lossy(&bytes[..end])
}

/// Target bytes as JSON text. Paths are bytes, JSON is UTF-8: a non-UTF-8 path is written with
/// `\` doubled and each invalid byte as `\xNN` (the caller flags it `target-escaped`), so the
/// original bytes can be recovered exactly.
pub fn target_text(bytes: &[u8]) -> (Cow<'_, str>, bool) {
    if let Ok(text) = std::str::from_utf8(bytes) {
        return (Cow::Borrowed(text), false);
    }
    let mut out = String::with_capacity(bytes.len() + 16);
    for chunk in bytes.utf8_chunks() {
        out.push_str(&chunk.valid().replace('\\', "\\\\"));
        for b in chunk.invalid() {
            out.push_str(&format!("\\x{b:02x}"));
        }
    }
    (Cow::Owned(out), true)
}

pub fn ip_text(family: u16, addr: &[u8; 16]) -> String {
    let v6 = Ipv6Addr::from(*addr);
    let ip = match (family, v6.to_ipv4_mapped()) {
        (AF_INET, Some(v4)) => IpAddr::V4(v4),
        (AF_INET, None) => IpAddr::V4(Ipv4Addr::new(addr[12], addr[13], addr[14], addr[15])),
        _ => IpAddr::V6(v6),
    };
    ip.to_string()
}

#[cfg(test)]
#[path = "record_tests.rs"]
pub(crate) mod tests;
