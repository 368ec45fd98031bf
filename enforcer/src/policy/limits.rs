//! Map capacities the compiler enforces, per rule slot: each map's `max_entries` (defined once in
//! `enforcer_common::maps`, which the eBPF maps are built with) divided by the rule slots,
//! because a reload fills the inactive slot while the active one is still in place
//! (docs/kernel-maps.md, "Ids").

use enforcer_common::{
    CANARY_AGENT, CGROUP_MATCH_ENTRIES, EXE_MATCH_ENTRIES, NAME_RULES_ENTRIES, NET_RULES_ENTRIES,
    PATH_RULES_ENTRIES, RULE_SLOTS,
};

/// `PATH_RULES` entries per slot (LPM trie; every exact/subtree/wildcard/unix path entry).
pub const MAX_PATH_ENTRIES: usize = (PATH_RULES_ENTRIES / RULE_SLOTS) as usize;
/// `NAME_RULES` entries per slot (`**/NAME`, `**/*.EXT`).
pub const MAX_NAME_ENTRIES: usize = (NAME_RULES_ENTRIES / RULE_SLOTS) as usize;
/// `NET_RULES` entries per slot (distinct CIDRs and resolved host addresses).
pub const MAX_NET_ENTRIES: usize = (NET_RULES_ENTRIES / RULE_SLOTS) as usize;
/// `EXE_MATCH` entries per slot.
pub const MAX_EXE_MATCH_ENTRIES: usize = (EXE_MATCH_ENTRIES / RULE_SLOTS) as usize;
/// `CGROUP_MATCH` entries per slot.
pub const MAX_CGROUP_MATCH_ENTRIES: usize = (CGROUP_MATCH_ENTRIES / RULE_SLOTS) as usize;
/// Agents per policy: ids `1..=MAX_POLICY_AGENTS` (`AGENTS` has `MAX_AGENTS` per slot; id 0 means
/// "not an agent" and the last id, `CANARY_AGENT`, is the load-time canary's): 1022.
pub const MAX_POLICY_AGENTS: usize = CANARY_AGENT as usize - 1;

#[cfg(test)]
mod tests {
    /// The numbers docs/policy.md ("Limits") states.
    #[test]
    fn the_documented_limits() {
        assert_eq!(super::MAX_POLICY_AGENTS, 1022);
        assert_eq!(super::MAX_PATH_ENTRIES, 131_072);
        assert_eq!(super::MAX_NAME_ENTRIES, 8_192);
        assert_eq!(super::MAX_NET_ENTRIES, 32_768);
        assert_eq!(super::MAX_EXE_MATCH_ENTRIES, 2_048);
        assert_eq!(super::MAX_CGROUP_MATCH_ENTRIES, 2_048);
    }
}
