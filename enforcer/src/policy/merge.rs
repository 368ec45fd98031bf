//! Merging rules into LPM values: the kernel does one longest-prefix lookup, so each entry's
//! value must already contain what every shorter entry on its path says (docs/kernel-maps.md,
//! "Merged values" and "Network").

use std::collections::{BTreeMap, HashMap};

use enforcer_common::{NetPortRule, NetRule, PathRule, ACCESS_KINDS, NET_RULES_PER_PREFIX};

use super::{model::Located, net::mask};

/// The rules of one entry (a path entry or a basename/suffix name), not yet merged: per access
/// kind the lowest deny rule id, and every allow in rule order with its condition (0: always).
#[derive(Clone, Debug, Default)]
pub struct OwnRules {
    deny: u32,
    deny_rule: [u32; ACCESS_KINDS],
    allows: [Vec<(u32, u32)>; ACCESS_KINDS],
}

impl OwnRules {
    /// Rules arrive in ascending id order, so the first deny per kind is the lowest id (the
    /// tie-break on one entry) and the allows stay in id order.
    pub fn add(&mut self, rule: u32, allow: u32, deny: u32, cond: u32) {
        for k in 0..ACCESS_KINDS {
            let bit = 1 << k;
            if allow & bit != 0 {
                self.allows[k].push((rule, cond));
            }
            if deny & bit != 0 && self.deny & bit == 0 {
                self.deny |= bit;
                self.deny_rule[k] = rule;
            }
        }
    }
}

/// Why one entry's value cannot be represented: the rule that cannot be kept and the message.
pub type MergeError = (u32, String);

/// The kernel value of an entry from the own rules of every entry that is a byte prefix of it,
/// shortest first. Denies: the longest entry's (lowest id on one entry). Allows of kind `k`, most
/// specific first (ties: lowest id): the first, and - if that one is conditional - the one after
/// it, which the kernel uses while the first one's window is closed. A third is needed only
/// when the first two are both conditional; the value cannot hold it (error, never a silent
/// approximation).
pub fn merged_value(chain: &[&OwnRules], entry: &[u8]) -> Result<PathRule, MergeError> {
    let mut merged = PathRule::default();
    for value in chain {
        for k in 0..ACCESS_KINDS {
            let bit = 1 << k;
            if value.deny & bit != 0 {
                merged.deny |= bit;
                merged.deny_rule[k] = value.deny_rule[k];
            }
        }
    }
    for k in 0..ACCESS_KINDS {
        let mut allows = chain.iter().rev().flat_map(|v| v.allows[k].iter().copied());
        let Some((rule, cond)) = allows.next() else {
            continue;
        };
        merged.allow |= 1 << k;
        merged.allow_rule[k] = rule;
        merged.allow_cond[k] = cond;
        if cond == 0 {
            continue;
        }
        let Some((next, next_cond)) = allows.next() else {
            continue;
        };
        merged.next_rule[k] = next;
        merged.next_cond[k] = next_cond;
        if next_cond != 0 {
            if let Some((third, _)) = allows.next() {
                let kind = crate::audit::names::access_names(1 << k).concat();
                let msg = format!(
                    "`{}`: more than two conditional allows (time windows, grants) of {kind} apply here before an \
                     unconditional one; the kernel keeps two per path (rule {third} would be lost)",
                    String::from_utf8_lossy(entry).trim_end_matches('\0')
                );
                return Err((next, msg));
            }
        }
    }
    Ok(merged)
}

/// One agent's path entries with their own rules (not yet merged).
#[derive(Default)]
pub struct PathContributions {
    own: HashMap<Vec<u8>, OwnRules>,
}

impl PathContributions {
    pub fn add(&mut self, entry: Vec<u8>, rule: u32, allow: u32, deny: u32, cond: u32) {
        self.own
            .entry(entry)
            .or_default()
            .add(rule, allow, deny, cond);
    }
}

/// Every entry with its merged value. The entries that are byte prefixes of an entry `E` are
/// `E` itself and entries ending in `/` at one of `E`'s `/` positions (NUL-terminated entries
/// are prefixes only of themselves), so each merge looks at `E`'s own slashes only.
pub fn merge_paths(c: &PathContributions) -> Result<Vec<(Vec<u8>, PathRule)>, MergeError> {
    let mut out = Vec::with_capacity(c.own.len());
    // In byte order, so the first error reported does not depend on hashing.
    let mut own_entries: Vec<(&Vec<u8>, &OwnRules)> = c.own.iter().collect();
    own_entries.sort_by(|a, b| a.0.cmp(b.0));
    for (entry, own) in own_entries {
        // Shortest first, the entry's own rules last.
        let chain: Vec<&OwnRules> = entry
            .iter()
            .enumerate()
            .filter(|&(i, b)| *b == b'/' && i + 1 < entry.len())
            .filter_map(|(i, _)| c.own.get(&entry[..=i]))
            .chain(std::iter::once(own))
            .collect();
        let merged = merged_value(&chain, entry)?;
        out.push((entry.clone(), merged));
    }
    Ok(out)
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
