//! Host names of net rules: looked up with their DNS TTLs and refreshed when their answers
//! expire. [`HostTable`] holds the answers and decides when each name is asked again (pure, so
//! tests drive it with made-up times and answers); [`HostLookup`] asks (the daemon's
//! [`SystemResolver`], or a fake in tests).

use std::{
    collections::{BTreeMap, BTreeSet},
    net::{IpAddr, Ipv4Addr},
    time::{Duration, Instant},
};

use crate::policy::ResolvedHosts;

/// No name is asked again sooner than this after an answer (unless the ceiling is lower): a
/// TTL of 0 or 1 s (some load balancers) would otherwise mean a lookup, and on a change a policy
/// re-apply, every second.
pub const REFRESH_FLOOR: Duration = Duration::from_secs(5);

/// One name's answer: its addresses and when the answer expires (the smallest TTL of its
/// records; answers from /etc/hosts carry none and expire in a day, so the ceiling applies).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HostAnswer {
    pub addrs: Vec<IpAddr>,
    pub valid_until: Instant,
}

/// A lookup's outcome for one name; the error says why it failed.
pub type LookupResult = Result<HostAnswer, String>;

/// Looks host names up. Blocking: the daemon runs it off its event loop (a slow or unreachable
/// name server must not stall the audit pipeline), except in a load, which waits for its
/// answers anyway.
pub trait HostLookup: Send + Sync {
    /// One result per name, in any order.
    fn lookup(&self, names: &[String]) -> Vec<(String, LookupResult)>;
}

/// A name's current addresses and when to ask again.
#[derive(Clone, Debug)]
struct HostState {
    /// Sorted: round-robin DNS reorders answers, so sets are compared.
    addrs: Vec<IpAddr>,
    next_refresh: Instant,
    /// Lookups failed in a row (they back off from the floor to the ceiling).
    failures: u32,
}

/// The answers of every host name in the running policy and when each is due.
#[derive(Clone, Debug)]
pub struct HostTable {
    ceiling: Duration,
    hosts: BTreeMap<String, HostState>,
}

impl HostTable {
    /// `ceiling`: the longest an answer is used without asking again, whatever its TTL (and
    /// the interval for answers without a TTL: /etc/hosts).
    pub fn new(ceiling: Duration) -> Self {
        HostTable {
            ceiling,
            hosts: BTreeMap::new(),
        }
    }

    /// The shortest interval between two lookups of one name: [`REFRESH_FLOOR`], or the
    /// ceiling if that is lower.
    pub fn floor(&self) -> Duration {
        REFRESH_FLOOR.min(self.ceiling)
    }

    /// The names of `wanted` that need a lookup at `now`: never looked up, or due.
    pub fn due<'a>(
        &self,
        wanted: impl IntoIterator<Item = &'a String>,
        now: Instant,
    ) -> Vec<String> {
        wanted
            .into_iter()
            .filter(|name| self.hosts.get(*name).is_none_or(|h| h.next_refresh <= now))
            .cloned()
            .collect()
    }

    /// The names in the table that are due at `now`.
    pub fn due_now(&self, now: Instant) -> Vec<String> {
        self.due(self.hosts.keys(), now)
    }

    /// When the next name is due (`None`: no host names).
    pub fn next_refresh(&self) -> Option<Instant> {
        self.hosts.values().map(|h| h.next_refresh).min()
    }

    pub fn contains(&self, name: &str) -> bool {
        self.hosts.contains_key(name)
    }

    /// Forget names no longer used by the policy.
    pub fn retain(&mut self, names: &BTreeSet<String>) {
        self.hosts.retain(|name, _| names.contains(name));
    }

    /// Take the answers received at `now` (names not in the table are added). A failed lookup
    /// keeps the name's previous addresses: a DNS outage must not turn into "deny everything".
    /// True when the address set of a name that was already in the table changed.
    pub fn record(&mut self, answers: Vec<(String, LookupResult)>, now: Instant) -> bool {
        let (floor, ceiling) = (self.floor(), self.ceiling);
        let mut changed = false;
        for (name, result) in answers {
            let known = self.hosts.contains_key(&name);
            let state = self.hosts.entry(name.clone()).or_insert_with(|| HostState {
                addrs: Vec::new(),
                next_refresh: now,
                failures: 0,
            });
            match result.and_then(|a| {
                if a.addrs.is_empty() {
                    Err("no addresses".into())
                } else {
                    Ok(a)
                }
            }) {
                Ok(answer) => {
                    let mut addrs = answer.addrs;
                    addrs.sort();
                    addrs.dedup();
                    let after = answer
                        .valid_until
                        .saturating_duration_since(now)
                        .clamp(floor, ceiling);
                    tracing::debug!(
                        host = name,
                        ?addrs,
                        refresh_in_secs = after.as_secs(),
                        "host name resolved"
                    );
                    if known && addrs != state.addrs {
                        tracing::info!(host = name, old = ?state.addrs, new = ?addrs, "host name addresses changed");
                        changed = true;
                    }
                    state.addrs = addrs;
                    state.failures = 0;
                    state.next_refresh = now + after;
                }
                Err(why) => {
                    state.failures = state.failures.saturating_add(1);
                    if state.addrs.is_empty() {
                        tracing::warn!("host {name} (net rule) does not resolve ({why}); its rules match no address until it does");
                    } else {
                        tracing::warn!("host {name} (net rule) does not resolve now ({why}); keeping its previous addresses");
                    }
                    state.next_refresh = now + retry_after(state.failures, floor, ceiling);
                }
            }
        }
        changed
    }

    /// The addresses to compile the policy with.
    pub fn resolved(&self) -> ResolvedHosts {
        let mut out = ResolvedHosts::new();
        for (name, state) in &self.hosts {
            for addr in &state.addrs {
                out.insert(name, *addr);
            }
        }
        out
    }
}

