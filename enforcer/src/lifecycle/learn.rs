//! `learn`: a least-privilege policy from what one agent did, read from an audit log written
//! while the agent ran in audit mode with `log.file_allow = true` (the log then holds every
//! operation: `allow` and `audit-deny` alike happened).
//!
//! Steps: collect the distinct operations (`Observations`); set aside the sensitive ones
//! (`sensitive`: denied, never granted); replace runtime files by the permission sets that
//! cover them; collapse the rest into path rules (`collapse`); write TOML (`render`); then load,
//! compile and evaluate the result against every observation with the real engine (`verify`).

use std::{
    collections::{BTreeMap, BTreeSet},
    net::{IpAddr, SocketAddr},
};

use super::{
    collapse::{collapse, generalize, CollapseOptions, Grant},
    probe::{compile_with_sets, SetSource},
    render::{render, Commented, PolicyText},
    requests::{access_label, request_of, target_label, HostsSeen, Skip},
    sensitive::{self, Sensitive},
    sets::choose_sets,
};
use crate::{
    audit::{clock::parse_rfc3339, EventRecord},
    policy::{
        eval::{self, Request, Verdict},
        net::NetTarget,
        Diagnostics,
    },
};

/// Examples of observed paths in a rule's comment.
const EXAMPLES: usize = 3;

/// One distinct observed operation.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Seen {
    Open {
        path: String,
        read: bool,
        write: bool,
    },
    Exec(String),
    Connect {
        addr: IpAddr,
        port: u16,
        udp: bool,
    },
    Unix(String),
}

impl Seen {
    fn of(request: Request) -> Seen {
        match request {
            Request::Open { path, read, write } => Seen::Open { path, read, write },
            Request::Exec { path } => Seen::Exec(path),
            Request::Connect { addr, port, udp } => Seen::Connect { addr, port, udp },
            Request::ConnectUnix { path } => Seen::Unix(path),
        }
    }
    pub fn request(&self) -> Request {
        match self.clone() {
            Seen::Open { path, read, write } => Request::Open { path, read, write },
            Seen::Exec(path) => Request::Exec { path },
            Seen::Connect { addr, port, udp } => Request::Connect { addr, port, udp },
            Seen::Unix(path) => Request::ConnectUnix { path },
        }
    }
}

/// What one agent did, from the log. `add` every event record.
#[derive(Debug, Default)]
pub struct Observations {
    agent: String,
    since_ns: Option<i128>,
    /// Operations that happened (`allow`, `audit-deny`), with how often.
    pub seen: BTreeMap<Seen, u64>,
    /// Host names behind addresses, from every event of the log.
    pub hosts: HostsSeen,
    /// The agent's event records considered (after `since`).
    pub events: u64,
    /// Operations the kernel refused (`deny`, `kill`): they did not happen, and are not learned.
    pub refused: u64,
    pub skipped: BTreeMap<Skip, u64>,
    /// Allowed opens: none means the log was written without `log.file_allow`.
    pub allowed_opens: u64,
    pub first: Option<String>,
    pub last: Option<String>,
}

impl Observations {
    pub fn new(agent: &str, since_ns: Option<i128>) -> Self {
        Observations {
            agent: agent.to_owned(),
            since_ns,
            ..Default::default()
        }
    }

    pub fn add(&mut self, e: &EventRecord) {
        self.hosts.add(e);
        if e.agent.as_deref() != Some(self.agent.as_str()) {
            return;
        }
        if let Some(since) = self.since_ns {
            if parse_rfc3339(&e.time).is_some_and(|t| t < since) {
                return;
            }
        }
        self.events += 1;
        let request = match request_of(e) {
            Ok(r) => r,
            Err(skip) => return *self.skipped.entry(skip).or_default() += 1,
        };
        match e.verdict.as_str() {
            "allow" | "audit-deny" => {}
            "deny" | "kill" => return self.refused += 1,
            _ => return *self.skipped.entry(Skip::UnknownOp).or_default() += 1,
        }
        if e.verdict == "allow" && e.op == "open" {
            self.allowed_opens += 1;
        }
        self.first.get_or_insert_with(|| e.time.clone());
        self.last = Some(e.time.clone());
        *self.seen.entry(Seen::of(request)).or_default() += 1;
    }
}

