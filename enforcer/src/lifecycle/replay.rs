//! `replay`: decide every recorded event again under a candidate policy with the reference
//! evaluator, and report what would change. Events are fed one at a time (logs can be large);
//! identical changes are grouped with a count.

use std::collections::BTreeMap;

use serde::Serialize;

use super::requests::{access_label, recorded_allow, request_of, target_label, Skip};
use crate::{
    audit::EventRecord,
    policy::{
        eval::{self, Verdict},
        CompiledPolicy,
    },
};

/// A verdict and the rule behind it, as the audit log writes them.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct Decided {
    /// `allow`, `deny`, `audit-deny` or `kill`.
    pub verdict: String,
    /// Textual rule id, or `default-deny`.
    pub rule: String,
    /// The rule's pattern as written (absent for `default-deny`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pattern: Option<String>,
}

/// Identical changes: same agent, operation, access, target, old and new decision.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Change {
    pub agent: String,
    pub op: String,
    pub access: String,
    pub target: String,
    pub count: u64,
    pub old: Decided,
    pub new: Decided,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct AgentCount {
    pub agent: String,
    pub events: u64,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct SkipCount {
    pub reason: Skip,
    pub events: u64,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct ReplayReport {
    /// Event records considered (after `--agent`).
    pub events: u64,
    /// Events decided again.
    pub replayed: u64,
    /// Replayed events whose verdict stays the same (allowed or denied).
    pub unchanged: u64,
    /// Was allowed, the candidate denies (largest groups first).
    pub newly_denied: Vec<Change>,
    /// Was denied or audit-denied, the candidate allows.
    pub newly_allowed: Vec<Change>,
    /// Agents of the log that the candidate policy does not define: not replayed.
    pub unknown_agents: Vec<AgentCount>,
    /// Events that cannot be decided again, by reason.
    pub skipped: Vec<SkipCount>,
}

impl ReplayReport {
    /// True when the candidate would decide some recorded event the other way.
    pub fn changed(&self) -> bool {
        !self.newly_denied.is_empty() || !self.newly_allowed.is_empty()
    }
}

type ChangeKey = (String, String, String, String, Decided, Decided);

/// Accumulates a replay: `add` every event, then `finish`.
pub struct Replay<'p> {
    policy: &'p CompiledPolicy,
    only_agent: Option<String>,
    events: u64,
    replayed: u64,
    unchanged: u64,
    denied: BTreeMap<ChangeKey, u64>,
    allowed: BTreeMap<ChangeKey, u64>,
    unknown_agents: BTreeMap<String, u64>,
    skipped: BTreeMap<Skip, u64>,
}

impl<'p> Replay<'p> {
    /// `only_agent`: replay only this agent's events (the acting, innermost agent: its rules
    /// decide in the kernel).
    pub fn new(policy: &'p CompiledPolicy, only_agent: Option<&str>) -> Self {
        Replay {
            policy,
            only_agent: only_agent.map(str::to_owned),
            events: 0,
            replayed: 0,
            unchanged: 0,
            denied: BTreeMap::new(),
            allowed: BTreeMap::new(),
            unknown_agents: BTreeMap::new(),
            skipped: BTreeMap::new(),
        }
    }

    pub fn add(&mut self, e: &EventRecord) {
        if self
            .only_agent
            .as_ref()
            .is_some_and(|want| e.agent.as_ref() != Some(want))
        {
            return;
        }
        self.events += 1;
        let Some(agent_name) = &e.agent else {
            *self.skipped.entry(Skip::NoAgent).or_default() += 1;
            return;
        };
        let request = match (request_of(e), recorded_allow(e)) {
            (Ok(r), Some(_)) => r,
            (Err(skip), _) => return *self.skipped.entry(skip).or_default() += 1,
            (Ok(_), None) => return *self.skipped.entry(Skip::UnknownOp).or_default() += 1,
        };
        let was_allowed = recorded_allow(e) == Some(true);
        let Some(agent) = self.policy.agent_by_name(agent_name) else {
            *self.unknown_agents.entry(agent_name.clone()).or_default() += 1;
            return;
        };
        self.replayed += 1;
        // Windowed allows (`when.hours`) are decided at the time the event happened.
        let decision = match e.time.parse::<jiff::Timestamp>() {
            Ok(at) => eval::evaluate_at(self.policy, agent.id, &request, at),
            Err(_) => eval::evaluate(self.policy, agent.id, &request),
        };
        let now_allowed = decision.verdict == Verdict::Allow;
        if now_allowed == was_allowed {
            self.unchanged += 1;
            return;
        }
        let old = Decided {
            verdict: e.verdict.clone(),
            rule: e.rule.clone(),
            pattern: e.rule_pattern.clone(),
        };
        let rule = self.policy.rule(decision.rule);
        let new = Decided {
            verdict: match decision.verdict {
                Verdict::Allow => "allow",
                Verdict::Deny => "deny",
                Verdict::AuditDeny => "audit-deny",
            }
            .to_owned(),
            rule: rule.map_or_else(|| "default-deny".to_owned(), |r| r.text_id.clone()),
            pattern: rule.map(|r| r.pattern.clone()),
        };
        let key = (
            agent_name.clone(),
            e.op.clone(),
            access_label(&request).to_owned(),
            target_label(&request),
            old,
            new,
        );
        let groups = if now_allowed {
            &mut self.allowed
        } else {
            &mut self.denied
        };
        *groups.entry(key).or_default() += 1;
    }

    pub fn finish(self) -> ReplayReport {
        ReplayReport {
            events: self.events,
            replayed: self.replayed,
            unchanged: self.unchanged,
            newly_denied: changes(self.denied),
            newly_allowed: changes(self.allowed),
            unknown_agents: self
                .unknown_agents
                .into_iter()
                .map(|(agent, events)| AgentCount { agent, events })
                .collect(),
            skipped: self
                .skipped
                .into_iter()
                .map(|(reason, events)| SkipCount { reason, events })
                .collect(),
        }
    }
}

/// Groups, largest first, then by agent and target (stable output for diffs in CI).
fn changes(groups: BTreeMap<ChangeKey, u64>) -> Vec<Change> {
    let mut out: Vec<Change> = groups
        .into_iter()
        .map(|((agent, op, access, target, old, new), count)| Change {
            agent,
            op,
            access,
            target,
            count,
            old,
            new,
        })
        .collect();
    out.sort_by_key(|c| std::cmp::Reverse(c.count));
    out
}
