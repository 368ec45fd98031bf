//! Where the daemon's policy comes from. The core only sees [`PolicySource`], so tests can
//! feed it policies (and invalid edits) without the TOML layer.

use std::{
    path::{Path, PathBuf},
    sync::Arc,
    time::{Duration, Instant},
};

use super::dns::{answers_for, HostLookup, HostTable, LookupResult};
use crate::policy::{
    self,
    grant::{self, Grant},
    hosts, CompiledPolicy, ProtectedPath,
};

pub trait PolicySource: Send {
    /// Load, validate, resolve host names and compile everything. Errors are the complete,
    /// rendered diagnostics (`file:line:col: ...`); nothing is changed on error.
    /// `grants` (the daemon's live grants) are compiled in as rules of their agents.
    fn load(&mut self, grants: &[Grant]) -> Result<CompiledPolicy, String>;
    /// When the answer for some host name of the last loaded policy expires (`None`: no host
    /// names).
    fn next_host_refresh(&self) -> Option<Instant> {
        None
    }
    /// The host names due at `now` and what to ask. The caller looks them up off the event loop
    /// (a slow resolver must not stall the audit pipeline) and hands the answers to
    /// [`PolicySource::hosts_resolved`].
    fn host_refresh(&self, _now: Instant) -> Option<HostRefresh> {
        None
    }
    /// Answers received at `now`; true when an address set changed (the caller then loads and
    /// applies again).
    fn hosts_resolved(&mut self, _answers: Vec<(String, LookupResult)>, _now: Instant) -> bool {
        false
    }
    /// What is loaded, for logs (`/etc/enforcer/policies`).
    fn describe(&self) -> String;
}

/// Host names to look up again, and the lookup to do it with.
pub struct HostRefresh {
    pub names: Vec<String>,
    pub lookup: Arc<dyn HostLookup>,
}

/// The policy directory: every `*.toml` below it. Host names in net rules are resolved by
/// `lookup` when a load meets them without a valid answer, and again when their answers expire
/// (see [`HostTable`]); a name that fails to resolve keeps its previous answers (a DNS outage
/// must not turn into "deny everything"), and is logged.
pub struct PolicyDir {
    dir: PathBuf,
    hosts: HostTable,
    lookup: Arc<dyn HostLookup>,
    /// The daemon's own state: every agent gets a deny_write rule for each (policy::protect).
    protected: Vec<ProtectedPath>,
}

impl PolicyDir {
    /// `dns_ceiling`: the longest a host name's answer is used without asking again.
    pub fn new(dir: &Path, dns_ceiling: Duration, lookup: Arc<dyn HostLookup>) -> Self {
        PolicyDir {
            dir: dir.to_path_buf(),
            hosts: HostTable::new(dns_ceiling),
            lookup,
            protected: Vec::new(),
        }
    }

    /// Add the implicit rules protecting `paths` to every agent at every load.
    pub fn protecting(mut self, paths: Vec<ProtectedPath>) -> Self {
        self.protected = paths;
        self
    }
}

impl PolicySource for PolicyDir {
    fn load(&mut self, grants: &[Grant]) -> Result<CompiledPolicy, String> {
        let mut set =
            policy::load_paths(std::slice::from_ref(&self.dir)).map_err(|d| d.to_string())?;
        grant::add_to_set(&mut set, grants, jiff::Timestamp::now())?;
        set.protect(&self.protected)?;
        let names = hosts::host_names(&set.agents);
        // Answers still valid are used as they are: a reload does not ask DNS again.
        let mut table = self.hosts.clone();
        table.retain(&names);
        let now = Instant::now();
        let due = table.due(&names, now);
        table.record(answers_for(&due, self.lookup.lookup(&due)), now);
        let compiled = policy::compile(&set, &table.resolved()).map_err(|d| d.to_string())?;
        self.hosts = table;
        Ok(compiled)
    }

    fn next_host_refresh(&self) -> Option<Instant> {
        self.hosts.next_refresh()
    }

    fn host_refresh(&self, now: Instant) -> Option<HostRefresh> {
        let names = self.hosts.due_now(now);
        (!names.is_empty()).then(|| HostRefresh {
            names,
            lookup: self.lookup.clone(),
        })
    }

    fn hosts_resolved(&mut self, mut answers: Vec<(String, LookupResult)>, now: Instant) -> bool {
        // A reload may have dropped a name while it was being looked up.
        answers.retain(|(name, _)| self.hosts.contains(name));
        self.hosts.record(answers, now)
    }

