/// Rebuild the eBPF object when bpf-linker changes. The linker is only needed when this crate is
/// built for the BPF target (by aya-build, with the project's own bpf-linker on PATH, see
/// `cargo xtask`); as a host build-dependency of `enforcer` it is not.
fn main() {
    let bpf_target = std::env::var("CARGO_CFG_TARGET_ARCH").is_ok_and(|a| a == "bpf");
    match which::which("bpf-linker") {
        Ok(linker) => println!("cargo:rerun-if-changed={}", linker.display()),
        Err(e) if bpf_target => {
            panic!("bpf-linker not found on PATH ({e}): build through `cargo xtask build`")
        }
        Err(_) => {}
    }
}
