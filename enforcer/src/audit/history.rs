//! Recent compiled policies by version. Events are stamped in the kernel with the version that
//! decided them; after a reload the ring buffer can still hold events of the previous version,
//! whose rule and agent ids mean something else in the new policy.

use std::collections::VecDeque;
use std::sync::Arc;

use crate::policy::compile::CompiledPolicy;

/// How many versions to keep: a reload storm (issue 8 does 200) must not leave events of a
/// version still in flight unresolvable, and each entry is shared, not copied.
pub const DEFAULT_VERSIONS_KEPT: usize = 16;

#[derive(Debug)]
pub struct PolicyHistory {
    versions: VecDeque<(u32, Arc<CompiledPolicy>)>,
    keep: usize,
}

impl PolicyHistory {
    pub fn new(keep: usize) -> Self {
        PolicyHistory { versions: VecDeque::new(), keep: keep.max(1) }
    }

    /// Record the policy applied as `version` (the newest).
    pub fn push(&mut self, version: u32, policy: Arc<CompiledPolicy>) {
        self.versions.retain(|(v, _)| *v != version);
        self.versions.push_back((version, policy));
        while self.versions.len() > self.keep {
            self.versions.pop_front();
        }
    }

    pub fn get(&self, version: u32) -> Option<&Arc<CompiledPolicy>> {
        self.versions.iter().rev().find(|(v, _)| *v == version).map(|(_, p)| p)
    }

    /// The newest version and policy.
    pub fn current(&self) -> Option<(u32, &Arc<CompiledPolicy>)> {
        self.versions.back().map(|(v, p)| (*v, p))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_only_the_newest_versions() {
        let mut h = PolicyHistory::new(2);
        for v in 1..=3 {
            h.push(v, Arc::new(CompiledPolicy::default()));
        }
        assert!(h.get(1).is_none(), "version 1 should have been evicted");
        assert!(h.get(2).is_some() && h.get(3).is_some());
        assert_eq!(h.current().map(|(v, _)| v), Some(3));
    }
}