/// When to ask again after `failures` failed lookups in a row: floor, 2 x floor, 4 x ..., at
/// most the ceiling (a DNS outage is neither hammered nor logged every few seconds).
fn retry_after(failures: u32, floor: Duration, ceiling: Duration) -> Duration {
    let doublings = failures.saturating_sub(1).min(16);
    (floor * (1u32 << doublings)).min(ceiling)
}

/// The system's resolver configuration, read again at every round (so edits of
/// /etc/resolv.conf and /etc/hosts apply without a restart): name servers, search domains,
/// `ndots`, timeouts and attempts from /etc/resolv.conf, names in /etc/hosts first (as the C
/// library does with the usual nsswitch `hosts: files dns`). Asks A and AAAA at once. The
/// answers' TTLs are what the C library's getaddrinfo cannot tell.
pub struct SystemResolver;

impl HostLookup for SystemResolver {
    fn lookup(&self, names: &[String]) -> Vec<(String, LookupResult)> {
        if names.is_empty() {
            return Vec::new();
        }
        // `@resolvers` is read from /etc/resolv.conf, not asked of a name server.
        let (resolvers, names): (Vec<String>, Vec<String>) = names
            .iter()
            .cloned()
            .partition(|n| n == crate::policy::net::RESOLVERS);
        let mut out: Vec<(String, LookupResult)> = resolvers
            .into_iter()
            .map(|n| {
                let answer = crate::policy::hosts::system_resolvers().map(|addrs| HostAnswer {
                    addrs,
                    // No TTL: the table's ceiling decides when resolv.conf is read again.
                    valid_until: Instant::now() + Duration::from_secs(86_400),
                });
                (n, answer)
            })
            .collect();
        if names.is_empty() {
            return out;
        }
        // hickory is async. A runtime of its own, on a thread of its own: the caller may be the
        // daemon's event loop (a load), whose thread cannot block on a second runtime.
        out.extend(
            std::thread::scope(|s| s.spawn(|| resolve_all(&names)).join())
                .unwrap_or_else(|_| all_failed(&names, "the resolver thread panicked")),
        );
        out
    }
}

/// `answers` with a failure for every name of `names` it does not answer (so that name is
/// asked again later instead of never).
pub fn answers_for(
    names: &[String],
    mut answers: Vec<(String, LookupResult)>,
) -> Vec<(String, LookupResult)> {
    for name in names {
        if !answers.iter().any(|(n, _)| n == name) {
            answers.push((name.clone(), Err("the lookup gave no answer".into())));
        }
    }
    answers
}

fn all_failed(names: &[String], why: &str) -> Vec<(String, LookupResult)> {
    names
        .iter()
        .map(|n| (n.clone(), Err(why.to_owned())))
        .collect()
}

fn resolve_all(names: &[String]) -> Vec<(String, LookupResult)> {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => return all_failed(names, &format!("starting the resolver's runtime: {e}")),
    };
    runtime.block_on(async {
        let resolver = match system_resolver() {
            Ok(resolver) => resolver,
            Err(why) => return all_failed(names, &why),
        };
        let mut lookups = tokio::task::JoinSet::new();
        for name in names {
            let (resolver, name) = (resolver.clone(), name.clone());
            lookups.spawn(async move {
                let result = match resolver.lookup_ip(name.as_str()).await {
                    Ok(lookup) => Ok(HostAnswer {
                        addrs: lookup.iter().collect(),
                        valid_until: lookup.valid_until(),
                    }),
                    Err(e) => Err(describe(&e)),
                };
                (name, result)
            });
        }
        let mut out = Vec::with_capacity(names.len());
        while let Some(joined) = lookups.join_next().await {
            match joined {
                Ok(answer) => out.push(answer),
                Err(e) => tracing::error!("a host name lookup task failed: {e}"),
            }
        }
        out
    })
}

/// hickory's message for "no such name" prints the whole query struct.
fn describe(e: &hickory_resolver::net::NetError) -> String {
    use hickory_resolver::net::{DnsError, NetError};
    match e {
        NetError::Dns(DnsError::NoRecordsFound(none)) => {
            format!("no addresses: {}", none.response_code)
        }
        other => other.to_string(),
    }
}

fn system_resolver() -> Result<hickory_resolver::TokioResolver, String> {
    use hickory_resolver::{
        config::{LookupIpStrategy, NameServerConfig, ResolverConfig},
        net::runtime::TokioRuntimeProvider,
    };
    let mut builder = match hickory_resolver::TokioResolver::builder_tokio() {
        Ok(builder) => builder,
        Err(e) => {
            // What the C library does without a usable resolv.conf: ask a server on this host.
            tracing::warn!("reading /etc/resolv.conf: {e}; asking the name server at 127.0.0.1");
            hickory_resolver::Resolver::builder_with_config(
                ResolverConfig::from_name_servers(vec![NameServerConfig::udp_and_tcp(IpAddr::V4(
                    Ipv4Addr::LOCALHOST,
                ))]),
                TokioRuntimeProvider::default(),
            )
        }
    };
    // Rules match either family: ask for both, in parallel.
    builder.options_mut().ip_strategy = LookupIpStrategy::Ipv4AndIpv6;
    builder
        .build()
        .map_err(|e| format!("setting up the resolver: {e}"))
}

#[cfg(test)]
#[path = "dns_tests.rs"]
pub(crate) mod tests;
