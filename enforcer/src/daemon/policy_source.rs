//! Where the daemon's policy comes from. The core only sees [`PolicySource`], so tests can
//! feed it policies (and invalid edits) without the TOML layer.

use std::collections::BTreeSet;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use crate::policy::grant::{self, Grant};
use crate::policy::{self, hosts, CompiledPolicy, ResolvedHosts};

pub trait PolicySource: Send {
    /// Load, validate, resolve host names and compile everything. Errors are the complete,
    /// rendered diagnostics (`file:line:col: ...`); nothing is changed on error.
    /// `grants` (the daemon's live grants) are compiled in as rules of their agents.
    fn load(&mut self, grants: &[Grant]) -> Result<CompiledPolicy, String>;
    /// Host names used by net rules of the last loaded policy. The caller resolves them again
    /// off the event loop (a slow resolver must not stall the audit pipeline) with
    /// [`resolve_hosts`] and hands the answers to [`PolicySource::hosts_resolved`].
    fn host_names(&self) -> Vec<String>;
    /// Fresh answers for [`PolicySource::host_names`]; true when an address set changed (the
    /// caller then loads and applies again).
    fn hosts_resolved(&mut self, fresh: ResolvedHosts) -> bool;
    /// What is loaded, for logs (`/etc/enforcer/policies`).
    fn describe(&self) -> String;
}

/// The policy directory: every `*.toml` below it. Host names in net rules are resolved with the
/// system resolver (getaddrinfo, so /etc/hosts and nsswitch apply) at every load and every
/// refresh; a name that fails to resolve keeps its previous answers (a DNS outage must not turn
/// into "deny everything"), and is logged.
pub struct PolicyDir {
    dir: PathBuf,
    host_names: BTreeSet<String>,
    resolved: ResolvedHosts,
}

impl PolicyDir {
    pub fn new(dir: &Path) -> Self {
        PolicyDir {
            dir: dir.to_path_buf(),
            host_names: BTreeSet::new(),
            resolved: ResolvedHosts::new(),
        }
    }

    /// `fresh` answers for `names`, where a name without an answer keeps those in `previous`.
    fn merge(
        names: &BTreeSet<String>,
        mut fresh: ResolvedHosts,
        previous: &ResolvedHosts,
    ) -> ResolvedHosts {
        for host in names {
            if !fresh.get(host).is_empty() {
                continue;
            }
            let kept = previous.get(host);
            if kept.is_empty() {
                tracing::warn!("host {host} (net rule) does not resolve; its rules match no address until it does");
            } else {
                tracing::warn!(
                    "host {host} (net rule) does not resolve now; keeping its previous addresses"
                );
                for addr in kept {
                    fresh.insert(host, *addr);
                }
            }
        }
        fresh
    }
}

/// Resolve `names` with the system resolver (blocking: call it off the event loop).
pub fn resolve_hosts(names: &[String]) -> ResolvedHosts {
    let mut fresh = ResolvedHosts::new();
    for (host, why) in fresh.resolve_missing(names.iter().map(String::as_str)) {
        tracing::debug!("resolving {host}: {why}");
    }
    fresh
}

fn sorted(addrs: &[IpAddr]) -> Vec<IpAddr> {
    let mut v = addrs.to_vec();
    v.sort();
    v
}

impl PolicySource for PolicyDir {
    fn load(&mut self, grants: &[Grant]) -> Result<CompiledPolicy, String> {
        let mut set = policy::load_paths(std::slice::from_ref(&self.dir)).map_err(|d| d.to_string())?;
        grant::add_to_set(&mut set, grants, jiff::Timestamp::now())?;
        let names = hosts::host_names(&set.agents);
        let fresh = resolve_hosts(&names.iter().cloned().collect::<Vec<_>>());
        let resolved = Self::merge(&names, fresh, &self.resolved);
        let compiled = policy::compile(&set, &resolved).map_err(|d| d.to_string())?;
        self.host_names = names;
        self.resolved = resolved;
        Ok(compiled)
    }

    fn host_names(&self) -> Vec<String> {
        self.host_names.iter().cloned().collect()
    }

    fn hosts_resolved(&mut self, fresh: ResolvedHosts) -> bool {
        let fresh = Self::merge(&self.host_names, fresh, &self.resolved);
        // Round-robin DNS reorders answers: compare address sets.
        let changed = self
            .host_names
            .iter()
            .any(|h| sorted(fresh.get(h)) != sorted(self.resolved.get(h)));
        self.resolved = fresh;
        changed
    }

    fn describe(&self) -> String {
        self.dir.display().to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, name: &str, text: &str) {
        std::fs::write(dir.join(name), text).unwrap();
    }

    const AGENT: &str = "[agent]\nname = \"a\"\n\n[file]\nread = [\"/work/**\"]\n";

    #[test]
    fn loads_a_directory_and_rejects_an_invalid_edit_with_positions() {
        let dir = crate::audit::writer::tests::tempdir();
        write(&dir, "a.toml", AGENT);
        let mut source = PolicyDir::new(&dir);
        let policy = source.load(&[]).expect("a valid policy directory");
        assert_eq!(policy.agents.len(), 1);
        assert_eq!(policy.agents[0].name, "a");

        write(
            &dir,
            "a.toml",
            "[agent]\nname = \"a\"\n\n[file]\nraed = [\"/x\"]\n",
        );
        let err = source
            .load(&[])
            .expect_err("an unknown field must be rejected");
        assert!(
            err.contains("a.toml:5:"),
            "diagnostics must carry file:line:col: {err}"
        );
    }

    #[test]
    fn host_names_resolve_through_the_system_resolver() {
        let dir = crate::audit::writer::tests::tempdir();
        write(
            &dir,
            "a.toml",
            "[agent]\nname = \"a\"\n\n[net]\nconnect = [\"localhost:443/tcp\"]\n",
        );
        let mut source = PolicyDir::new(&dir);
        source.load(&[]).expect("a policy with a host name");
        assert!(
            !source.resolved.get("localhost").is_empty(),
            "localhost resolves from /etc/hosts"
        );
        assert_eq!(source.host_names(), vec!["localhost".to_string()]);
        assert!(
            !source.hosts_resolved(resolve_hosts(&source.host_names())),
            "the same answers are not a change"
        );
        // A failed lookup keeps the previous answers instead of emptying the rule.
        assert!(
            !source.hosts_resolved(ResolvedHosts::new()),
            "a failed lookup is not a change"
        );
        assert!(!source.resolved.get("localhost").is_empty());
        let mut moved = ResolvedHosts::new();
        moved.insert("localhost", "127.0.0.9".parse().unwrap());
        assert!(
            source.hosts_resolved(moved),
            "a new address set is a change"
        );
    }
}
