//! A naive matcher written from the pattern semantics in docs/policy.md, independent of the
//! compiler and evaluator: it looks at patterns as text and paths as components.

use std::net::IpAddr;

/// Does path pattern `pattern` (as written) match the absolute normalized path `path`?
pub fn path_matches(pattern: &str, path: &str) -> bool {
    let components: Vec<&str> = path.split('/').filter(|c| !c.is_empty()).collect();
    if let Some(name) = pattern.strip_prefix("**/") {
        let Some(base) = components.last() else {
            return false;
        };
        return match name.strip_prefix('*') {
            Some(suffix) => base.ends_with(suffix),
            None => *base == name,
        };
    }
    let (dir, subtree) = match pattern.strip_suffix("/**") {
        Some(dir) => (dir, true),
        None => (pattern, false),
    };
    let pattern_components: Vec<&str> = dir.split('/').filter(|c| !c.is_empty()).collect();
    let count_ok = if subtree {
        components.len() >= pattern_components.len()
    } else {
        components.len() == pattern_components.len()
    };
    count_ok
        && pattern_components
            .iter()
            .zip(&components)
            .all(|(p, c)| *p == "*" || p == c)
}

/// Does net target `target` (`ADDR[/BITS][:LO[-HI]][/tcp|/udp]`, IPv4 only, or `*`) match?
pub fn net_matches(target: &str, addr: IpAddr, port: u16, udp: bool) -> bool {
    let (rest, proto_ok) = if let Some(r) = target.strip_suffix("/tcp") {
        (r, !udp)
    } else if let Some(r) = target.strip_suffix("/udp") {
        (r, udp)
    } else {
        (target, true)
    };
    let (addr_part, port_ok) = match rest.split_once(':') {
        Some((a, ports)) => {
            let (lo, hi) = ports.split_once('-').unwrap_or((ports, ports));
            (
                a,
                lo.parse::<u16>().unwrap() <= port && port <= hi.parse::<u16>().unwrap(),
            )
        }
        None => (rest, true),
    };
    let addr_ok = if addr_part == "*" {
        true
    } else {
        let (net, bits) = addr_part.split_once('/').unwrap_or((addr_part, "32"));
        let net: std::net::Ipv4Addr = net.parse().unwrap();
        let bits: u32 = bits.parse().unwrap();
        let v4 = match addr {
            IpAddr::V4(v4) => Some(v4),
            IpAddr::V6(v6) => v6.to_ipv4_mapped(),
        };
        v4.is_some_and(|a| {
            let m = if bits == 0 {
                0
            } else {
                u32::MAX << (32 - bits)
            };
            u32::from(a) & m == u32::from(net) & m
        })
    };
    addr_ok && port_ok && proto_ok
}

#[test]
fn naive_matcher_agrees_with_the_documented_examples() {
    assert!(path_matches("/home/*/.ssh/**", "/home/al/.ssh/id"));
    assert!(path_matches("/home/*/.ssh/**", "/home/al/.ssh"));
    assert!(!path_matches("/home/*/.ssh/**", "/home/.ssh"));
    assert!(path_matches("/**", "/"));
    assert!(!path_matches("/a", "/a/b"));
    assert!(path_matches("**/*.pem", "/x/.pem"));
    assert!(!path_matches("**/.env", "/"));
    assert!(net_matches(
        "10.0.0.0/8:80-90/tcp",
        "10.2.3.4".parse().unwrap(),
        85,
        false
    ));
    assert!(!net_matches(
        "10.0.0.0/8:80-90/tcp",
        "10.2.3.4".parse().unwrap(),
        85,
        true
    ));
    assert!(net_matches("*", "::1".parse().unwrap(), 1, true));
}
