//! Network rule targets: `ADDR[/BITS][:PORTS][/tcp|/udp|/icmp]`, `[V6ADDR[/BITS]]:PORTS`, host names,
//! `@resolvers` (the name servers of /etc/resolv.conf), `*` (any address), `unix:/path` and
//! `unix:@abstract`.

use std::net::{IpAddr, Ipv6Addr};

use enforcer_common::{PROTO_ANY, PROTO_ICMP, PROTO_TCP, PROTO_UDP};

use super::pattern::{Allowed, PathPattern};

/// What a net rule names.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum NetTarget {
    Ip(IpTarget),
    /// A unix socket path pattern or `@abstract` name (compiled as a path rule, access CONNECT).
    Unix(PathPattern),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IpTarget {
    pub addr: NetAddr,
    pub port_lo: u16,
    pub port_hi: u16,
    /// `PROTO_*` bits.
    pub proto: u32,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum NetAddr {
    /// An address or CIDR as a 128-bit prefix (IPv4 mapped to `::ffff:0:0/96`).
    Cidr { addr: [u8; 16], prefix_bits: u32 },
    /// Resolved by the daemon; each address becomes a /128 entry.
    Host(String),
}

/// The 16-byte form the kernel keys on: IPv6, or IPv4 as `::ffff:a.b.c.d`.
pub fn mapped(addr: IpAddr) -> [u8; 16] {
    match addr {
        IpAddr::V4(v4) => v4.to_ipv6_mapped().octets(),
        IpAddr::V6(v6) => v6.octets(),
    }
}

/// Clear every bit past `prefix_bits`.
pub fn mask(addr: [u8; 16], prefix_bits: u32) -> [u8; 16] {
    let bits = u128::from_be_bytes(addr);
    let masked = if prefix_bits == 0 {
        0
    } else {
        bits & (u128::MAX << (128 - prefix_bits.min(128)))
    };
    masked.to_be_bytes()
}

impl NetTarget {
    pub fn parse(text: &str) -> Result<NetTarget, String> {
        if let Some(rest) = text.strip_prefix("unix:") {
            let pattern = if rest.starts_with('@') {
                PathPattern::parse_abstract(rest)?
            } else {
                PathPattern::parse(rest, Allowed::All)?
            };
            return Ok(NetTarget::Unix(pattern));
        }
        let (rest, proto) = if let Some(r) = text.strip_suffix("/tcp") {
            (r, PROTO_TCP)
        } else if let Some(r) = text.strip_suffix("/udp") {
            (r, PROTO_UDP)
        } else if let Some(r) = text.strip_suffix("/icmp") {
            (r, PROTO_ICMP)
        } else {
            (text, PROTO_ANY)
        };
        let (addr_text, ports) = split_ports(rest)?;
        let (port_lo, port_hi) = match ports {
            Some(_) if proto == PROTO_ICMP => {
                return Err("ICMP has no ports: write `ADDR/icmp`".into());
            }
            Some(p) => parse_ports(p)?,
            None => (0, u16::MAX),
        };
        let addr = parse_addr(addr_text)?;
        Ok(NetTarget::Ip(IpTarget {
            addr,
            port_lo,
            port_hi,
            proto,
        }))
    }
}

/// Split `ADDR:PORTS` / `[V6]:PORTS`; a bare IPv6 address (several `:`) has no port.
fn split_ports(text: &str) -> Result<(&str, Option<&str>), String> {
    if let Some(inner) = text.strip_prefix('[') {
        let Some(close) = inner.find(']') else {
            return Err("missing `]` after the IPv6 address".into());
        };
        let after = &inner[close + 1..];
        return match after.strip_prefix(':') {
            Some(ports) => Ok((&inner[..close], Some(ports))),
            None if after.is_empty() => Ok((&inner[..close], None)),
            None => Err(format!("unexpected `{after}` after `]` (expected `:PORT`)")),
        };
    }
    match text.matches(':').count() {
        0 => Ok((text, None)),
        1 => {
            let (a, p) = text.split_once(':').expect("one colon");
            Ok((a, Some(p)))
        }
        _ => Ok((text, None)),
    }
}

fn parse_ports(text: &str) -> Result<(u16, u16), String> {
    if let Some((_, proto)) = text.split_once('/') {
        return Err(format!(
            "unknown protocol `/{proto}` (expected `/tcp`, `/udp` or `/icmp`)"
        ));
    }
    let parse_one = |s: &str| -> Result<u16, String> {
        if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
            return Err(format!("invalid port `{s}` (expected 0..=65535, `LO-HI`)"));
        }
        s.parse::<u16>()
            .map_err(|_| format!("port {s} is out of range (0..=65535)"))
    };
    match text.split_once('-') {
        Some((lo, hi)) => {
            let (lo, hi) = (parse_one(lo)?, parse_one(hi)?);
            if lo > hi {
                return Err(format!(
                    "empty port range {lo}-{hi} (the first port must not exceed the second)"
                ));
            }
            Ok((lo, hi))
        }
        None => {
            let p = parse_one(text)?;
            Ok((p, p))
        }
    }
}

