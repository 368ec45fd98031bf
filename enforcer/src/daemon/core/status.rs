//! The status report (`enforcer status`, metrics): the running policy, the backend's per-rule
//! enforcement, live agent processes and sessions, counters.

use super::Daemon;
use crate::{
    api::protocol::*,
    audit::{clock, record::session_hex},
    daemon::procs,
    kernel::Enforcement,
    policy::compile::Mode,
};

impl Daemon {
    pub fn status(&self) -> StatusReport {
        let policy = self.policy();
        let backend = self.backend.status();
        let name_of = |id: u32| {
            policy
                .agent(id)
                .map_or_else(|| format!("#{id}"), |a| a.name.clone())
        };
        let mut agents: Vec<AgentReport> = policy
            .agents
            .iter()
            .map(|a| AgentReport {
                name: a.name.clone(),
                mode: match a.mode {
                    Mode::Enforce => "enforce".into(),
                    Mode::Audit => "audit".into(),
                },
                ..AgentReport::default()
            })
            .collect();
        if self.options.inspect_procs {
            for (_, state) in procs::agent_members(self.backend.as_ref()) {
                let Some(report) = agents.iter_mut().find(|a| a.name == name_of(state.agent()))
                else {
                    continue;
                };
                report.processes += 1;
                let session = session_hex(state.session);
                match report.sessions.iter_mut().find(|s| s.session == session) {
                    Some(s) => s.processes += 1,
                    None => report.sessions.push(SessionReport {
                        session,
                        chain: state.chain[..(state.depth as usize).min(state.chain.len())]
                            .iter()
                            .map(|&id| name_of(id))
                            .collect(),
                        started: (state.session_start_ns != 0).then(|| {
                            clock::format_rfc3339_ns(
                                clock::BootClock::sample().wall_ns(state.session_start_ns),
                            )
                        }),
                        processes: 1,
                        envelope: self.session_envelope(&session_hex(state.session)).map(
                            |(sent, older)| {
                                if older {
                                    format!("policy version {} (older: the running policy's envelope is wider; it applies to runs started from now on)", sent.policy_version)
                                } else {
                                    format!("policy version {}", sent.policy_version)
                                }
                            },
                        ),
                    }),
                }
            }
        }
        StatusReport {
            daemon_pid: std::process::id(),
            started: clock::format_rfc3339_ns(self.started_ns),
            uptime_secs: self.started.elapsed().as_secs(),
            policy_version: self.version,
            policy_dir: self.options.policy_dir.clone(),
            audit_log: self.audit.path().display().to_string(),
            backend: backend.backend.clone(),
            kernel: backend.kernel.clone(),
            features: backend
                .features
                .iter()
                .map(|(name, result)| FeatureReport {
                    name: name.clone(),
                    available: result.is_ok(),
                    reason: result.as_ref().err().cloned(),
                })
                .collect(),
            agents,
            rules: backend
                .rules
                .iter()
                .map(|r| RuleReport {
                    agent: r.agent.clone(),
                    rule: r.rule.clone(),
                    enforcement: enforcement_name(r.enforcement).into(),
                    why: r.why.clone(),
                })
                .collect(),
            decisions: self
                .stats
                .decisions
                .iter()
                .map(|((agent, op, verdict), count)| DecisionCount {
                    agent: agent.clone(),
                    op: op.clone(),
                    verdict: verdict.clone(),
                    count: *count,
                })
                .collect(),
            losses: self
                .stats
                .losses
                .iter()
                .map(|(agent, count)| LossCount {
                    agent: agent.clone(),
                    count: *count,
                })
                .collect(),
            failures: self.failures(),
            reloads: self.stats.reloads,
            reload_failures: self.stats.reload_failures,
            last_reload_error: self.stats.last_reload_error.clone(),
            subscribers: self.live.receiver_count(),
            audit_backlog: self.audit.queued(),
            maps: self.map_fill(),
            grants: {
                let now = jiff::Timestamp::now();
                self.grants
                    .grants()
                    .iter()
                    .filter(|g| g.is_live(now))
                    .cloned()
                    .collect()
            },
        }
    }
}

impl Daemon {
    /// The kernel's internal-failure counters by point name; none (and a warning) if the kernel
    /// cannot be asked, like the map fill levels.
    fn failures(&self) -> Vec<FailureCount> {
        match self.backend.failures() {
            Ok(counts) => counts
                .into_iter()
                .map(|(point, count)| FailureCount {
                    point: enforcer_common::FAIL_NAMES
                        .iter()
                        .find(|(p, _)| *p == point)
                        .map_or_else(|| format!("#{point}"), |(_, name)| (*name).to_string()),
                    count,
                })
                .collect(),
            Err(e) => {
                tracing::warn!("internal failure counters unreadable: {e}");
                Vec::new()
            }
        }
    }

    /// Map fill levels; none (and a warning) if the kernel cannot be asked: the metrics then
    /// lack the series instead of showing made-up numbers.
    fn map_fill(&self) -> Vec<MapFillReport> {
        match self.backend.map_fill() {
            Ok(maps) => maps
                .into_iter()
                .map(|m| MapFillReport {
                    map: m.map,
                    entries: m.entries,
                    capacity: m.capacity,
                })
                .collect(),
            Err(e) => {
                tracing::warn!("reading the kernel map fill levels: {e}");
                Vec::new()
            }
        }
    }
}

pub fn enforcement_name(e: Enforcement) -> &'static str {
    e.label()
}
