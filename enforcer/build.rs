use anyhow::{anyhow, Context as _};

/// Builds `enforcer-ebpf` for the BPF target and leaves the object in OUT_DIR, where
/// `include_bytes_aligned!` embeds it: `enforcer` is one self-contained binary.
fn main() -> anyhow::Result<()> {
    // With AYA_BUILD_SKIP=1 (pure user-space work, CI lint jobs) aya-build builds nothing; leave
    // an empty object so the crate still compiles. Loading it fails with a clear error.
    if std::env::var_os("AYA_BUILD_SKIP").is_some_and(|v| v == "1" || v == "true") {
        let out = std::path::PathBuf::from(std::env::var_os("OUT_DIR").context("OUT_DIR")?);
        let obj = out.join("enforcer");
        if !obj.exists() {
            std::fs::write(&obj, b"").context("writing placeholder eBPF object")?;
        }
    }
    let cargo_metadata::Metadata {
        packages,
        workspace_metadata,
        workspace_root,
        ..
    } = cargo_metadata::MetadataCommand::new()
        .no_deps()
        .exec()
        .context("MetadataCommand::exec")?;
    // The pinned nightly (root Cargo.toml, `[workspace.metadata.enforcer]`), which
    // `cargo xtask bootstrap` installs.
    let toolchain = workspace_metadata
        .get("enforcer")
        .and_then(|enforcer| enforcer.get("ebpf-toolchain"))
        .and_then(|name| name.as_str())
        .ok_or_else(|| {
            anyhow!("the root Cargo.toml has no [workspace.metadata.enforcer] ebpf-toolchain")
        })?
        .to_owned();
    // A new pin in the root manifest must rebuild the object with that toolchain.
    println!("cargo:rerun-if-changed={workspace_root}/Cargo.toml");
    let commit = build_commit(workspace_root.as_std_path());
    println!("cargo:rustc-env=ENFORCER_BUILD_COMMIT={commit}");
    let ebpf_package = packages
        .into_iter()
        .find(|cargo_metadata::Package { name, .. }| name.as_str() == "enforcer-ebpf")
        .ok_or_else(|| anyhow!("enforcer-ebpf package not found"))?;
    let cargo_metadata::Package {
        name,
        manifest_path,
        ..
    } = ebpf_package;
    let root_dir = manifest_path.parent().ok_or_else(|| anyhow!("no parent"))?;
    aya_build::build_ebpf(
        [aya_build::Package {
            name: name.as_str(),
            root_dir: root_dir.as_str(),
            ..Default::default()
        }],
        aya_build::Toolchain::Custom(&toolchain),
    )
}

/// The sources whose state `+dirty` describes: what the binary is built from.
const BUILT_FROM: &[&str] = &[
    "enforcer",
    "enforcer-common",
    "enforcer-ebpf",
    "Cargo.toml",
    "Cargo.lock",
];

/// The commit this build comes from, for `enforcer --version`: the short hash, `+dirty` when
/// the sources in [`BUILT_FROM`] differ from it (uncommitted or untracked files), `unknown`
/// without git or outside this project's own repository (a source tarball, which may well be
/// unpacked inside another repository: a packaging one). `ENFORCER_BUILD_COMMIT` set in the
/// environment wins (a package built from a tarball knows its commit).
fn build_commit(root: &std::path::Path) -> String {
    println!("cargo:rerun-if-env-changed=ENFORCER_BUILD_COMMIT");
    println!("cargo:rerun-if-env-changed=GIT_DIR");
    if let Some(commit) = std::env::var("ENFORCER_BUILD_COMMIT")
        .ok()
        .filter(|c| !c.trim().is_empty())
    {
        return commit.trim().to_owned();
    }
    let git = |args: &[&str]| -> Option<String> {
        let out = std::process::Command::new("git")
            .arg("-C")
            .arg(root)
            .args(args)
            .output()
            .ok()?;
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).trim().to_owned())
    };
    let ours = git(&["rev-parse", "--show-toplevel"])
        .and_then(|top| std::fs::canonicalize(top).ok())
        .zip(std::fs::canonicalize(root).ok())
        .is_some_and(|(top, root)| top == root);
    let Some(hash) = ours
        .then(|| git(&["rev-parse", "--short", "HEAD"]))
        .flatten()
    else {
        return "unknown".into();
    };
    // Rebuild when HEAD moves (checkout, commit: its reflog) and when a source changes, so
    // that the hash and the dirty mark describe what was compiled. In a worktree HEAD and the
    // index live in its own git dir, branches in the common one. Only files that exist: cargo
    // reruns a script watching a missing file on every build.
    let git_dir = git(&["rev-parse", "--git-dir"]).map(|d| root.join(d));
    let common_dir = git(&["rev-parse", "--git-common-dir"]).map(|d| root.join(d));
    let branch = git(&["symbolic-ref", "-q", "HEAD"]);
    let watched = [
        git_dir.as_ref().map(|d| d.join("HEAD")),
        git_dir.as_ref().map(|d| d.join("index")),
        git_dir.as_ref().map(|d| d.join("logs/HEAD")),
        common_dir.as_ref().map(|d| d.join("packed-refs")),
        common_dir.as_ref().zip(branch).map(|(d, b)| d.join(b)),
    ];
    for file in watched.into_iter().flatten().filter(|f| f.exists()) {
        println!("cargo:rerun-if-changed={}", file.display());
    }
    for path in BUILT_FROM {
        println!("cargo:rerun-if-changed={}", root.join(path).display());
    }
    // Without optional locks: `status` would refresh the index, changing a file watched above
    // while the script runs (and so rebuild every time).
    let mut status = vec!["--no-optional-locks", "status", "--porcelain", "--"];
    status.extend_from_slice(BUILT_FROM);
    match git(&status) {
        Some(changes) if changes.is_empty() => hash,
        Some(_) => format!("{hash}+dirty"),
        // The hash is right; whether the tree matches it is not known.
        None => hash,
    }
}