/// The address `@resolvers`: the name servers /etc/resolv.conf names, looked up by the daemon
/// like a host name (policy/hosts.rs, `system_resolvers`).
pub const RESOLVERS: &str = "@resolvers";

fn parse_addr(text: &str) -> Result<NetAddr, String> {
    if text == RESOLVERS {
        return Ok(NetAddr::Host(RESOLVERS.into()));
    }
    if text == "*" {
        return Ok(NetAddr::Cidr {
            addr: [0; 16],
            prefix_bits: 0,
        });
    }
    if text.is_empty() {
        return Err("missing address (use `*` for any address)".into());
    }
    let (ip_text, bits_text) = match text.split_once('/') {
        Some((ip, bits)) => (ip, Some(bits)),
        None => (text, None),
    };
    let ip = match ip_text.parse::<IpAddr>() {
        Ok(ip) => ip,
        Err(_) if bits_text.is_none() && looks_like_host(ip_text) => {
            return Ok(NetAddr::Host(ip_text.to_ascii_lowercase()))
        }
        Err(_) if ip_text.bytes().all(|b| b.is_ascii_digit() || b == b'.') => {
            return Err(format!("invalid IPv4 address `{ip_text}`"))
        }
        Err(_) if ip_text.contains(':') => return Err(format!("invalid IPv6 address `{ip_text}`")),
        Err(_) if bits_text.is_some() => {
            return Err(format!("invalid address `{ip_text}` in CIDR"))
        }
        Err(_) => {
            return Err(format!(
                "`{ip_text}` is neither an IP address nor a valid host name"
            ))
        }
    };
    let family_bits = if ip.is_ipv4() { 32 } else { 128 };
    let bits = match bits_text {
        None => family_bits,
        Some(b) => match b.parse::<u32>() {
            Ok(n) if n <= family_bits && b.bytes().all(|c| c.is_ascii_digit()) => n,
            _ => {
                return Err(format!(
                    "invalid prefix length `/{b}` (expected 0..={family_bits})"
                ))
            }
        },
    };
    let prefix_bits = if ip.is_ipv4() { bits + 96 } else { bits };
    let addr = mapped(ip);
    if mask(addr, prefix_bits) != addr {
        let network = match ip {
            IpAddr::V4(_) => IpAddr::V6(Ipv6Addr::from(mask(addr, prefix_bits))).to_canonical(),
            IpAddr::V6(_) => IpAddr::V6(Ipv6Addr::from(mask(addr, prefix_bits))),
        };
        return Err(format!(
            "host bits set in `{text}`: did you mean `{network}/{bits}`?"
        ));
    }
    Ok(NetAddr::Cidr { addr, prefix_bits })
}