    fn describe(&self) -> String {
        self.dir.display().to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::daemon::dns::{tests::FakeLookup, HostAnswer, SystemResolver};

    fn write(dir: &Path, name: &str, text: &str) {
        std::fs::write(dir.join(name), text).unwrap();
    }

    const AGENT: &str = "[agent]\nname = \"a\"\n\n[file]\nread = [\"/work/**\"]\n";
    const CEILING: Duration = Duration::from_secs(60);

    fn net_agent(hosts: &[&str]) -> String {
        let rules: Vec<String> = hosts.iter().map(|h| format!("\"{h}:443/tcp\"")).collect();
        format!(
            "[agent]\nname = \"a\"\n\n[net]\nconnect = [{}]\n",
            rules.join(", ")
        )
    }

    #[test]
    fn loads_a_directory_and_rejects_an_invalid_edit_with_positions() {
        let dir = crate::audit::writer::tests::tempdir();
        write(&dir, "a.toml", AGENT);
        let mut source = PolicyDir::new(&dir, CEILING, Arc::new(FakeLookup::default()));
        let policy = source.load(&[]).expect("a valid policy directory");
        assert_eq!(policy.agents.len(), 1);
        assert_eq!(policy.agents[0].name, "a");
        assert_eq!(
            source.next_host_refresh(),
            None,
            "no host names, nothing to refresh"
        );

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
        write(&dir, "a.toml", &net_agent(&["localhost"]));
        let mut source = PolicyDir::new(&dir, CEILING, Arc::new(SystemResolver));
        let loaded = Instant::now();
        let policy = source.load(&[]).expect("a policy with a host name");
        assert!(
            source
                .hosts
                .resolved()
                .get("localhost")
                .contains(&"127.0.0.1".parse().unwrap()),
            "localhost resolves from /etc/hosts"
        );
        assert!(!policy.net_entries.is_empty(), "its addresses are compiled");
        // /etc/hosts answers carry no TTL: refreshed at the ceiling.
        let next = source.next_host_refresh().expect("a refresh is scheduled");
        assert!(
            next >= loaded + CEILING && next <= Instant::now() + CEILING,
            "{:?}",
            next - loaded
        );
        let refresh = source.host_refresh(next).expect("due at its time");
        assert_eq!(refresh.names, vec!["localhost".to_string()]);
        let answers = refresh.lookup.lookup(&refresh.names);
        assert!(
            !source.hosts_resolved(answers, next),
            "the same answers are not a change"
        );
    }

    #[test]
    fn answers_are_reused_until_due_and_changes_are_reported() {
        let dir = crate::audit::writer::tests::tempdir();
        write(&dir, "a.toml", &net_agent(&["api.example", "down.example"]));
        let fake = Arc::new(FakeLookup::default());
        let ttl = Duration::from_secs(30);
        let t0 = Instant::now();
        fake.set(
            "api.example",
            Ok(HostAnswer {
                addrs: vec!["192.0.2.1".parse().unwrap()],
                valid_until: t0 + ttl,
            }),
        );
        fake.set("down.example", Err("SERVFAIL".into()));
        let mut source = PolicyDir::new(&dir, CEILING, fake.clone());
        let first = source
            .load(&[])
            .expect("loads although a host does not resolve");
        assert_eq!(*fake.asked.lock().unwrap(), ["api.example", "down.example"]);
        // A reload within the TTL asks only for the name whose lookup failed, once it is due.
        fake.asked.lock().unwrap().clear();
        assert_eq!(source.load(&[]).expect("reload"), first);
        assert!(
            fake.asked.lock().unwrap().is_empty(),
            "valid answers are not asked again"
        );
        assert!(source.host_refresh(t0).is_none(), "nothing due yet");
        let due = source.host_refresh(t0 + ttl).expect("both due after 30 s");
        assert_eq!(due.names, ["api.example", "down.example"]);

        let at = t0 + ttl;
        let moved = |addr: &str| {
            Ok(HostAnswer {
                addrs: vec![addr.parse().unwrap()],
                valid_until: at + ttl,
            })
        };
        assert!(
            !source.hosts_resolved(vec![("api.example".into(), Err("timed out".into()))], at),
            "a failed lookup is not a change"
        );
        assert_eq!(
            source.hosts.resolved().get("api.example"),
            &["192.0.2.1".parse::<std::net::IpAddr>().unwrap()]
        );
        assert!(
            source.hosts_resolved(vec![("api.example".into(), moved("192.0.2.7"))], at),
            "a new address set is a change"
        );
        fake.set("api.example", moved("192.0.2.7"));
        let reloaded = source.load(&[]).expect("the reload that applies it");
        assert_ne!(reloaded, first, "the new address is compiled in");

        // A name removed by an edit is forgotten; a late answer for it changes nothing.
        write(&dir, "a.toml", &net_agent(&["api.example"]));
        source.load(&[]).expect("edited policy");
        assert!(!source.hosts_resolved(vec![("down.example".into(), moved("192.0.2.8"))], at));
        assert!(!source.hosts.contains("down.example"));
    }
}
