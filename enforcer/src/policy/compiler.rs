//! `compile`: validated policies -> the exact kernel map entries (docs/kernel-maps.md).
//! Anything the maps cannot hold exactly is an error here, never a silent approximation.

use std::{
    collections::{BTreeMap, HashMap},
    net::IpAddr,
};

use enforcer_common::*;

use super::{
    compile::*,
    diag::Diagnostics,
    hosts::ResolvedHosts,
    limits::*,
    merge::{merge_net, merge_paths, merged_value, CidrRules, OwnRules, PathContributions},
    model::{AgentPolicy, Located, PolicySet, RuleTarget},
    net::{mapped, NetAddr},
    pattern::Entries,
};

pub fn compile(set: &PolicySet, hosts: &ResolvedHosts) -> Result<CompiledPolicy, Diagnostics> {
    let mut c = Compiler {
        set,
        hosts,
        out: CompiledPolicy::default(),
        diags: Diagnostics::default(),
        exe: Vec::new(),
    };
    let agent_ids: HashMap<&str, u32> = set
        .agents
        .iter()
        .enumerate()
        .map(|(i, a)| (a.name.as_str(), i as u32 + 1))
        .collect();
    let mut cgroups: HashMap<&str, (u32, &Located)> = HashMap::new();
    for (i, agent) in set.agents.iter().enumerate() {
        let id = i as u32 + 1;
        // The last id is the load-time canary's (kernel::probe): never a policy's agent.
        if id as usize > MAX_POLICY_AGENTS {
            let msg = format!(
                "too many agents: at most {MAX_POLICY_AGENTS} fit the kernel's agent table"
            );
            c.diags.push(set.error_at(&agent.name_at, msg));
            break;
        }
        c.agent(id, agent, &agent_ids, &mut cgroups);
    }
    c.check_exe_overlaps();
    c.check_limits();
    let Compiler { mut out, diags, .. } = c;
    out.path_entries
        .sort_by(|a, b| (a.agent, &a.bytes).cmp(&(b.agent, &b.bytes)));
    out.name_entries
        .sort_by(|a, b| (a.agent, a.kind, &a.name).cmp(&(b.agent, b.kind, &b.name)));
    out.net_entries
        .sort_by_key(|e| (e.agent, e.addr, e.prefix_bits));
    out.exe_matches.sort_by(|a, b| a.bytes.cmp(&b.bytes));
    diags.into_result(out)
}

struct Compiler<'a> {
    set: &'a PolicySet,
    hosts: &'a ResolvedHosts,
    out: CompiledPolicy,
    diags: Diagnostics,
    /// Every `match.exe` entry: bytes, agent, rule id, where (for overlap errors).
    exe: Vec<(Vec<u8>, u32, u32, &'a Located, &'a str)>,
}

