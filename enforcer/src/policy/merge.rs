//! Merging rules into LPM values: the kernel does one longest-prefix lookup, so each entry's
//! value must already contain what every shorter entry on its path says (docs/kernel-maps.md,
//! "Merged values" and "Network").

use std::collections::{BTreeMap, HashMap};

use enforcer_common::{NetPortRule, NetRule, PathRule, ACCESS_KINDS, NET_RULES_PER_PREFIX};

use super::compiler::add_access;
use super::model::Located;
use super::net::mask;

/// One agent's path entries with their own rules (not yet merged).
#[derive(Default)]
pub struct PathContributions {
    own: HashMap<Vec<u8>, PathRule>,
}

impl PathContributions {
    pub fn add(&mut self, entry: Vec<u8>, rule: u32, allow: u32, deny: u32) {
        add_access(self.own.entry(entry).or_default(), rule, allow, deny);
    }
}

/// Every entry with its merged value. The entries that are byte prefixes of an entry `E` are
/// `E` itself and entries ending in `/` at one of `E`'s `/` positions (NUL-terminated entries
/// are prefixes only of themselves), so each merge looks at `E`'s own slashes only.
pub fn merge_paths(c: &PathContributions) -> Vec<(Vec<u8>, PathRule)> {
    let mut out = Vec::with_capacity(c.own.len());
    for (entry, own) in &c.own {
        let mut merged = PathRule::default();
        let shorter = entry
            .iter()
            .enumerate()
            .filter(|&(i, b)| *b == b'/' && i + 1 < entry.len())
            .filter_map(|(i, _)| c.own.get(&entry[..=i]));
        // Shortest first: a longer entry's rule replaces a shorter one's for the same kind.
        for value in shorter.chain(std::iter::once(own)) {
            for k in 0..ACCESS_KINDS {
                let bit = 1 << k;
                if value.allow & bit != 0 {
                    merged.allow |= bit;
                    merged.allow_rule[k] = value.allow_rule[k];
                }
                if value.deny & bit != 0 {
                    merged.deny |= bit;
                    merged.deny_rule[k] = value.deny_rule[k];
                }
            }
        }
        out.push((entry.clone(), merged));
    }
    out
}

/// One agent's CIDRs (masked address, prefix bits) with their port rules in rule order, each with
/// the rule's position for errors.
pub type CidrRules<'a> = BTreeMap<([u8; 16], u32), Vec<(NetPortRule, &'a Located)>>;

/// A `NET_RULES` entry: address, prefix bits (of 128), value.
pub type NetPrefixValue = ([u8; 16], u32, NetRule);

/// One agent's CIDRs with their port rules ->
/// `NET_RULES` entries: each prefix lists the rules of every CIDR containing it, most specific
/// first. Too many for one value is an error at the most specific CIDR's first rule.
pub fn merge_net<'a>(cidrs: &CidrRules<'a>) -> Result<Vec<NetPrefixValue>, (&'a Located, String)> {
    let mut out = Vec::with_capacity(cidrs.len());
    for (&(addr, bits), own) in cidrs {
        let mut value = NetRule::default();
        let mut count = 0usize;
        for b in (0..=bits).rev() {
            let Some(rules) = cidrs.get(&(mask(addr, b), b)) else {
                continue;
            };
            for (rule, _) in rules {
                if count == NET_RULES_PER_PREFIX {
                    let msg = format!(
                        "more than {NET_RULES_PER_PREFIX} net rules apply to {} (counting every rule of a \
                         CIDR that contains it); the kernel keeps at most {NET_RULES_PER_PREFIX} per address prefix",
                        describe(addr, bits)
                    );
                    return Err((own[0].1, msg));
                }
                value.rules[count] = *rule;
                count += 1;
            }
        }
        value.count = count as u32;
        out.push((addr, bits, value));
    }
    Ok(out)
}

/// `10.0.0.0/8` or `2001:db8::/32` for a 128-bit prefix.
pub fn describe(addr: [u8; 16], bits: u32) -> String {
    let v6 = std::net::Ipv6Addr::from(addr);
    match v6.to_ipv4_mapped() {
        Some(v4) if bits >= 96 => format!("{v4}/{}", bits - 96),
        _ => format!("{v6}/{bits}"),
    }
}
