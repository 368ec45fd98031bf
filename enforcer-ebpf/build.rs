use which::which;

/// bpf-linker is found on PATH (the xtask bootstrap puts the project's own build there). Telling
/// cargo about it rebuilds the eBPF object when the linker changes.
fn main() {
    let bpf_linker = which("bpf-linker").expect(
        "bpf-linker not found on PATH: run the build through `cargo xtask build` (it installs one)",
    );
    println!("cargo:rerun-if-changed={}", bpf_linker.display());
}
