use anyhow::{anyhow, Context as _};

/// Builds `enforcer-ebpf` with its `verifier-probe` feature into OUT_DIR/enforcer: the object of
/// tests/tests/verifier_budget.rs, the product's programs plus the test-only tracepoints of
/// `enforcer-ebpf/src/hooks/verifier_probe.rs`, which the shipped object (enforcer/build.rs)
/// never has. Embedded in the test executables (`enforcer_tests::probe_object`), so it reaches
/// the VMs with them.
fn main() -> anyhow::Result<()> {
    let out = std::path::PathBuf::from(std::env::var_os("OUT_DIR").context("OUT_DIR")?);
    // With AYA_BUILD_SKIP=1 aya-build builds nothing: leave an empty object so the crate still
    // compiles; verifier_budget then fails saying so.
    if std::env::var_os("AYA_BUILD_SKIP").is_some_and(|v| v == "1" || v == "true") {
        let obj = out.join("enforcer");
        if !obj.exists() {
            std::fs::write(&obj, b"").context("writing placeholder eBPF object")?;
        }
    }
    let cargo_metadata::Metadata { packages, .. } = cargo_metadata::MetadataCommand::new()
        .no_deps()
        .exec()
        .context("MetadataCommand::exec")?;
    let ebpf = packages
        .into_iter()
        .find(|package| package.name.as_str() == "enforcer-ebpf")
        .ok_or_else(|| anyhow!("enforcer-ebpf package not found"))?;
    let root_dir = ebpf
        .manifest_path
        .parent()
        .ok_or_else(|| anyhow!("no parent"))?;
    aya_build::build_ebpf(
        [aya_build::Package {
            name: ebpf.name.as_str(),
            root_dir: root_dir.as_str(),
            features: &["verifier-probe"],
            ..Default::default()
        }],
        aya_build::Toolchain::default(),
    )
}
