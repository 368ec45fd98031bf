//! The daemon keeps only the capabilities its running operations need. Loading and attaching
//! programs, adopting pins, binding the socket and the metrics port need many (CAP_BPF,
//! CAP_PERFMON, CAP_SYS_ADMIN, CAP_NET_ADMIN, CAP_CHOWN, ...); once all of that is done, the
//! daemon works through the descriptors it holds (maps, links, the ring buffer) and drops every
//! other capability from its effective, permitted, inheritable, ambient and bounding sets, and
//! sets `no_new_privs`, so neither it nor anything it could execute gets them back. Why each
//! kept capability is needed, and what was measured without it: docs/daemon.md ("Privileges").

use caps::{CapSet, Capability, CapsHashSet};

/// What the running daemon keeps (code, the `daemon_privileges` kernel test and docs/daemon.md
/// list the same names): `CAP_SYS_PTRACE`, for the `exe` of events and status, read from
/// `/proc/PID/exe`, which the kernel hides from a reader without it when the agent runs as
/// another user or holds capabilities the daemon dropped. Map updates, lookups and pins through
/// the descriptors the daemon holds need no capability on the kernels it runs on (6.1 and
/// later; measured without each capability: docs/daemon.md).
pub const KEPT: &[Capability] = &[Capability::CAP_SYS_PTRACE];

#[derive(Debug, thiserror::Error)]
pub enum PrivilegeError {
    #[error(
        "capabilities are per thread: {0} other threads exist at the drop and would keep theirs"
    )]
    Threads(usize),
    #[error("reading /proc/self/task: {0}")]
    Tasks(std::io::Error),
    #[error("setting no_new_privs: {0}")]
    NoNewPrivs(nix::Error),
    #[error("{what}: {cause}")]
    Caps {
        what: &'static str,
        cause: caps::errors::CapsError,
    },
    #[error("after the drop the {set} set is {actual}, expected {expected}")]
    Mismatch {
        set: &'static str,
        actual: String,
        expected: String,
    },
}

/// The kept capabilities as a mask of `/proc/PID/status` (`CapEff`, `CapPrm`, `CapBnd`).
pub fn kept_mask() -> u64 {
    KEPT.iter().fold(0, |mask, c| mask | c.bitmask())
}

/// Names of a set, sorted (`CAP_BPF CAP_SYS_PTRACE`; `none` for an empty set).
pub fn names(set: &CapsHashSet) -> String {
    let mut names: Vec<String> = set.iter().map(|c| c.to_string()).collect();
    if names.is_empty() {
        return "none".into();
    }
    names.sort();
    names.join(" ")
}

/// Drop everything but [`KEPT`] from every set of the daemon's only thread, and set
/// `no_new_privs`. A kept capability the daemon was started without (a unit's
/// `CapabilityBoundingSet` without it) stays absent: returns what the daemon holds now.
/// Shrinking the bounding set needs `CAP_SETPCAP`, dropped last; a bounding set that still
/// holds more than [`KEPT`] without it is an error.
pub fn drop_to_kept() -> Result<CapsHashSet, PrivilegeError> {
    // capset(2) and PR_CAPBSET_DROP change the calling thread only: a thread started earlier
    // would keep everything. Threads started later inherit the reduced sets.
    let others = std::fs::read_dir("/proc/self/task")
        .map_err(PrivilegeError::Tasks)?
        .count()
        .saturating_sub(1);
    if others > 0 {
        return Err(PrivilegeError::Threads(others));
    }
    let caps_err = |what| move |cause| PrivilegeError::Caps { what, cause };
    nix::sys::prctl::set_no_new_privs().map_err(PrivilegeError::NoNewPrivs)?;
    let kept_all: CapsHashSet = KEPT.iter().copied().collect();
    let permitted = caps::read(None, CapSet::Permitted).map_err(caps_err("reading CapPrm"))?;
    let keep: CapsHashSet = kept_all.intersection(&permitted).copied().collect();

    caps::clear(None, CapSet::Ambient).map_err(caps_err("clearing the ambient set"))?;
    caps::clear(None, CapSet::Inheritable).map_err(caps_err("clearing the inheritable set"))?;
    let bounding = caps::read(None, CapSet::Bounding).map_err(caps_err("reading CapBnd"))?;
    let surplus: Vec<Capability> = bounding
        .iter()
        .filter(|c| !kept_all.contains(c))
        .copied()
        .collect();
    if !surplus.is_empty() {
        // PR_CAPBSET_DROP needs CAP_SETPCAP in the effective set.
        caps::raise(None, CapSet::Effective, Capability::CAP_SETPCAP)
            .map_err(caps_err("raising CAP_SETPCAP to shrink the bounding set"))?;
        for cap in surplus {
            caps::drop(None, CapSet::Bounding, cap)
                .map_err(caps_err("dropping from the bounding set"))?;
        }
    }
    // Effective first: it must stay a subset of permitted at every step.
    caps::set(None, CapSet::Effective, &keep).map_err(caps_err("setting CapEff"))?;
    caps::set(None, CapSet::Permitted, &keep).map_err(caps_err("setting CapPrm"))?;

    for (set, name, expected) in [
        (CapSet::Effective, "effective", &keep),
        (CapSet::Permitted, "permitted", &keep),
        (CapSet::Bounding, "bounding", &kept_all),
        (CapSet::Inheritable, "inheritable", &CapsHashSet::new()),
        (CapSet::Ambient, "ambient", &CapsHashSet::new()),
    ] {
        let actual = caps::read(None, set).map_err(caps_err("reading the sets back"))?;
        // The bounding set can only shrink: one without a kept capability is fine.
        let ok = match set {
            CapSet::Bounding => actual.is_subset(expected),
            _ => actual == *expected,
        };
        if !ok {
            return Err(PrivilegeError::Mismatch {
                set: name,
                actual: names(&actual),
                expected: names(expected),
            });
        }
    }
    Ok(keep)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kept_mask_matches_the_status_bits() {
        // CAP_SYS_PTRACE is bit 19 (linux/capability.h).
        assert_eq!(kept_mask(), 1 << 19);
        assert_eq!(names(&KEPT.iter().copied().collect()), "CAP_SYS_PTRACE");
        let two = [Capability::CAP_SYS_PTRACE, Capability::CAP_BPF];
        assert_eq!(names(&two.into_iter().collect()), "CAP_BPF CAP_SYS_PTRACE");
        assert_eq!(names(&CapsHashSet::new()), "none");
    }

    #[test]
    fn the_docs_list_exactly_the_kept_capabilities() {
        let docs = include_str!("../../../docs/daemon.md");
        let table = docs
            .split("### Privileges")
            .nth(1)
            .and_then(|s| s.split("Kept while running:").nth(1))
            .expect("docs/daemon.md has a Privileges section with the kept capabilities");
        let mut listed: Vec<&str> = table
            .lines()
            .skip_while(|l| !l.starts_with("| `CAP_"))
            .take_while(|l| l.starts_with("| `CAP_"))
            .filter_map(|l| l.split('`').nth(1))
            .collect();
        listed.sort();
        assert_eq!(
            listed.join(" "),
            names(&KEPT.iter().copied().collect()),
            "docs/daemon.md, Privileges"
        );
    }
}
