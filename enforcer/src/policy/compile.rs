//! Compiler from validated policies to the exact map entries the kernel loads.
//! The algorithm these entries serve is specified in docs/kernel-maps.md.

use std::path::PathBuf;

use enforcer_common::{AgentConfig, CgroupMatch, ExeMatch, NetRule, PathRule};

/// Where a rule came from.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct SourceLoc {
    pub file: PathBuf,
    pub line: u32,
    pub col: u32,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Mode {
    Enforce,
    Audit,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum OnViolation {
    /// Fallback backend: log only.
    Audit,
    /// Fallback backend: SIGKILL the offending process in the kernel.
    Kill,
}

#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct AgentInfo {
    /// Dense id, 1-based, agents sorted by name.
    pub id: u32,
    pub name: String,
    pub description: String,
    pub mode: Mode,
    pub on_violation: OnViolation,
    /// The value the loader writes to `AGENTS` (flags, wildcard depths, delegation).
    #[serde(skip)]
    pub config: AgentConfig,
    pub source: PathBuf,
}

impl AgentInfo {
    /// The policy's `delegate` list names agent `id` (the kernel keeps it as `delegate_lo`).
    pub fn delegates_to(&self, id: u32) -> bool {
        id < 64 && self.config.delegate_lo & (1u64 << id) != 0
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum RuleKind {
    FileRead,
    FileWrite,
    /// `file.deny`: read, write and exec.
    FileDeny,
    /// `file.deny_read`.
    FileDenyRead,
    /// `file.deny_write`.
    FileDenyWrite,
    ExecAllow,
    ExecDeny,
    NetConnect,
    NetDeny,
    /// `net.listen`: addresses and ports a TCP socket may listen on.
    NetListen,
    MatchExe,
    MatchCgroup,
}

#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct RuleInfo {
    /// Dense id, 1-based (0 = default deny).
    pub id: u32,
    /// Stable textual id: `<file>:<line>` or the rule's explicit `id`.
    pub text_id: String,
    pub agent: u32,
    pub kind: RuleKind,
    /// The pattern as written.
    pub pattern: String,
    pub source: SourceLoc,
}

/// One `PATH_RULES` entry: path bytes of the LPM data (without ruleset), value already merged.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PathEntry {
    pub agent: u32,
    pub bytes: Vec<u8>,
    pub value: PathRule,
}

/// One `NAME_RULES` entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NameEntry {
    pub agent: u32,
    /// `NAME_EXACT` or `NAME_SUFFIX`.
    pub kind: u32,
    pub name: Vec<u8>,
    pub value: PathRule,
}

/// One `NET_RULES` entry: IPv6 (or IPv4-mapped) address and CIDR bits (0..=128).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NetEntry {
    pub agent: u32,
    pub addr: [u8; 16],
    pub prefix_bits: u32,
    pub value: NetRule,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExeMatchEntry {
    pub bytes: Vec<u8>,
    pub value: ExeMatch,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CgroupMatchEntry {
    /// cgroup v2 path relative to the cgroup2 mount (resolved to an id by the loader).
    pub path: PathBuf,
    pub value: CgroupMatch,
}

/// Everything the kernel needs, plus the tables that turn ids back into names.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CompiledPolicy {
    /// Index i holds agent id i+1.
    pub agents: Vec<AgentInfo>,
    /// Index i holds rule id i+1.
    pub rules: Vec<RuleInfo>,
    pub path_entries: Vec<PathEntry>,
    pub name_entries: Vec<NameEntry>,
    pub net_entries: Vec<NetEntry>,
    pub exe_matches: Vec<ExeMatchEntry>,
    pub cgroup_matches: Vec<CgroupMatchEntry>,
    /// Every net rule that names a host, with the addresses it compiled to (empty: the host was
    /// not resolved and the rule compiled to nothing).
    pub host_rules: Vec<HostRule>,
    /// Conditions of conditional allows: index i is the kernel's condition id i+1 (`CONDS`).
    pub conditions: Vec<super::when::Condition>,
}

/// A net rule naming a host: what the daemon resolves, and what lets the audit log name the host
/// behind an allowed address.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct HostRule {
    pub agent: u32,
    pub rule: u32,
    pub host: String,
    pub addrs: Vec<std::net::IpAddr>,
}

impl CompiledPolicy {
    pub fn agent_by_name(&self, name: &str) -> Option<&AgentInfo> {
        self.agents.iter().find(|a| a.name == name)
    }
    pub fn agent(&self, id: u32) -> Option<&AgentInfo> {
        self.agents.get((id as usize).checked_sub(1)?)
    }
    pub fn rule(&self, id: u32) -> Option<&RuleInfo> {
        self.rules.get((id as usize).checked_sub(1)?)
    }
    /// Net rules that name hosts (agent, rule id, host, resolved addresses).
    pub fn host_rules(&self) -> &[HostRule] {
        &self.host_rules
    }
    /// Host rules that compiled to nothing because the host was not resolved.
    pub fn unresolved_hosts(&self) -> impl Iterator<Item = &HostRule> {
        self.host_rules.iter().filter(|h| h.addrs.is_empty())
    }
    /// Entries per map, in the order `check` prints them.
    pub fn map_sizes(&self) -> [(&'static str, usize); 7] {
        [
            (enforcer_common::MAP_AGENTS, self.agents.len()),
            ("rules", self.rules.len()),
            (enforcer_common::MAP_PATH_RULES, self.path_entries.len()),
            (enforcer_common::MAP_NAME_RULES, self.name_entries.len()),
            (enforcer_common::MAP_NET_RULES, self.net_entries.len()),
            (enforcer_common::MAP_EXE_MATCH, self.exe_matches.len()),
            (enforcer_common::MAP_CGROUP_MATCH, self.cgroup_matches.len()),
        ]
    }
}
