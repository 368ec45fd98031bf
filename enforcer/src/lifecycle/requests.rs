//! From an audit record back to the request the kernel decided (docs/kernel-maps.md, "Access
//! kinds"), so the reference evaluator can decide it again under another policy.

use std::{
    collections::BTreeMap,
    net::{IpAddr, SocketAddr},
};

use serde::Serialize;

use crate::{
    audit::EventRecord,
    policy::{
        eval::Request,
        net::{NetAddr, NetTarget},
        ResolvedHosts,
    },
};

/// Why a record cannot be decided again.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Skip {
    /// `join` records say a process became an agent member; no rule decided them.
    NotADecision,
    /// The event names no agent.
    NoAgent,
    /// An `op-N` or `verdict-N` this version does not know.
    UnknownOp,
    /// Decided fail-closed from kernel state, whatever the policy (`path-unresolved`,
    /// `addr-unreadable`, `proc-table-full`).
    FailClosed,
    /// The record does not carry the whole target (`target-cut`, `target-escaped`, a missing
    /// field, a protocol other than TCP/UDP).
    IncompleteTarget,
}

impl Skip {
    pub fn describe(self) -> &'static str {
        match self {
            Skip::NotADecision => "join records (not decisions)",
            Skip::NoAgent => "events without an agent",
            Skip::UnknownOp => "unknown operations or verdicts",
            Skip::FailClosed => "fail-closed decisions that no policy changes",
            Skip::IncompleteTarget => "incomplete targets (cut, escaped or unknown protocol)",
        }
    }
}

/// Decided from kernel state whatever the policy says (`pathless`: whether the process held
/// the object).
const FAIL_CLOSED_FLAGS: [&str; 4] = [
    "path-unresolved",
    "addr-unreadable",
    "proc-table-full",
    "pathless",
];
const INCOMPLETE_FLAGS: [&str; 2] = ["target-cut", "target-escaped"];
/// Every op that asks for WRITE on its path (docs/kernel-maps.md).
const WRITE_OPS: [&str; 10] = [
    "unlink", "rename", "mkdir", "rmdir", "link", "symlink", "truncate", "chmod", "chown", "mknod",
];

/// The request `e` records.
pub fn request_of(e: &EventRecord) -> Result<Request, Skip> {
    if e.op == "join" {
        return Err(Skip::NotADecision);
    }
    let flagged = |names: &[&str]| e.flags.iter().any(|f| names.contains(&f.as_str()));
    if flagged(&FAIL_CLOSED_FLAGS) {
        return Err(Skip::FailClosed);
    }
    if flagged(&INCOMPLETE_FLAGS) {
        return Err(Skip::IncompleteTarget);
    }
    let path = || e.path.clone().ok_or(Skip::IncompleteTarget);
    let has = |access: &str| e.access.iter().any(|a| a == access);
    match e.op.as_str() {
        "open" => {
            let (read, write) = (has("read"), has("write"));
            Ok(Request::Open {
                path: path()?,
                // An open with neither mode (O_PATH) is checked as a read.
                read: read || !write,
                write,
            })
        }
        // A script exec is recorded with the script, which is checked as a read.
        "exec" if e.flags.iter().any(|f| f == "script") => Ok(Request::Open {
            path: path()?,
            read: true,
            write: false,
        }),
        "exec" => Ok(Request::Exec { path: path()? }),
        "connect" | "sendmsg" => {
            if let Some(unix) = &e.unix_path {
                return Ok(Request::ConnectUnix { path: unix.clone() });
            }
            let addr: IpAddr = e
                .addr
                .as_deref()
                .and_then(|a| a.parse().ok())
                .ok_or(Skip::IncompleteTarget)?;
            let port = e.port.ok_or(Skip::IncompleteTarget)?;
            let udp = match e.proto.as_deref() {
                Some("tcp") => false,
                Some("udp") => true,
                _ => return Err(Skip::IncompleteTarget),
            };
            Ok(Request::Connect { addr, port, udp })
        }
        op if WRITE_OPS.contains(&op) => Ok(Request::Open {
            path: path()?,
            read: false,
            write: true,
        }),
        _ => Err(Skip::UnknownOp),
    }
}