#[derive(Clone, Debug)]
pub struct LearnOptions {
    pub collapse: CollapseOptions,
    /// Permission sets that may be included (by name).
    pub sets: Vec<SetSource>,
    /// Where the events came from, for the header comment.
    pub source: String,
}

/// The policy and what checking it found.
#[derive(Debug)]
pub struct Learned {
    pub text: String,
    /// Included permission sets, by name.
    pub includes: Vec<String>,
    /// Distinct sensitive operations observed (denied in the policy).
    pub sensitive: usize,
    /// Observations no rule can express (not granted).
    pub inexpressible: Vec<String>,
    /// Observations the policy decides other than intended (always empty unless `learn` has a
    /// bug; `enforcer learn` refuses to write such a policy).
    pub mismatches: Vec<String>,
    /// Observations checked with the reference evaluator.
    pub verified: usize,
}

#[derive(Debug, thiserror::Error)]
pub enum LearnError {
    #[error(
        "no operations of agent `{0}` in the log (is the name right? did it run in audit mode?)"
    )]
    NothingObserved(String),
    #[error("the learned policy does not compile (a bug in `learn`):\n{0}")]
    DoesNotCompile(Diagnostics),
}

pub fn learn(obs: &Observations, opts: &LearnOptions) -> Result<Learned, LearnError> {
    if obs.seen.is_empty() {
        return Err(LearnError::NothingObserved(obs.agent.clone()));
    }
    let sensitive = Sensitive::new();
    let mut denied: BTreeMap<&str, Vec<(&Seen, u64)>> = BTreeMap::new();
    let mut normal: Vec<(&Seen, u64)> = Vec::new();
    for (seen, &n) in &obs.seen {
        match sensitive.denied_by(&seen.request()) {
            Some(pattern) => denied.entry(pattern).or_default().push((seen, n)),
            None => normal.push((seen, n)),
        }
    }
    let (includes, covered) = choose_sets(&obs.agent, &normal, opts, &obs.hosts);
    let remaining: Vec<(&Seen, u64)> = normal
        .iter()
        .enumerate()
        .filter(|(i, _)| !covered.contains(i))
        .map(|(_, s)| *s)
        .collect();

    let mut paths: [BTreeMap<String, u64>; 3] = Default::default();
    let (mut connect, mut inexpressible) = (Vec::new(), Vec::new());
    let mut net: BTreeMap<String, (u64, BTreeSet<IpAddr>)> = BTreeMap::new();
    for (seen, n) in &remaining {
        match seen {
            Seen::Open { path, read, write } => {
                let p = generalize(path);
                if *read || !*write {
                    *paths[0].entry(p.clone()).or_default() += n;
                }
                if *write {
                    *paths[1].entry(p).or_default() += n;
                }
            }
            Seen::Exec(path) => *paths[2].entry(generalize(path)).or_default() += n,
            Seen::Unix(path) => {
                let rule = format!("unix:{path}");
                if NetTarget::parse(&rule).is_ok() {
                    connect.push(Commented {
                        value: rule,
                        comment: times(*n, "connect"),
                    });
                } else {
                    inexpressible.push(format!("connect unix:{path}"));
                }
            }
            Seen::Connect { addr, port, udp } => {
                let rule = net_rule(*addr, *port, *udp, &obs.hosts);
                let entry = net.entry(rule).or_default();
                entry.0 += n;
                entry.1.insert(*addr);
            }
        }
    }
    for (rule, (n, addrs)) in net {
        let comment = if rule.starts_with(|c: char| c.is_ascii_digit() || c == '[') {
            times(n, "connect")
        } else {
            let shown: Vec<String> = addrs.iter().map(ToString::to_string).collect();
            format!(
                "{}; addresses seen: {}",
                times(n, "connect"),
                shown.join(", ")
            )
        };
        connect.push(Commented {
            value: rule,
            comment,
        });
    }
    let [read, write, exec] = paths.map(|p| collapse(&p, opts.collapse));
    for (what, (_, unplaced)) in [("read", &read), ("write", &write), ("exec", &exec)] {
        inexpressible.extend(unplaced.iter().map(|p| format!("{what} {p}")));
    }

    let text = render(&PolicyText {
        header: header(obs, opts, !includes.is_empty(), &inexpressible),
        includes: includes
            .iter()
            .map(|(s, items)| Commented {
                value: s.name.clone(),
                comment: covered_comment(items),
            })
            .collect(),
        agent: obs.agent.clone(),
        description: format!(
            "learned from {} of the audit log",
            times(obs.events, "event")
        ),
        agent_notes: vec![format!(
            "Processes become this agent with `enforcer run --agent {}`; add match.exe or \
             match.cgroup to select them automatically.",
            obs.agent
        )],
        read: grants(&read.0, "read"),
        write: grants(&write.0, "write"),
        deny_note: "Never granted (learn's built-in list of credentials and keys); observed \
                    accesses are noted and were NOT granted."
            .into(),
        deny: deny_rules(sensitive::FILE_DENY, &denied),
        exec: grants(&exec.0, "exec"),
        connect,
        net_deny: deny_rules(sensitive::NET_DENY, &denied),
    });
    let mut learned = Learned {
        text,
        includes: includes.iter().map(|(s, _)| s.name.clone()).collect(),
        sensitive: denied.values().map(Vec::len).sum(),
        inexpressible,
        mismatches: Vec::new(),
        verified: 0,
    };
    verify(&mut learned, obs, opts, &sensitive)?;
    Ok(learned)
}

