//! The eBPF object, embedded at build time (enforcer/build.rs): one self-contained binary.

pub static EBPF_OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/enforcer"));

/// Empty when built with AYA_BUILD_SKIP=1 (pure user-space builds).
pub fn available() -> bool {
    !EBPF_OBJECT.is_empty()
}

/// Identity of the embedded object (FNV-1a 64 of its bytes): pinned kernel state is adopted only
/// by a binary carrying exactly the object that installed it (see `pin.rs`).
pub fn layout_id() -> u64 {
    EBPF_OBJECT
        .iter()
        .fold(0xcbf2_9ce4_8422_2325u64, |h, &b| {
            (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
        })
        .max(1)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::EBPF_OBJECT;

    fn parsed() -> aya_obj::Object {
        assert!(
            super::available(),
            "built with AYA_BUILD_SKIP=1: there is no embedded eBPF object to check"
        );
        aya_obj::Object::parse(EBPF_OBJECT).expect("the embedded eBPF object parses")
    }

    /// The shipped object holds exactly the product's programs (enforcer_common::PROGRAMS): no
    /// test-only program (`verifier_probe`, built only with enforcer-ebpf's `verifier-probe`
    /// feature), and nothing user space does not know by name.
    #[test]
    fn the_object_holds_only_the_products_programs() {
        let object = parsed();
        let found: BTreeSet<&str> = object.programs.keys().map(String::as_str).collect();
        let expected: BTreeSet<&str> = enforcer_common::PROGRAMS.iter().copied().collect();
        assert_eq!(
            expected.len(),
            enforcer_common::PROGRAMS.len(),
            "a program is listed twice in enforcer_common::PROGRAMS"
        );
        let extra: Vec<_> = found.difference(&expected).collect();
        let missing: Vec<_> = expected.difference(&found).collect();
        assert!(
            extra.is_empty() && missing.is_empty(),
            "programs in the object but not in enforcer_common::PROGRAMS: {extra:?}; listed but \
             not in the object: {missing:?}"
        );
        for test_only in [
            enforcer_common::PROG_VERIFIER_PROBE,
            enforcer_common::PROG_VERIFIER_PROBE_WALK,
        ] {
            assert!(!found.contains(test_only), "{test_only} is test-only");
        }
    }

    /// Every map of the object has the name, type and `max_entries` of enforcer_common::MAPS (the
    /// definitions both sides compile against), and every map there is in the object: a capacity
    /// changed on one side only fails here, not at a customer's load.
    #[test]
    fn the_objects_maps_match_the_common_definitions() {
        let object = parsed();
        let mut found = BTreeSet::new();
        for (name, map) in &object.maps {
            // Global data (.rodata, .bss, .data): the offsets user space overrides at load.
            if name.starts_with('.') {
                continue;
            }
            found.insert(name.as_str());
            let spec = enforcer_common::MAPS
                .iter()
                .find(|spec| spec.name == name)
                .unwrap_or_else(|| {
                    panic!("map {name} is in the object but not in enforcer_common::MAPS")
                });
            assert_eq!(
                (map.map_type(), map.max_entries()),
                (spec.map_type, spec.max_entries),
                "map {name}: (type, max_entries) in the object vs enforcer_common::MAPS"
            );
        }
        let listed: BTreeSet<&str> = enforcer_common::MAPS.iter().map(|s| s.name).collect();
        assert_eq!(
            listed.len(),
            enforcer_common::MAPS.len(),
            "a map is listed twice"
        );
        let missing: Vec<_> = listed.difference(&found).collect();
        assert!(
            missing.is_empty(),
            "listed in enforcer_common::MAPS, not in the object: {missing:?}"
        );
        // Every map is pinned (the loader refuses an unpinned one): the same set.
        let pinned: BTreeSet<&str> = enforcer_common::PINNED_MAPS.iter().copied().collect();
        assert_eq!(pinned, listed, "PINNED_MAPS and MAPS name different maps");
    }
}
