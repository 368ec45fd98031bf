//! The daemon's own state as implicit rules: every agent gets one `file.deny_write` rule per
//! protected path (policy directory, configuration file, state and pin directories, audit log,
//! API socket, the enforcer binary), added after its own rules. A deny beats any allow, so no
//! policy can let an agent rewrite its rules, edit the log that records it, or unpin the
//! programs that confine it. Their ids start with [`ID_PREFIX`], which policy files may not
//! use, so events and status tables say plainly that the daemon, not a policy file, decided.

use std::path::{Path, PathBuf};

use super::{
    compile::{RuleKind, SourceLoc},
    model::{Located, PolicySet, Rule, RuleTarget},
    pattern::{Allowed, PathPattern},
};

/// Rule ids of implicit rules are `enforcer:<what>`; explicit ids in policies may not start so.
pub const ID_PREFIX: &str = "enforcer:";

/// The `file` of an implicit rule's source location.
pub const SOURCE: &str = "<enforcer daemon>";

/// One protected path: `what` names it in the rule id (`enforcer:<what>`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProtectedPath {
    pub what: &'static str,
    /// `/exact/path` or `/dir/**`.
    pub pattern: String,
}

impl ProtectedPath {
    /// `path` and everything below it.
    pub fn tree(what: &'static str, path: &Path) -> ProtectedPath {
        let dir = path.display().to_string();
        let pattern = if dir == "/" {
            "/**".to_string()
        } else {
            format!("{}/**", dir.trim_end_matches('/'))
        };
        ProtectedPath { what, pattern }
    }

    /// Exactly `path`.
    pub fn file(what: &'static str, path: &Path) -> ProtectedPath {
        ProtectedPath {
            what,
            pattern: path.display().to_string(),
        }
    }

    pub fn rule_id(&self) -> String {
        format!("{ID_PREFIX}{}", self.what)
    }

    /// The rule every agent gets. The path must be one the policy language can express (not
    /// every path is: `*` and glob characters, more than 251 bytes): otherwise an error, and the
    /// daemon refuses to run without the protection rather than run without it.
    fn rule(&self) -> Result<Rule, String> {
        let literal = self.pattern.strip_suffix("/**").unwrap_or(&self.pattern);
        if literal.contains('*') {
            return Err(format!(
                "cannot protect {} ({}): a `*` in the path would be read as a wildcard",
                self.what, self.pattern
            ));
        }
        let pattern = PathPattern::parse(&self.pattern, Allowed::All)
            .map_err(|e| format!("cannot protect {} ({}): {e}", self.what, self.pattern))?;
        Ok(Rule {
            text_id: self.rule_id(),
            explicit_id: true,
            kind: RuleKind::FileDenyWrite,
            pattern: self.pattern.clone(),
            at: Located {
                loc: SourceLoc {
                    file: PathBuf::from(SOURCE),
                    line: 0,
                    col: 0,
                },
                span: 0..0,
            },
            target: RuleTarget::Path(pattern),
            // A deny applies always.
            when: None,
        })
    }
}

impl PolicySet {
    /// Give every agent a `file.deny_write` rule for each of `paths` (after its own rules and
    /// includes). Nothing is changed on error.
    pub fn protect(&mut self, paths: &[ProtectedPath]) -> Result<(), String> {
        let rules = paths
            .iter()
            .map(ProtectedPath::rule)
            .collect::<Result<Vec<_>, _>>()?;
        for agent in &mut self.agents {
            agent.rules.extend(rules.iter().cloned());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::{
        compile,
        eval::{evaluate, Request, Verdict},
        load_sources, ResolvedHosts,
    };

    fn protected() -> Vec<ProtectedPath> {
        vec![
            ProtectedPath::tree("policy-dir", Path::new("/etc/enforcer/policies")),
            ProtectedPath::file("audit-log", Path::new("/var/log/enforcer/audit.jsonl")),
        ]
    }

    #[test]
    fn every_agent_gets_deny_write_rules_that_beat_its_allows() {
        let mut set = load_sources(&[
            (
                "a.toml",
                "[agent]\nname = \"a\"\n[file]\nread = [\"/**\"]\nwrite = [\"/**\"]\n",
            ),
            ("b.toml", "[agent]\nname = \"b\"\n"),
        ])
        .unwrap();
        set.protect(&protected()).unwrap();
        let policy = compile(&set, &ResolvedHosts::default()).unwrap();
        for agent in ["a", "b"] {
            let id = policy.agent_by_name(agent).unwrap().id;
            let ids: Vec<&str> = policy
                .rules
                .iter()
                .filter(|r| r.agent == id && r.text_id.starts_with(ID_PREFIX))
                .map(|r| r.text_id.as_str())
                .collect();
            assert_eq!(
                ids,
                ["enforcer:policy-dir", "enforcer:audit-log"],
                "agent {agent}"
            );
        }
        let a = policy.agent_by_name("a").unwrap().id;
        let decide = |path: &str, write: bool| {
            let d = evaluate(
                &policy,
                a,
                &Request::Open {
                    path: path.into(),
                    write,
                    read: !write,
                },
            );
            (
                d.verdict == Verdict::Allow,
                policy.rule(d.rule).map(|r| r.text_id.clone()),
            )
        };
        assert_eq!(
            decide("/etc/enforcer/policies/a.toml", true),
            (false, Some("enforcer:policy-dir".into()))
        );
        assert_eq!(
            decide("/etc/enforcer/policies", true),
            (false, Some("enforcer:policy-dir".into())),
            "the directory itself"
        );
        assert_eq!(
            decide("/var/log/enforcer/audit.jsonl", true),
            (false, Some("enforcer:audit-log".into()))
        );
        assert!(
            decide("/etc/enforcer/policies/a.toml", false).0,
            "reading stays the policy's business"
        );
        assert!(
            decide("/var/log/enforcer/other.log", true).0,
            "only the protected paths"
        );
    }

    #[test]
    fn a_path_the_language_cannot_express_is_an_error_and_changes_nothing() {
        let mut set = load_sources(&[("a.toml", "[agent]\nname = \"a\"\n")]).unwrap();
        let before = set.agents[0].rules.len();
        let bad = [
            protected(),
            vec![ProtectedPath::tree("state-dir", Path::new("/var/lib/en*"))],
        ]
        .concat();
        let err = set.protect(&bad).unwrap_err();
        assert!(
            err.contains("cannot protect state-dir (/var/lib/en*/**)"),
            "{err}"
        );
        let err = set
            .protect(&[ProtectedPath::file("config", Path::new("/etc/[x]"))])
            .unwrap_err();
        assert!(err.contains("glob character"), "{err}");
        assert_eq!(set.agents[0].rules.len(), before);
    }

    #[test]
    fn policy_files_cannot_use_the_reserved_id_prefix() {
        let err = load_sources(&[(
            "a.toml",
            "[agent]\nname = \"a\"\n[file]\nwrite = [{ path = \"/tmp/**\", id = \"enforcer:policy-dir\" }]\n",
        )])
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("a.toml:4:") && err.contains("reserved"),
            "{err}"
        );
    }
}
