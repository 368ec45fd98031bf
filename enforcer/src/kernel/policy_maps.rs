//! Writes a `CompiledPolicy` into the rule maps with an atomic switch: clear and fill the
//! inactive slot, flip `CONFIG[0].active_slot` with one store. A hook reads the active slot once
//! per decision, so it never sees a mix of old and new rules; the old slot keeps its rules until
//! the next apply (see [`switch`]), so a decision begun before the flip never sees them vanish.

use std::borrow::BorrowMut;

use aya::{
    maps::{lpm_trie::Key, Array, HashMap, LpmTrie, MapData},
    Ebpf,
};
use enforcer_common::*;

use super::KernelError;
use crate::policy::compile::CompiledPolicy;

fn map_err(map: &str, e: impl std::fmt::Display) -> KernelError {
    KernelError::Map {
        map: map.into(),
        reason: e.to_string(),
    }
}

fn path_data(slot: u32, agent: u32, bytes: &[u8]) -> Result<Key<PathData>, KernelError> {
    if bytes.len() > PATH_KEY_BYTES {
        return Err(map_err(
            MAP_PATH_RULES,
            format!("entry of {} bytes exceeds {PATH_KEY_BYTES}", bytes.len()),
        ));
    }
    let mut d = PathData::zeroed();
    d.ruleset_be = ruleset(slot, agent).to_be_bytes();
    d.path[..bytes.len()].copy_from_slice(bytes);
    Ok(Key::new(32 + 8 * bytes.len() as u32, d))
}

fn slot_of_ruleset_be(r: [u8; 4]) -> u32 {
    u32::from_be_bytes(r) >> RULESET_SLOT_SHIFT
}

/// Resolve a cgroup v2 path (relative to the cgroup2 mount) to the id the kernel reports.
pub fn cgroup_id(path: &std::path::Path) -> Result<u64, KernelError> {
    use std::os::unix::fs::MetadataExt as _;
    let root = super::cgroup2_mount()?;
    let full = root.join(path.strip_prefix("/").unwrap_or(path));
    let meta = std::fs::metadata(&full)
        .map_err(|e| map_err(MAP_CGROUP_MATCH, format!("cgroup {}: {e}", full.display())))?;
    // On cgroup2 the inode number is the cgroup id (kernfs node id).
    Ok(meta.ino())
}

pub struct Applied {
    pub slot: u32,
    pub entries: usize,
}

/// Install `policy` as `version`. Errors leave the active slot untouched.
pub fn apply<T: BorrowMut<Ebpf>>(
    mut ebpf: T,
    policy: &CompiledPolicy,
    version: u32,
) -> Result<Applied, KernelError> {
    switch(&mut MapSlots {
        ebpf: ebpf.borrow_mut(),
        policy,
        version,
    })
}

/// The steps of an apply on the rule slots; a trait so that their order is unit-tested.
trait SlotSteps {
    fn active_slot(&mut self) -> Result<u32, KernelError>;
    fn clear(&mut self, slot: u32) -> Result<(), KernelError>;
    /// Write the policy into `slot`; returns the `CONFIG` flags and the entries written.
    fn fill(&mut self, slot: u32) -> Result<(u32, usize), KernelError>;
    /// The switch: one store of `CONFIG[0]`.
    fn activate(&mut self, slot: u32, flags: u32) -> Result<(), KernelError>;
}

/// Fill the inactive slot and flip to it. The slot left is not cleared here: a hook that read
/// the old `active_slot` just before the flip may still be deciding with its rules (a chain's
/// members look theirs up one after the other), and an emptied slot would answer "no rule".
/// It is cleared at the start of the next apply instead, before it is filled again (it then
/// holds the policy before the running one, or what a crash mid-reload left).
fn switch(steps: &mut impl SlotSteps) -> Result<Applied, KernelError> {
    let old_slot = steps.active_slot()? & 1;
    let slot = old_slot ^ 1;
    steps.clear(slot)?;
    let (flags, entries) = steps.fill(slot)?;
    steps.activate(slot, flags)?;
    Ok(Applied { slot, entries })
}

