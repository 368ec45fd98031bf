//! Map capacities the compiler enforces, per rule slot. The eBPF maps must be declared with
//! twice these (`max_entries = 2 * LIMIT`) because a reload fills the inactive slot while the
//! active one is still in place (docs/kernel-maps.md, "Ids").

/// `PATH_RULES` entries per slot (LPM trie; every exact/subtree/wildcard/unix path entry).
pub const MAX_PATH_ENTRIES: usize = 131_072;
/// `NAME_RULES` entries per slot (`**/NAME`, `**/*.EXT`).
pub const MAX_NAME_ENTRIES: usize = 16_384;
/// `NET_RULES` entries per slot (distinct CIDRs and resolved host addresses).
pub const MAX_NET_ENTRIES: usize = 16_384;
/// `EXE_MATCH` entries per slot.
pub const MAX_EXE_MATCH_ENTRIES: usize = 4_096;
/// `CGROUP_MATCH` entries per slot.
pub const MAX_CGROUP_MATCH_ENTRIES: usize = 1_024;
