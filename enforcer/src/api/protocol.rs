//! Messages on the API socket. Every message is one JSON object on one line. Unknown request
//! names and unknown fields are errors: a typo must not be read as a different request.

use serde::{Deserialize, Serialize};

/// Longest request line the server reads; anything longer is refused without being parsed.
pub const MAX_REQUEST_BYTES: usize = 64 * 1024;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "request", rename_all = "kebab-case", deny_unknown_fields)]
// Unit-like requests are `{}` struct variants so that unknown fields are refused for them too.
pub enum Request {
    /// Make process `pid` (which must be the caller itself) and its future descendants `agent`.
    Register { agent: String, pid: u32 },
    /// Daemon health, backend, agents, per-rule enforcement, counters.
    Status {},
    /// Stream audit records as they are written (after a `subscribed` response).
    Subscribe {},
    /// Re-read and re-apply the policy directory (validated first).
    Reload {},
    /// A temporary allow for `agent` (`<field> <pattern>`) lasting `seconds`.
    Grant {
        agent: String,
        rule: String,
        seconds: u64,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reason: Option<String>,
    },
    /// The live grants.
    Grants {},
    /// End a grant now.
    Revoke { id: u32 },
}

impl Request {
    /// The request's name on the wire (`"request"`), which names it in the role table
    /// (daemon/roles.rs) and in `api-refused` records.
    pub fn verb(&self) -> &'static str {
        match self {
            Request::Register { .. } => "register",
            Request::Status {} => "status",
            Request::Subscribe {} => "subscribe",
            Request::Reload {} => "reload",
            Request::Grant { .. } => "grant",
            Request::Grants {} => "grants",
            Request::Revoke { .. } => "revoke",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "result", rename_all = "kebab-case")]