struct MapSlots<'a> {
    ebpf: &'a mut Ebpf,
    policy: &'a CompiledPolicy,
    version: u32,
}

impl SlotSteps for MapSlots<'_> {
    fn active_slot(&mut self) -> Result<u32, KernelError> {
        let config: Array<&mut MapData, Config> = Array::try_from(
            self.ebpf
                .map_mut(MAP_CONFIG)
                .ok_or_else(|| map_err(MAP_CONFIG, "missing"))?,
        )
        .map_err(|e| map_err(MAP_CONFIG, e))?;
        Ok(config
            .get(&0, 0)
            .map_err(|e| map_err(MAP_CONFIG, e))?
            .active_slot)
    }

    fn clear(&mut self, slot: u32) -> Result<(), KernelError> {
        clear_slot(self.ebpf, slot)
    }

    fn fill(&mut self, slot: u32) -> Result<(u32, usize), KernelError> {
        let policy = self.policy;
        let mut flags = 0;
        let mut entries = 0usize;
        {
            let mut agents: Array<&mut MapData, AgentConfig> = Array::try_from(
                self.ebpf
                    .map_mut(MAP_AGENTS)
                    .ok_or_else(|| map_err(MAP_AGENTS, "missing"))?,
            )
            .map_err(|e| map_err(MAP_AGENTS, e))?;
            for id in 1..MAX_AGENTS {
                let cfg = policy
                    .agent(id)
                    .map(|a| a.config.with_wildcard_list())
                    .unwrap_or_default();
                agents
                    .set(slot * MAX_AGENTS + id, cfg, 0)
                    .map_err(|e| map_err(MAP_AGENTS, e))?;
            }
        }
        {
            let mut trie: LpmTrie<&mut MapData, PathData, PathRule> = LpmTrie::try_from(
                self.ebpf
                    .map_mut(MAP_PATH_RULES)
                    .ok_or_else(|| map_err(MAP_PATH_RULES, "missing"))?,
            )
            .map_err(|e| map_err(MAP_PATH_RULES, e))?;
            for e in &policy.path_entries {
                trie.insert(&path_data(slot, e.agent, &e.bytes)?, e.value, 0)
                    .map_err(|err| map_err(MAP_PATH_RULES, err))?;
                entries += 1;
            }
        }
        {
            let mut names: HashMap<&mut MapData, NameKey, PathRule> = HashMap::try_from(
                self.ebpf
                    .map_mut(MAP_NAME_RULES)
                    .ok_or_else(|| map_err(MAP_NAME_RULES, "missing"))?,
            )
            .map_err(|e| map_err(MAP_NAME_RULES, e))?;
            for e in &policy.name_entries {
                if e.name.len() > NAME_KEY_BYTES {
                    return Err(map_err(MAP_NAME_RULES, "name longer than NAME_KEY_BYTES"));
                }
                let mut key = NameKey {
                    ruleset: ruleset(slot, e.agent),
                    kind: e.kind,
                    name: [0; NAME_KEY_BYTES],
                };
                key.name[..e.name.len()].copy_from_slice(&e.name);
                names
                    .insert(key, e.value, 0)
                    .map_err(|err| map_err(MAP_NAME_RULES, err))?;
                entries += 1;
            }
        }
        {
            let mut net: LpmTrie<&mut MapData, NetData, NetRule> = LpmTrie::try_from(
                self.ebpf
                    .map_mut(MAP_NET_RULES)
                    .ok_or_else(|| map_err(MAP_NET_RULES, "missing"))?,
            )
            .map_err(|e| map_err(MAP_NET_RULES, e))?;
            for e in &policy.net_entries {
                let key = Key::new(
                    32 + e.prefix_bits,
                    NetData {
                        ruleset_be: ruleset(slot, e.agent).to_be_bytes(),
                        addr: e.addr,
                    },
                );
                net.insert(&key, e.value, 0)
                    .map_err(|err| map_err(MAP_NET_RULES, err))?;
                entries += 1;
            }
        }
        {
            // Windows as of now; the daemon applies again when the earliest of them ends.
            let mut conds: Array<&mut MapData, CondWindow> = Array::try_from(
                self.ebpf
                    .map_mut(MAP_CONDS)
                    .ok_or_else(|| map_err(MAP_CONDS, "missing"))?,
            )
            .map_err(|e| map_err(MAP_CONDS, e))?;
            let clock = crate::policy::when::BootMapping::now();
            for id in 1..MAX_CONDS {
                let w = policy
                    .conditions
                    .get(id as usize - 1)
                    .map(|c| clock.kernel_window(c))
                    .unwrap_or_default();
                conds
                    .set(slot * MAX_CONDS + id, w, 0)
                    .map_err(|e| map_err(MAP_CONDS, e))?;
            }
            // Entry 0 is no window: how many conditions the path matcher judges per decision.
            let count = CondWindow {
                start_ns: policy.conditions.len().min(MAX_CONDS as usize - 1) as u64,
                end_ns: 0,
            };
            conds
                .set(slot * MAX_CONDS + COND_COUNT, count, 0)
                .map_err(|e| map_err(MAP_CONDS, e))?;
        }
        {
            let mut exe: LpmTrie<&mut MapData, PathData, ExeMatch> = LpmTrie::try_from(
                self.ebpf
                    .map_mut(MAP_EXE_MATCH)
                    .ok_or_else(|| map_err(MAP_EXE_MATCH, "missing"))?,
            )
            .map_err(|e| map_err(MAP_EXE_MATCH, e))?;
            for e in &policy.exe_matches {
                exe.insert(&path_data(slot, NO_AGENT, &e.bytes)?, e.value, 0)
                    .map_err(|err| map_err(MAP_EXE_MATCH, err))?;
                flags |= CONFIG_HAVE_EXE_MATCH;
                entries += 1;
            }
        }
        {
            let mut cg: HashMap<&mut MapData, CgroupKey, CgroupMatch> = HashMap::try_from(
                self.ebpf
                    .map_mut(MAP_CGROUP_MATCH)
                    .ok_or_else(|| map_err(MAP_CGROUP_MATCH, "missing"))?,
            )
            .map_err(|e| map_err(MAP_CGROUP_MATCH, e))?;
            for e in &policy.cgroup_matches {
                let key = CgroupKey {
                    cgroup_id: cgroup_id(&e.path)?,
                    slot,
                    _pad: 0,
                };
                cg.insert(key, e.value, 0)
                    .map_err(|err| map_err(MAP_CGROUP_MATCH, err))?;
                flags |= CONFIG_HAVE_CGROUP_MATCH;
                entries += 1;
            }
        }
        Ok((flags, entries))
    }

    fn activate(&mut self, slot: u32, flags: u32) -> Result<(), KernelError> {
        // The switch: one array store.
        let mut config: Array<&mut MapData, Config> = Array::try_from(
            self.ebpf
                .map_mut(MAP_CONFIG)
                .ok_or_else(|| map_err(MAP_CONFIG, "missing"))?,
        )
        .map_err(|e| map_err(MAP_CONFIG, e))?;
        config
            .set(
                0,
                Config {
                    active_slot: slot,
                    policy_version: self.version,
                    flags,
                    _pad: 0,
                },
                0,
            )
            .map_err(|e| map_err(MAP_CONFIG, e))?;
        Ok(())
    }
}

