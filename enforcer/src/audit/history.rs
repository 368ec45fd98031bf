//! The names behind the ids of recent policy versions. Events are stamped in the kernel with the
//! version that decided them; after a reload (or a daemon restart, with the kernel's ring buffer
//! adopted) events of an older version can still arrive, and their agent and rule ids mean
//! something else in the current policy. The daemon keeps the last versions' name tables in
//! memory and on disk (`<state_dir>/versions/<N>.json`).

use std::{collections::VecDeque, path::Path, sync::Arc};

use serde::{Deserialize, Serialize};

use crate::policy::compile::CompiledPolicy;

/// How many versions to keep: a reload storm (tests/tests/daemon_reload.rs does 200) must not leave events of a
/// version still in flight unresolvable for long, and each table is small.
pub const DEFAULT_VERSIONS_KEPT: usize = 16;

/// What an event needs from a policy: agent names by id, rule ids and patterns by id.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PolicyNames {
    /// Index i: agent id i+1.
    pub agents: Vec<String>,
    /// Index i: rule id i+1.
    pub rules: Vec<RuleName>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RuleName {
    pub text_id: String,
    pub pattern: String,
}

impl PolicyNames {
    pub fn of(policy: &CompiledPolicy) -> Self {
        PolicyNames {
            agents: policy.agents.iter().map(|a| a.name.clone()).collect(),
            rules: policy
                .rules
                .iter()
                .map(|r| RuleName {
                    text_id: r.text_id.clone(),
                    pattern: r.pattern.clone(),
                })
                .collect(),
        }
    }

    pub fn agent(&self, id: u32) -> Option<&str> {
        self.agents
            .get((id as usize).checked_sub(1)?)
            .map(String::as_str)
    }

    pub fn rule(&self, id: u32) -> Option<&RuleName> {
        self.rules.get((id as usize).checked_sub(1)?)
    }
}

#[derive(Debug)]
pub struct PolicyHistory {
    versions: VecDeque<(u32, Arc<PolicyNames>)>,
    keep: usize,
}

impl PolicyHistory {
    pub fn new(keep: usize) -> Self {
        PolicyHistory {
            versions: VecDeque::new(),
            keep: keep.max(1),
        }
    }

    /// Record the names of the policy applied as `version` (the newest).
    pub fn push(&mut self, version: u32, names: Arc<PolicyNames>) {
        self.versions.retain(|(v, _)| *v != version);
        self.versions.push_back((version, names));
        while self.versions.len() > self.keep {
            self.versions.pop_front();
        }
    }

    pub fn get(&self, version: u32) -> Option<&Arc<PolicyNames>> {
        self.versions
            .iter()
            .rev()
            .find(|(v, _)| *v == version)
            .map(|(_, p)| p)
    }

    /// Versions held, oldest first.
    pub fn versions(&self) -> impl Iterator<Item = u32> + '_ {
        self.versions.iter().map(|(v, _)| *v)
    }

    /// Save the table of `version` under `dir` and delete tables that are no longer kept.
    /// Best effort: a failure only means old events lose their names after a restart.
    pub fn persist(&self, dir: &Path, version: u32) -> std::io::Result<()> {
        let Some(names) = self.get(version) else {
            return Ok(());
        };
        std::fs::create_dir_all(dir)?;
        let tmp = dir.join(format!("{version}.json.tmp"));
        std::fs::write(
            &tmp,
            serde_json::to_vec(names.as_ref()).expect("names always serialize"),
        )?;
        std::fs::rename(&tmp, dir.join(format!("{version}.json")))?;
        for entry in std::fs::read_dir(dir)?.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            let kept = name
                .strip_suffix(".json")
                .and_then(|v| v.parse::<u32>().ok())
                .is_some_and(|v| self.get(v).is_some());
            if !kept {
                let _ = std::fs::remove_file(entry.path());
            }
        }
        Ok(())
    }

    /// Load the tables saved under `dir` (a previous daemon's versions), oldest first.
    pub fn restore(&mut self, dir: &Path) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        let mut found: Vec<(u32, PolicyNames)> = entries
            .flatten()
            .filter_map(|e| {
                let version = e
                    .file_name()
                    .to_str()?
                    .strip_suffix(".json")?
                    .parse::<u32>()
                    .ok()?;
                let names = serde_json::from_slice(&std::fs::read(e.path()).ok()?).ok()?;
                Some((version, names))
            })
            .collect();
        found.sort_by_key(|(v, _)| *v);
        for (version, names) in found {
            self.push(version, Arc::new(names));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(agent: &str) -> Arc<PolicyNames> {
        Arc::new(PolicyNames {
            agents: vec![agent.into()],
            rules: vec![],
        })
    }

    #[test]
    fn keeps_only_the_newest_versions() {
        let mut h = PolicyHistory::new(2);
        for v in 1..=3 {
            h.push(v, names("a"));
        }
        assert!(h.get(1).is_none(), "version 1 should have been evicted");
        assert!(h.get(2).is_some() && h.get(3).is_some());
        assert_eq!(h.versions().collect::<Vec<_>>(), vec![2, 3]);
    }

    #[test]
    fn tables_survive_a_restart_and_old_ones_are_deleted() {
        let dir = crate::audit::writer::tests::tempdir().join("versions");
        let mut h = PolicyHistory::new(2);
        for v in 1..=3 {
            h.push(v, names(&format!("agent-{v}")));
            h.persist(&dir, v).unwrap();
        }
        assert!(
            !dir.join("1.json").exists(),
            "a table no longer kept must be deleted"
        );
        let mut restored = PolicyHistory::new(2);
        restored.restore(&dir);
        assert_eq!(restored.versions().collect::<Vec<_>>(), vec![2, 3]);
        assert_eq!(restored.get(3).and_then(|n| n.agent(1)), Some("agent-3"));
    }
}