/// Load and compile the text like `enforcer check`, then decide every observation: sensitive
/// ones must be denied, every other one allowed (except the inexpressible, reported apart).
fn verify(
    learned: &mut Learned,
    obs: &Observations,
    opts: &LearnOptions,
    sensitive: &Sensitive,
) -> Result<(), LearnError> {
    let file = format!("{}.toml", obs.agent);
    let (_, compiled) = compile_with_sets(&file, &learned.text, &opts.sets, &obs.hosts.resolved())
        .map_err(LearnError::DoesNotCompile)?;
    let agent = compiled
        .agent_by_name(&obs.agent)
        .expect("the learned agent")
        .id;
    for seen in obs.seen.keys() {
        let request = seen.request();
        if inexpressible_names(seen)
            .iter()
            .any(|n| learned.inexpressible.contains(n))
        {
            continue;
        }
        let want_allow = sensitive.denied_by(&request).is_none();
        let allowed = eval::evaluate(&compiled, agent, &request).verdict == Verdict::Allow;
        learned.verified += 1;
        if allowed != want_allow {
            let want = if want_allow { "allow" } else { "deny" };
            learned.mismatches.push(format!(
                "{} {}: expected {want}",
                access_label(&request),
                target_label(&request)
            ));
        }
    }
    Ok(())
}

/// How `learn` names an observation it cannot express (`inexpressible` entries).
fn inexpressible_names(seen: &Seen) -> Vec<String> {
    match seen {
        Seen::Open { path, read, write } => {
            let mut names = Vec::new();
            if *read || !*write {
                names.push(format!("read {}", generalize(path)));
            }
            if *write {
                names.push(format!("write {}", generalize(path)));
            }
            names
        }
        Seen::Exec(path) => vec![format!("exec {}", generalize(path))],
        Seen::Unix(path) => vec![format!("connect unix:{path}")],
        Seen::Connect { .. } => Vec::new(),
    }
}