/// Delete every rule entry of `slot`.
fn clear_slot(ebpf: &mut Ebpf, slot: u32) -> Result<(), KernelError> {
    clear_trie::<PathData, PathRule>(ebpf, MAP_PATH_RULES, |k| {
        slot_of_ruleset_be(k.ruleset_be) == slot
    })?;
    clear_trie::<PathData, ExeMatch>(ebpf, MAP_EXE_MATCH, |k| {
        slot_of_ruleset_be(k.ruleset_be) == slot
    })?;
    clear_trie::<NetData, NetRule>(ebpf, MAP_NET_RULES, |k| {
        slot_of_ruleset_be(k.ruleset_be) == slot
    })?;
    clear_hash::<NameKey, PathRule>(ebpf, MAP_NAME_RULES, |k| {
        k.ruleset >> RULESET_SLOT_SHIFT == slot
    })?;
    clear_hash::<CgroupKey, CgroupMatch>(ebpf, MAP_CGROUP_MATCH, |k| k.slot == slot)?;
    Ok(())
}

/// Remove the LPM entries whose data `doomed` selects (keys collected first: no deleting while
/// iterating).
fn clear_trie<K: aya::Pod, V: aya::Pod>(
    ebpf: &mut Ebpf,
    name: &str,
    doomed: impl Fn(&K) -> bool,
) -> Result<(), KernelError> {
    let mut trie: LpmTrie<&mut MapData, K, V> =
        LpmTrie::try_from(ebpf.map_mut(name).ok_or_else(|| map_err(name, "missing"))?)
            .map_err(|e| map_err(name, e))?;
    let keys: Vec<_> = trie
        .keys()
        .filter_map(Result::ok)
        .filter(|k| doomed(&k.data()))
        .collect();
    for k in keys {
        trie.remove(&k).map_err(|e| map_err(name, e))?;
    }
    Ok(())
}