impl<'a> Compiler<'a> {
    fn agent(
        &mut self,
        id: u32,
        agent: &'a AgentPolicy,
        agent_ids: &HashMap<&str, u32>,
        cgroups: &mut HashMap<&'a str, (u32, &'a Located)>,
    ) {
        let mut config = AgentConfig {
            flags: AGENT_PRESENT,
            ..Default::default()
        };
        if agent.mode == Mode::Audit {
            config.flags |= AGENT_AUDIT;
        }
        if agent.on_violation == OnViolation::Kill {
            config.flags |= AGENT_KILL;
        }
        if agent.log_file_allow {
            config.flags |= AGENT_LOG_FILE_ALLOW;
        }
        for (allowed, bit) in [
            (agent.process.mount, AGENT_ALLOW_MOUNT),
            (agent.process.chroot, AGENT_ALLOW_CHROOT),
            (agent.process.userns, AGENT_ALLOW_USERNS),
        ] {
            if allowed {
                config.flags |= bit;
            }
        }
        config.flags |= agent.process.sockets & AGENT_ALLOW_MASK;
        for (name, at) in &agent.delegate {
            match agent_ids.get(name.as_str()) {
                Some(&d) if d < 64 => config.delegate_lo |= 1 << d,
                Some(&d) => {
                    let msg = format!("agent `{name}` has id {d}; delegation can only name agents with ids below 64");
                    self.diags.push(self.set.error_at(at, msg));
                }
                None => {} // reported by the loader
            }
        }

        let mut paths = PathContributions::default();
        let mut names: BTreeMap<(u32, Vec<u8>), OwnRules> = BTreeMap::new();
        // Rule id -> where it was written, for errors found while merging.
        let mut rule_at: HashMap<u32, &'a Located> = HashMap::new();
        let mut cidrs = CidrRules::new();
        let mut depths: Vec<u32> = Vec::new();

        for rule in &agent.rules {
            let rule_id = self.out.rules.len() as u32 + 1;
            self.out.rules.push(RuleInfo {
                id: rule_id,
                text_id: rule.text_id.clone(),
                agent: id,
                kind: rule.kind,
                pattern: rule.pattern.clone(),
                source: rule.at.loc.clone(),
            });
            rule_at.insert(rule_id, &rule.at);
            // Conditional allows (`when`, grants): the validator lets only allows carry one.
            let cond = match &rule.when {
                None => 0,
                Some(c) => match self.condition_id(c) {
                    Some(id) => id,
                    None => {
                        let msg = format!("more than {} distinct time windows and grants; the kernel's condition table is full", MAX_CONDS - 1);
                        self.diags.push(self.set.error_at(&rule.at, msg));
                        continue;
                    }
                },
            };
            match &rule.target {
                RuleTarget::Path(pattern) => {
                    if let Some(d) = pattern.wildcard_depth() {
                        if !depths.contains(&d) {
                            if depths.len() as u32 == MAX_WILDCARD_DEPTHS {
                                let msg = format!(
                                    "`*` at depth {d}: agent `{}` already uses `*` at depths {depths:?}; at most \
                                     {MAX_WILDCARD_DEPTHS} distinct depths per agent",
                                    agent.name
                                );
                                self.diags.push(self.set.error_at(&rule.at, msg));
                                continue;
                            }
                            depths.push(d);
                            config.wildcard_depths |= 1 << (d - 1);
                        }
                    }
                    let (allow, deny) = rule.kind.path_access();
                    match pattern.entries() {
                        Entries::Path(entries) => {
                            if rule.kind == RuleKind::MatchExe {
                                for e in &entries {
                                    self.exe
                                        .push((e.clone(), id, rule_id, &rule.at, &agent.name));
                                }
                            }
                            for e in entries {
                                paths.add(e, rule_id, allow, deny, cond);
                            }
                        }
                        Entries::Name(kind, name) => {
                            names
                                .entry((kind, name))
                                .or_default()
                                .add(rule_id, allow, deny, cond);
                        }
                    }
                }
                RuleTarget::Ip(target) => {
                    let action = if rule.kind == RuleKind::NetDeny {
                        ACTION_DENY
                    } else {
                        ACTION_ALLOW
                    };
                    let port_rule = NetPortRule {
                        port_lo: target.port_lo,
                        port_hi: target.port_hi,
                        proto: target.proto,
                        action,
                        rule: rule_id,
                        cond,
                    };
                    let keys: Vec<([u8; 16], u32)> = match &target.addr {
                        NetAddr::Cidr { addr, prefix_bits } => vec![(*addr, *prefix_bits)],
                        NetAddr::Host(host) => {
                            let addrs: Vec<IpAddr> = self.hosts.get(host).to_vec();
                            let keys = addrs.iter().map(|a| (mapped(*a), 128)).collect();
                            self.out.host_rules.push(HostRule {
                                agent: id,
                                rule: rule_id,
                                host: host.clone(),
                                addrs,
                            });
                            keys
                        }
                    };
                    for key in keys {
                        cidrs.entry(key).or_default().push((port_rule, &rule.at));
                    }
                }
                RuleTarget::Cgroup(path) => match cgroups.get(path.as_str()) {
                    Some(&(other, _)) if other == id => {}
                    Some(&(other, first)) => {
                        let msg = format!(
                            "cgroup `{path}` is already matched by agent `{}` (at {}:{}:{}); a cgroup selects one agent",
                            self.set.agents[other as usize - 1].name,
                            first.loc.file.display(),
                            first.loc.line,
                            first.loc.col
                        );
                        self.diags.push(self.set.error_at(&rule.at, msg));
                    }
                    None => {
                        cgroups.insert(path, (id, &rule.at));
                        self.out.cgroup_matches.push(CgroupMatchEntry {
                            path: path.into(),
                            value: CgroupMatch {
                                agent: id,
                                rule: rule_id,
                            },
                        });
                    }
                },
            }
        }

        match merge_paths(&paths) {
            Ok(entries) => {
                for (bytes, value) in entries {
                    self.out.path_entries.push(PathEntry {
                        agent: id,
                        bytes,
                        value,
                    });
                }
            }
            Err((rule, msg)) => self.diags.push(self.set.error_at(rule_at[&rule], msg)),
        }
        for ((kind, name), own) in names {
            match merged_value(&[&own], &name) {
                Ok(value) => self.out.name_entries.push(NameEntry {
                    agent: id,
                    kind,
                    name,
                    value,
                }),
                Err((rule, msg)) => self.diags.push(self.set.error_at(rule_at[&rule], msg)),
            }
        }
        match merge_net(&cidrs) {
            Ok(entries) => {
                for (addr, prefix_bits, value) in entries {
                    self.out.net_entries.push(NetEntry {
                        agent: id,
                        addr,
                        prefix_bits,
                        value,
                    });
                }
            }
            Err((at, msg)) => self.diags.push(self.set.error_at(at, msg)),
        }
        self.out.agents.push(AgentInfo {
            id,
            name: agent.name.clone(),
            description: agent.description.clone(),
            mode: agent.mode,
            on_violation: agent.on_violation,
            config,
            source: agent.source.clone(),
        });
    }

    /// The kernel id of `cond` (equal conditions share one), `None` when the table is full.
    fn condition_id(&mut self, cond: &super::when::Condition) -> Option<u32> {
        let conds = &mut self.out.conditions;
        let i = match conds.iter().position(|c| c == cond) {
            Some(i) => i,
            None => {
                conds.push(cond.clone());
                conds.len() - 1
            }
        };
        let id = i as u32 + 1;
        if id >= MAX_CONDS {
            conds.truncate(MAX_CONDS as usize - 1);
            return None;
        }
        Some(id)
    }

    /// One executable path may select at most one agent: no entry of one agent may be a prefix
    /// of (or equal to) another agent's entry.
    fn check_exe_overlaps(&mut self) {
        let mut by_bytes: HashMap<&[u8], usize> = HashMap::new();
        for (i, (bytes, ..)) in self.exe.iter().enumerate() {
            by_bytes.entry(bytes.as_slice()).or_insert(i);
        }
        let mut reported = std::collections::HashSet::new();
        for (bytes, agent, rule, at, _) in &self.exe {
            let prefixes = bytes
                .iter()
                .enumerate()
                .filter(|(_, b)| **b == b'/')
                .map(|(i, _)| &bytes[..=i]);
            for prefix in prefixes.chain(std::iter::once(bytes.as_slice())) {
                let Some(&j) = by_bytes.get(prefix) else {
                    continue;
                };
                let (_, other_agent, _, other_at, other_name) = &self.exe[j];
                if other_agent != agent && reported.insert((*rule, *other_agent)) {
                    let msg = format!(
                        "agent.match.exe overlaps agent `{other_name}`'s pattern at {}:{}:{}; an executable selects one agent",
                        other_at.loc.file.display(),
                        other_at.loc.line,
                        other_at.loc.col
                    );
                    self.diags.push(self.set.error_at(at, msg));
                }
            }
        }
        let mut seen = std::collections::HashSet::new();
        for (bytes, agent, rule, ..) in &self.exe {
            if seen.insert(bytes.clone()) {
                self.out.exe_matches.push(ExeMatchEntry {
                    bytes: bytes.clone(),
                    value: ExeMatch {
                        agent: *agent,
                        rule: *rule,
                    },
                });
            }
        }
    }

    /// Map capacity. The error points at the agent that needs the most entries of that map.
    fn check_limits(&mut self) {
        let per_agent = |agents: Vec<u32>| -> HashMap<u32, usize> {
            let mut counts = HashMap::new();
            for a in agents {
                *counts.entry(a).or_default() += 1;
            }
            counts
        };
        let out = &self.out;
        let maps = [
            (
                MAP_PATH_RULES,
                per_agent(out.path_entries.iter().map(|e| e.agent).collect()),
                MAX_PATH_ENTRIES,
            ),
            (
                MAP_NAME_RULES,
                per_agent(out.name_entries.iter().map(|e| e.agent).collect()),
                MAX_NAME_ENTRIES,
            ),
            (
                MAP_NET_RULES,
                per_agent(out.net_entries.iter().map(|e| e.agent).collect()),
                MAX_NET_ENTRIES,
            ),
            (
                MAP_EXE_MATCH,
                per_agent(out.exe_matches.iter().map(|e| e.value.agent).collect()),
                MAX_EXE_MATCH_ENTRIES,
            ),
            (
                MAP_CGROUP_MATCH,
                per_agent(out.cgroup_matches.iter().map(|e| e.value.agent).collect()),
                MAX_CGROUP_MATCH_ENTRIES,
            ),
        ];
        for (map, counts, limit) in maps {
            let total: usize = counts.values().sum();
            if total <= limit {
                continue;
            }
            let (&agent, &most) = counts
                .iter()
                .max_by_key(|(a, n)| (**n, std::cmp::Reverse(**a)))
                .expect("entries");
            let policy = &self.set.agents[agent as usize - 1];
            let msg = format!(
                "the policies need {total} {map} entries; the map holds {limit} (agent `{}` needs {most})",
                policy.name
            );
            self.diags.push(self.set.error_at(&policy.name_at, msg));
        }
    }
}