/// `ADDR:PORT/PROTO`, or `HOST:PORT/PROTO` when the log shows the host that allowed the address.
fn net_rule(addr: IpAddr, port: u16, udp: bool, hosts: &HostsSeen) -> String {
    let proto = if udp { "udp" } else { "tcp" };
    if let Some(host) = hosts.host_for(addr) {
        return format!("{host}:{port}/{proto}");
    }
    // IPv4 rules also match IPv4-mapped IPv6 destinations; the plain form reads better.
    let addr = match addr {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(addr, IpAddr::V4),
        v4 => v4,
    };
    format!("{}/{proto}", SocketAddr::new(addr, port))
}

fn grants(grants: &[Grant], verb: &str) -> Vec<Commented> {
    grants
        .iter()
        .map(|g| {
            let comment = if g.paths.len() == 1 && g.paths[0].0 == g.pattern {
                times(g.count(), verb)
            } else {
                let examples: Vec<&str> = g
                    .paths
                    .iter()
                    .take(EXAMPLES)
                    .map(|(p, _)| p.as_str())
                    .collect();
                format!(
                    "{} of {} paths, e.g. {}",
                    times(g.count(), verb),
                    g.paths.len(),
                    examples.join(", ")
                )
            };
            Commented {
                value: g.pattern.clone(),
                comment,
            }
        })
        .collect()
}

fn covered_comment(items: &[(&Seen, u64)]) -> String {
    let n: u64 = items.iter().map(|(_, n)| n).sum();
    let examples: Vec<String> = items
        .iter()
        .take(EXAMPLES)
        .map(|(s, _)| target_label(&s.request()))
        .collect();
    format!(
        "covers {} of {} observed targets, e.g. {}",
        times(n, "operation"),
        items.len(),
        examples.join(", ")
    )
}

/// Every built-in deny rule, with what was observed for it.
fn deny_rules(patterns: &[&str], denied: &BTreeMap<&str, Vec<(&Seen, u64)>>) -> Vec<Commented> {
    patterns
        .iter()
        .map(|&p| {
            let comment = denied.get(p).map_or_else(String::new, |hits| {
                let n: u64 = hits.iter().map(|(_, n)| n).sum();
                let examples: Vec<String> = hits
                    .iter()
                    .take(EXAMPLES)
                    .map(|(s, _)| {
                        let r = s.request();
                        format!("{} {}", access_label(&r), target_label(&r))
                    })
                    .collect();
                format!(
                    "OBSERVED {}, NOT granted: {}",
                    times(n, "time"),
                    examples.join(", ")
                )
            });
            Commented {
                value: p.to_owned(),
                comment,
            }
        })
        .collect()
}

fn header(
    obs: &Observations,
    opts: &LearnOptions,
    includes: bool,
    inexpressible: &[String],
) -> Vec<String> {
    let mut h = vec![
        format!("Learned by `enforcer learn` for agent `{}` from {}.", obs.agent, opts.source),
        format!(
            "{} events from {} to {}: {} distinct operations.",
            obs.events,
            obs.first.as_deref().unwrap_or("?"),
            obs.last.as_deref().unwrap_or("?"),
            obs.seen.len()
        ),
        "Review every rule, then compare it with the log: enforcer replay --policy THIS_FILE --log LOG".into(),
    ];
    if includes {
        h.push(
            "Sets are included by name: keep this file next to a sets/ directory holding them."
                .into(),
        );
    }
    if obs.allowed_opens == 0 {
        h.push(
            "NOTE: the log has no allowed opens: files the recording policy allowed are missing unless it \
             had log.file_allow = true."
                .into(),
        );
    }
    if obs.refused > 0 {
        h.push(format!(
            "{} the kernel refused (deny, kill) not learned.",
            times(obs.refused, "operation")
        ));
    }
    for item in inexpressible {
        h.push(format!("NOT granted (no rule can express it): {item}"));
    }
    h
}

fn times(n: u64, what: &str) -> String {
    format!("{n} {what}{}", if n == 1 { "" } else { "s" })
}