/// What was asked for: `read`, `write`, `read+write`, `exec`, `tcp`, `udp`, `connect` (unix).
pub fn access_label(request: &Request) -> &'static str {
    match request {
        Request::Open {
            read: true,
            write: true,
            ..
        } => "read+write",
        Request::Open { write: true, .. } => "write",
        Request::Open { .. } => "read",
        Request::Exec { .. } => "exec",
        Request::Connect { udp: false, .. } => "tcp",
        Request::Connect { udp: true, .. } => "udp",
        Request::ConnectUnix { .. } => "connect",
    }
}

/// The target as a person reads it: a path, `ADDR:PORT/PROTO` (`[V6]:PORT/PROTO`), `unix:PATH`.
pub fn target_label(request: &Request) -> String {
    match request {
        Request::Open { path, .. } | Request::Exec { path } => path.clone(),
        Request::Connect { addr, port, udp } => {
            format!(
                "{}/{}",
                SocketAddr::new(*addr, *port),
                if *udp { "udp" } else { "tcp" }
            )
        }
        Request::ConnectUnix { path } => format!("unix:{path}"),
    }
}

/// The verdict recorded in the log, as allowed or not; `None` for a verdict this version does
/// not know. `audit-deny` counts as denied: the policy denied it, only the mode let it through.
pub fn recorded_allow(e: &EventRecord) -> Option<bool> {
    match e.verdict.as_str() {
        "allow" => Some(true),
        "deny" | "audit-deny" | "kill" => Some(false),
        _ => None,
    }
}

/// The host name that decided a connect, when the event carries one: `rule_pattern` of a host
/// rule is the host as written (`api.example.com:443/tcp`).
pub fn host_of(e: &EventRecord) -> Option<String> {
    match NetTarget::parse(e.rule_pattern.as_deref()?) {
        Ok(NetTarget::Ip(t)) => match t.addr {
            NetAddr::Host(h) => Some(h.to_ascii_lowercase()),
            NetAddr::Cidr { .. } => None,
        },
        _ => None,
    }
}

/// Host name -> addresses, as the log shows them: every connect decided by a host rule names
/// the host and the address it resolved to then. Replaying with these addresses decides host
/// rules the way they were decided, offline and reproducibly.
#[derive(Debug, Default)]
pub struct HostsSeen(BTreeMap<String, Vec<IpAddr>>);

impl HostsSeen {
    pub fn add(&mut self, e: &EventRecord) {
        let (Some(host), Some(addr)) = (host_of(e), e.addr.as_deref().and_then(|a| a.parse().ok()))
        else {
            return;
        };
        let addrs = self.0.entry(host).or_default();
        if !addrs.contains(&addr) {
            addrs.push(addr);
        }
    }

    /// The host that `addr` was seen for (the first, if several).
    pub fn host_for(&self, addr: IpAddr) -> Option<&str> {
        self.0
            .iter()
            .find(|(_, addrs)| addrs.contains(&addr))
            .map(|(h, _)| h.as_str())
    }

    /// The hosts seen, and `@resolvers` (the `dns` set's name servers): as the log recorded it
    /// where a rule of it allowed something, else this machine's /etc/resolv.conf.
    pub fn resolved(&self) -> ResolvedHosts {
        let mut r = ResolvedHosts::new();
        for (host, addrs) in &self.0 {
            for a in addrs {
                r.insert(host, *a);
            }
        }
        if !r.contains(crate::policy::net::RESOLVERS) {
            for a in crate::policy::hosts::system_resolvers().unwrap_or_default() {
                r.insert(crate::policy::net::RESOLVERS, a);
            }
        }
        r
    }
}
