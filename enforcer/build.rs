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