pub enum Response {
    Registered {
        agent: String,
        session: String,
        policy_version: u32,
        /// The Landlock envelope the launcher applies before exec (docs/landlock.md), computed
        /// from the running policy. Absent from daemons that do not send one, and when the
        /// daemon's backend does not use envelopes.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        envelope: Option<crate::policy::envelope::Envelope>,
        /// Install the seccomp filter that kills other syscall ABIs and clones sharing the
        /// descriptor table (the fallback: docs/fallback.md). Absent means no.
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        syscall_guard: bool,
    },
    Status(Box<StatusReport>),
    /// Records with `seq >= next_seq` will follow on this connection; older ones are in the log.
    Subscribed {
        next_seq: u64,
    },
    Reloaded {
        policy_version: u32,
        changed: bool,
    },
    Granted {
        grant: crate::policy::grant::Grant,
        policy_version: u32,
    },
    Grants {
        grants: Vec<crate::policy::grant::Grant>,
    },
    Revoked {
        grant: crate::policy::grant::Grant,
        policy_version: u32,
    },
    Error {
        message: String,
    },
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct StatusReport {
    pub daemon_pid: u32,
    pub started: String,
    pub uptime_secs: u64,
    pub policy_version: u32,
    pub policy_dir: String,
    pub audit_log: String,
    pub backend: String,
    pub kernel: String,
    pub features: Vec<FeatureReport>,
    pub agents: Vec<AgentReport>,
    pub rules: Vec<RuleReport>,
    pub decisions: Vec<DecisionCount>,
    pub losses: Vec<LossCount>,
    /// Internal failures inside the kernel programs, by failure point (`FAIL_NAMES`): each was
    /// a decision that could not be made and denied (docs/kernel-maps.md, "Failure points").
    /// Empty when the kernel could not be asked.
    #[serde(default)]
    pub failures: Vec<FailureCount>,
    pub reloads: u64,
    pub reload_failures: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_reload_error: Option<String>,
    pub subscribers: usize,
    /// Audit records waiting to be written because the log cannot take them (disk full).
    #[serde(default)]
    pub audit_backlog: usize,
    /// Fill levels of the kernel maps whose capacity limits enforcement.
    #[serde(default)]
    pub maps: Vec<MapFillReport>,
    /// The grants that have not expired (`enforcer grant`), in id order.
    #[serde(default)]
    pub grants: Vec<crate::policy::grant::Grant>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct FeatureReport {
    pub name: String,
    pub available: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct AgentReport {
    pub name: String,
    pub mode: String,
    /// Live processes (thread-group leaders) that are members of this agent.
    pub processes: u32,
    pub sessions: Vec<SessionReport>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct SessionReport {
    pub session: String,
    /// Agent chain, outermost first.
    pub chain: Vec<String>,
    /// When the session started (RFC 3339), if known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started: Option<String>,
    pub processes: u32,
    /// The Landlock envelope the session was started under (launcher sessions on backends
    /// that use envelopes): its policy version, and whether the running policy's is wider.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub envelope: Option<String>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct RuleReport {
    pub agent: String,
    pub rule: String,
    pub enforcement: String,
    pub why: String,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct DecisionCount {
    pub agent: String,
    pub op: String,
    pub verdict: String,
    pub count: u64,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct LossCount {
    pub agent: String,
    pub count: u64,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct FailureCount {
    /// The failure point's stable name (`enforcer_common::FAIL_NAMES`).
    pub point: String,
    pub count: u64,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct MapFillReport {
    /// The map's name in the eBPF object (`PROCS`, `NET_RULES`...).
    pub map: String,
    pub entries: u64,
    /// For rule maps the per-slot limit (half of `max_entries`): what a policy may use.
    pub capacity: u64,
}

/// Parse one request line, with an error that says precisely what is wrong.
pub fn parse_request(line: &str) -> Result<Request, String> {
    if line.len() > MAX_REQUEST_BYTES {
        return Err(format!(
            "request is {} bytes, the limit is {MAX_REQUEST_BYTES}",
            line.len()
        ));
    }
    serde_json::from_str::<Request>(line.trim_end()).map_err(|e| {
        let what = e.to_string();
        format!("bad request: {what} (requests: register, status, subscribe, reload, grant, grants, revoke)")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_each_request() {
        assert_eq!(
            parse_request(r#"{"request":"register","agent":"coder","pid":42}"#),
            Ok(Request::Register {
                agent: "coder".into(),
                pid: 42
            })
        );
        assert_eq!(
            parse_request(r#"{"request":"status"}"#),
            Ok(Request::Status {})
        );
        assert_eq!(
            parse_request("{\"request\":\"subscribe\"}\n"),
            Ok(Request::Subscribe {})
        );
        assert_eq!(
            parse_request(r#"{"request":"reload"}"#),
            Ok(Request::Reload {})
        );
    }

    #[test]
    fn rejects_bad_requests_precisely() {
        let cases = [
            (r#"{"request":"shutdown"}"#, "unknown variant `shutdown`"),
            (
                r#"{"request":"register","agent":"a"}"#,
                "missing field `pid`",
            ),
            (
                r#"{"request":"register","agent":"a","pid":-1}"#,
                "invalid value",
            ),
            (
                r#"{"request":"status","verbose":true}"#,
                "unknown field `verbose`",
            ),
            (r#"{"agent":"a"}"#, "missing field `request`"),
            ("not json", "expected"),
        ];
        for (line, expected) in cases {
            let err = parse_request(line).expect_err(line);
            assert!(
                err.contains(expected),
                "for {line}: error {err:?} does not mention {expected:?}"
            );
        }
        let huge = format!(
            r#"{{"request":"register","agent":"{}","pid":1}}"#,
            "a".repeat(MAX_REQUEST_BYTES)
        );
        assert!(
            parse_request(&huge).unwrap_err().contains("limit"),
            "oversized request must be refused"
        );
    }

    #[test]
    fn registered_without_envelope_still_parses() {
        // What daemons before the envelope send: the launcher then applies none.
        let old = r#"{"result":"registered","agent":"a","session":"01","policy_version":3}"#;
        assert!(matches!(
            serde_json::from_str::<Response>(old),
            Ok(Response::Registered { envelope: None, .. })
        ));
    }

    #[test]
    fn responses_round_trip() {
        for response in [
            Response::Registered {
                agent: "a".into(),
                session: "00ff".into(),
                policy_version: 2,
                envelope: None,
                syscall_guard: true,
            },
            Response::Status(Box::default()),
            Response::Subscribed { next_seq: 10 },
            Response::Reloaded {
                policy_version: 3,
                changed: true,
            },
            Response::Error {
                message: "no".into(),
            },
        ] {
            let line = serde_json::to_string(&response).unwrap();
            assert_eq!(
                serde_json::from_str::<Response>(&line).unwrap(),
                response,
                "{line}"
            );
        }
    }
}
