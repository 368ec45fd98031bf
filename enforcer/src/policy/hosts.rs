//! Host names in net rules and the addresses they resolve to. The compiler never resolves
//! anything itself: the daemon (or `check`/`explain`) resolves and passes a [`ResolvedHosts`].

use std::{
    collections::{BTreeMap, BTreeSet},
    net::{IpAddr, ToSocketAddrs},
};

use super::{
    model::{AgentPolicy, RuleTarget},
    net::NetAddr,
};

/// Host name (lower case) -> its addresses. A host missing here compiles to no entries.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ResolvedHosts(BTreeMap<String, Vec<IpAddr>>);

impl ResolvedHosts {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn insert(&mut self, host: &str, addr: IpAddr) {
        let addrs = self.0.entry(host.to_ascii_lowercase()).or_default();
        if !addrs.contains(&addr) {
            addrs.push(addr);
        }
    }

    /// The addresses of `host`, empty if it was not resolved.
    pub fn get(&self, host: &str) -> &[IpAddr] {
        self.0
            .get(&host.to_ascii_lowercase())
            .map_or(&[], Vec::as_slice)
    }

    pub fn contains(&self, host: &str) -> bool {
        self.0.contains_key(&host.to_ascii_lowercase())
    }

    /// Resolve every host not already present with the system resolver (getaddrinfo). Returns
    /// the hosts that failed and why; those stay unresolved.
    pub fn resolve_missing<'a>(
        &mut self,
        hosts: impl IntoIterator<Item = &'a str>,
    ) -> Vec<(String, String)> {
        let mut failed = Vec::new();
        for host in hosts {
            if self.contains(host) {
                continue;
            }
            if host == super::net::RESOLVERS {
                match system_resolvers() {
                    Ok(addrs) => addrs.into_iter().for_each(|a| self.insert(host, a)),
                    Err(e) => failed.push((host.to_string(), e)),
                }
                continue;
            }
            match (host, 0u16).to_socket_addrs() {
                Ok(addrs) => {
                    for a in addrs {
                        self.insert(host, a.ip());
                    }
                }
                Err(e) => failed.push((host.to_string(), e.to_string())),
            }
        }
        failed
    }
}

/// The name servers /etc/resolv.conf names (what `@resolvers` means); with none, the C
/// library's default, the name server on this host (127.0.0.1 and ::1).
pub fn system_resolvers() -> Result<Vec<IpAddr>, String> {
    let (config, _) = hickory_resolver::system_conf::read_system_conf()
        .map_err(|e| format!("reading /etc/resolv.conf: {e}"))?;
    let mut addrs: Vec<IpAddr> = Vec::new();
    for server in config.name_servers() {
        if !addrs.contains(&server.ip) {
            addrs.push(server.ip);
        }
    }
    if addrs.is_empty() {
        addrs = vec![
            IpAddr::V4(std::net::Ipv4Addr::LOCALHOST),
            IpAddr::V6(std::net::Ipv6Addr::LOCALHOST),
        ];
    }
    Ok(addrs)
}

/// Every host name used by a net rule of these agents (`&set.agents` for all).
pub fn host_names<'a>(agents: impl IntoIterator<Item = &'a AgentPolicy>) -> BTreeSet<String> {
    agents
        .into_iter()
        .flat_map(|a| &a.rules)
        .filter_map(|r| match &r.target {
            RuleTarget::Ip(t) => match &t.addr {
                NetAddr::Host(h) => Some(h.clone()),
                NetAddr::Cidr { .. } => None,
            },
            _ => None,
        })
        .collect()
}

/// Parse `HOST=IP` (the `--resolve` flag).
pub fn parse_resolve_flag(text: &str) -> Result<(String, IpAddr), String> {
    let (host, ip) = text
        .split_once('=')
        .ok_or_else(|| format!("expected HOST=IP, got `{text}`"))?;
    let ip = ip
        .parse::<IpAddr>()
        .map_err(|_| format!("invalid IP address `{ip}` in `{text}`"))?;
    if host.is_empty() {
        return Err(format!("missing host name in `{text}`"));
    }
    Ok((host.to_ascii_lowercase(), ip))
}