fn clear_hash<K: aya::Pod, V: aya::Pod>(
    ebpf: &mut Ebpf,
    name: &str,
    doomed: impl Fn(&K) -> bool,
) -> Result<(), KernelError> {
    let mut map: HashMap<&mut MapData, K, V> =
        HashMap::try_from(ebpf.map_mut(name).ok_or_else(|| map_err(name, "missing"))?)
            .map_err(|e| map_err(name, e))?;
    let keys: Vec<_> = map
        .keys()
        .filter_map(Result::ok)
        .filter(|k| doomed(k))
        .collect();
    for k in keys {
        map.remove(&k).map_err(|e| map_err(name, e))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Records the steps; `active` is what `CONFIG[0]` holds.
    #[derive(Default)]
    struct Recorder {
        active: u32,
        steps: Vec<String>,
    }

    impl SlotSteps for Recorder {
        fn active_slot(&mut self) -> Result<u32, KernelError> {
            Ok(self.active)
        }
        fn clear(&mut self, slot: u32) -> Result<(), KernelError> {
            self.steps.push(format!("clear {slot}"));
            Ok(())
        }
        fn fill(&mut self, slot: u32) -> Result<(u32, usize), KernelError> {
            self.steps.push(format!("fill {slot}"));
            Ok((0, 1))
        }
        fn activate(&mut self, slot: u32, _flags: u32) -> Result<(), KernelError> {
            self.steps.push(format!("activate {slot}"));
            self.active = slot;
            Ok(())
        }
    }

    #[test]
    fn the_old_slot_is_cleared_at_the_next_apply_not_after_the_switch() {
        let mut maps = Recorder::default();
        assert_eq!(switch(&mut maps).unwrap().slot, 1);
        assert_eq!(
            maps.steps,
            ["clear 1", "fill 1", "activate 1"],
            "slot 0 (the one in-flight decisions may still read) must be left alone"
        );
        maps.steps.clear();
        assert_eq!(switch(&mut maps).unwrap().slot, 0);
        assert_eq!(maps.steps, ["clear 0", "fill 0", "activate 0"]);
    }

    #[test]
    fn a_failed_fill_leaves_the_active_slot_as_it_was() {
        struct FailingFill(Recorder);
        impl SlotSteps for FailingFill {
            fn active_slot(&mut self) -> Result<u32, KernelError> {
                self.0.active_slot()
            }
            fn clear(&mut self, slot: u32) -> Result<(), KernelError> {
                self.0.clear(slot)
            }
            fn fill(&mut self, _slot: u32) -> Result<(u32, usize), KernelError> {
                Err(map_err(MAP_PATH_RULES, "full"))
            }
            fn activate(&mut self, slot: u32, flags: u32) -> Result<(), KernelError> {
                self.0.activate(slot, flags)
            }
        }
        let mut maps = FailingFill(Recorder {
            active: 1,
            ..Recorder::default()
        });
        assert!(switch(&mut maps).is_err());
        assert_eq!(maps.0.active, 1);
        assert_eq!(maps.0.steps, ["clear 0"]);
    }
}