/// RFC 1123 host name: dot-separated labels of letters, digits and `-`, not all-numeric at the end.
fn looks_like_host(s: &str) -> bool {
    if s.len() > 253 {
        return false;
    }
    let labels: Vec<&str> = s.trim_end_matches('.').split('.').collect();
    let label_ok = |l: &&str| {
        !l.is_empty()
            && l.len() <= 63
            && !l.starts_with('-')
            && !l.ends_with('-')
            && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
    };
    labels.iter().all(label_ok)
        && labels
            .last()
            .is_some_and(|tld| !tld.bytes().all(|b| b.is_ascii_digit()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpTarget {
        match NetTarget::parse(s) {
            Ok(NetTarget::Ip(t)) => t,
            other => panic!("{s}: {other:?}"),
        }
    }

    #[test]
    fn resolvers_is_a_name_the_daemon_looks_up() {
        let t = ip("@resolvers:53/udp");
        assert_eq!(t.addr, NetAddr::Host(RESOLVERS.into()));
        assert_eq!((t.port_lo, t.port_hi, t.proto), (53, 53, PROTO_UDP));
        assert!(NetTarget::parse("@resolvers/8:53").is_err());
        assert!(NetTarget::parse("@other:53").is_err());
    }

    #[test]
    fn address_forms() {
        let t = ip("10.0.0.0/8:5432/tcp");
        assert_eq!(
            t.addr,
            NetAddr::Cidr {
                addr: mapped("10.0.0.0".parse().unwrap()),
                prefix_bits: 104
            }
        );
        assert_eq!((t.port_lo, t.port_hi, t.proto), (5432, 5432, PROTO_TCP));
        let t = ip("[2001:db8::/32]:8000-8999/udp");
        assert_eq!(
            t.addr,
            NetAddr::Cidr {
                addr: mapped("2001:db8::".parse().unwrap()),
                prefix_bits: 32
            }
        );
        assert_eq!((t.port_lo, t.port_hi, t.proto), (8000, 8999, PROTO_UDP));
        let t = ip("::1");
        assert_eq!(
            t.addr,
            NetAddr::Cidr {
                addr: mapped("::1".parse().unwrap()),
                prefix_bits: 128
            }
        );
        assert_eq!((t.port_lo, t.port_hi, t.proto), (0, 65535, PROTO_ANY));
        assert_eq!(
            ip("*:53/udp").addr,
            NetAddr::Cidr {
                addr: [0; 16],
                prefix_bits: 0
            }
        );
        assert_eq!(
            ip("API.Example.com:443").addr,
            NetAddr::Host("api.example.com".into())
        );
        assert_eq!(
            NetTarget::parse("unix:@dbus").unwrap(),
            NetTarget::Unix(PathPattern::Abstract("@dbus".into()))
        );
    }

    #[test]
    fn bad_targets() {
        let e = |s: &str| NetTarget::parse(s).expect_err(s);
        assert_eq!(
            e("10.0.0.1/8"),
            "host bits set in `10.0.0.1/8`: did you mean `10.0.0.0/8`?"
        );
        assert_eq!(
            e("10.0.0.0/33"),
            "invalid prefix length `/33` (expected 0..=32)"
        );
        assert_eq!(e("10.0.0.256:80"), "invalid IPv4 address `10.0.0.256`");
        assert_eq!(e("1.2.3.4:70000"), "port 70000 is out of range (0..=65535)");
        assert_eq!(
            e("1.2.3.4:90-80"),
            "empty port range 90-80 (the first port must not exceed the second)"
        );
        assert_eq!(
            e("1.2.3.4:http"),
            "invalid port `http` (expected 0..=65535, `LO-HI`)"
        );
        assert_eq!(e("[::1:443"), "missing `]` after the IPv6 address");
        assert_eq!(
            e("bad_host!:1"),
            "`bad_host!` is neither an IP address nor a valid host name"
        );
        assert_eq!(
            e("fe80::1/129"),
            "invalid prefix length `/129` (expected 0..=128)"
        );
    }
}
