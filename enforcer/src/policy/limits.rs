//! Map capacities the compiler enforces, per rule slot: half of each map's `max_entries` in
//! `enforcer-ebpf/src/maps.rs`, because a reload fills the inactive slot while the active one is
//! still in place (docs/kernel-maps.md, "Ids"). Keep the two in step.

/// `PATH_RULES` entries per slot (LPM trie; every exact/subtree/wildcard/unix path entry).
pub const MAX_PATH_ENTRIES: usize = 131_072;
/// `NAME_RULES` entries per slot (`**/NAME`, `**/*.EXT`).
pub const MAX_NAME_ENTRIES: usize = 8_192;
/// `NET_RULES` entries per slot (distinct CIDRs and resolved host addresses).
pub const MAX_NET_ENTRIES: usize = 32_768;
/// `EXE_MATCH` entries per slot.
pub const MAX_EXE_MATCH_ENTRIES: usize = 2_048;
/// `CGROUP_MATCH` entries per slot.
pub const MAX_CGROUP_MATCH_ENTRIES: usize = 2_048;
/// Agents per policy: ids `1..=MAX_POLICY_AGENTS` (`AGENTS` has `MAX_AGENTS` per slot; id 0 means
/// "not an agent" and the last id is the load-time canary's).
pub const MAX_POLICY_AGENTS: usize = enforcer_common::MAX_AGENTS as usize - 2;
