//! What `enforcer --version` says: the release, the commit the binary was built from
//! (enforcer/build.rs) and the kernel layout, the identity of the embedded eBPF object that
//! pinned kernel state is checked against before a daemon adopts it (`kernel::pin`). Two
//! binaries with the same layout can take over each other's pins; the daemon's refusal for a
//! different one prints both layouts in the same form.

/// Short hash of the commit, `+dirty` if the sources differed from it, or `unknown` (built
/// without git, e.g. from a source tarball).
pub const COMMIT: &str = env!("ENFORCER_BUILD_COMMIT");

/// The kernel layout as the pin messages print it, or why there is none.
pub fn layout() -> String {
    if crate::kernel::object::available() {
        format!("{:016x}", crate::kernel::object::layout_id())
    } else {
        "none (built without the eBPF object, AYA_BUILD_SKIP=1)".into()
    }
}

/// The whole version line after the program name.
pub fn long() -> String {
    format!(
        "{} (commit {COMMIT}, kernel layout {})",
        env!("CARGO_PKG_VERSION"),
        layout()
    )
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_version_names_the_commit_and_the_layout_the_pins_use() {
        let commit = super::COMMIT;
        let hash = commit.strip_suffix("+dirty").unwrap_or(commit);
        assert!(
            commit == "unknown" || (hash.len() >= 7 && hash.bytes().all(|b| b.is_ascii_hexdigit())),
            "commit {commit:?}"
        );
        let long = super::long();
        assert!(
            long.starts_with(&format!("{} (commit {commit}, ", env!("CARGO_PKG_VERSION"))),
            "{long}"
        );
        if crate::kernel::object::available() {
            // Exactly the value the pinned state is compared with.
            let layout = crate::kernel::pin::Layout::of("any").object;
            assert!(
                long.ends_with(&format!("kernel layout {layout:016x})")),
                "{long}"
            );
        }
    }
}
