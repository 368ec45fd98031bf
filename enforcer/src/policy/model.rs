//! Validated policies: what `load_paths` returns and `compile` consumes.

use std::{collections::HashMap, ops::Range, path::PathBuf};

use enforcer_common::{ACCESS_CONNECT, ACCESS_EXEC, ACCESS_READ, ACCESS_WRITE};

use super::{
    compile::{Mode, OnViolation, RuleKind, SourceLoc},
    diag::{Diagnostic, SourceFile},
    net::{IpTarget, NetTarget},
    pattern::PathPattern,
};

/// Every agent found in the loaded files (sorted by name), with its includes flattened.
#[derive(Clone, Debug, Default)]
pub struct PolicySet {
    pub agents: Vec<AgentPolicy>,
    /// Every permission set that was loaded (listed or included).
    pub sets: Vec<SetInfo>,
    /// Source text of every loaded file, keyed by `SourceLoc::file`, for compile diagnostics.
    pub sources: HashMap<PathBuf, SourceFile>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SetInfo {
    pub name: String,
    pub description: String,
    pub file: PathBuf,
}

#[derive(Clone, Debug)]
pub struct AgentPolicy {
    pub name: String,
    pub description: String,
    pub mode: Mode,
    pub on_violation: OnViolation,
    pub log_file_allow: bool,
    /// `[process]`: mount, chroot, user namespaces.
    pub process: super::validate::ProcessPerms,
    /// Sub-agents this agent may start, with where each is named.
    pub delegate: Vec<(String, Located)>,
    /// The agent's own file.
    pub source: PathBuf,
    pub name_at: Located,
    /// Own rules in source order, then each included set's rules (depth first, include order).
    pub rules: Vec<Rule>,
}

/// A position plus the span it came from (for caret diagnostics after loading).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Located {
    pub loc: SourceLoc,
    pub span: Range<usize>,
}

#[derive(Clone, Debug)]
pub struct Rule {
    /// `<file>:<line>` (`<file>:<line>:<col>` if the line has several rules) or the explicit id.
    pub text_id: String,
    /// The id was written as `id = "..."`.
    pub explicit_id: bool,
    pub kind: RuleKind,
    /// The pattern as written.
    pub pattern: String,
    pub at: Located,
    pub target: RuleTarget,
    /// A conditional allow (`when.hours`, or a grant's lifetime): applies only inside its windows.
    pub when: Option<super::when::Condition>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RuleTarget {
    Path(PathPattern),
    Ip(IpTarget),
    /// cgroup v2 path relative to the cgroup2 mount, normalized (`/agents/coder`).
    Cgroup(String),
}

impl RuleKind {
    /// Access bits a path rule of this kind allows and denies.
    pub fn path_access(self) -> (u32, u32) {
        match self {
            RuleKind::FileRead => (ACCESS_READ, 0),
            RuleKind::FileWrite => (ACCESS_WRITE, 0),
            RuleKind::FileDeny => (0, ACCESS_READ | ACCESS_WRITE | ACCESS_EXEC),
            RuleKind::FileDenyRead => (0, ACCESS_READ),
            RuleKind::FileDenyWrite => (0, ACCESS_WRITE),
            RuleKind::ExecAllow | RuleKind::MatchExe => (ACCESS_EXEC, 0),
            RuleKind::ExecDeny => (0, ACCESS_EXEC),
            RuleKind::NetConnect => (ACCESS_CONNECT, 0),
            RuleKind::NetDeny => (0, ACCESS_CONNECT),
            // Listen rules are IP only (never path rules).
            RuleKind::NetListen => (0, 0),
            RuleKind::MatchCgroup => (0, 0),
        }
    }

    /// The field name as written in TOML.
    pub fn field(self) -> &'static str {
        match self {
            RuleKind::FileRead => "file.read",
            RuleKind::FileWrite => "file.write",
            RuleKind::FileDeny => "file.deny",
            RuleKind::FileDenyRead => "file.deny_read",
            RuleKind::FileDenyWrite => "file.deny_write",
            RuleKind::ExecAllow => "exec.allow",
            RuleKind::ExecDeny => "exec.deny",
            RuleKind::NetConnect => "net.connect",
            RuleKind::NetDeny => "net.deny",
            RuleKind::NetListen => "net.listen",
            RuleKind::MatchExe => "agent.match.exe",
            RuleKind::MatchCgroup => "agent.match.cgroup",
        }
    }
}

impl Rule {
    /// The path pattern of a file/exec/match.exe/unix-socket rule.
    pub fn path_pattern(&self) -> Option<&PathPattern> {
        match &self.target {
            RuleTarget::Path(p) => Some(p),
            _ => None,
        }
    }
}

impl From<NetTarget> for RuleTarget {
    fn from(t: NetTarget) -> Self {
        match t {
            NetTarget::Ip(ip) => RuleTarget::Ip(ip),
            NetTarget::Unix(p) => RuleTarget::Path(p),
        }
    }
}

impl PolicySet {
    /// A diagnostic at a rule's (or any located item's) position.
    pub fn error_at(&self, at: &Located, message: impl Into<String>) -> Diagnostic {
        match self.sources.get(&at.loc.file) {
            Some(src) => src.error(at.span.clone(), message),
            None => Diagnostic {
                file: at.loc.file.clone(),
                line: at.loc.line,
                col: at.loc.col,
                message: message.into(),
                source_line: None,
                caret_len: 1,
            },
        }
    }

    pub fn agent(&self, name: &str) -> Option<&AgentPolicy> {
        self.agents.iter().find(|a| a.name == name)
    }
}
