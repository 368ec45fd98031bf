//! Getting a kernel backend, or a loud, checked "not here".

use enforcer::kernel::{lsm::LsmBackend, KernelError, LoadOptions};

/// `host`, `6.1`, `6.12`... set by `cargo xtask test` (ENFORCER_KERNEL).
pub fn kernel_label() -> String {
    std::env::var("ENFORCER_KERNEL").unwrap_or_else(|_| "host".into())
}

/// The VM kernels are booted with `bpf` in `lsm=` (there BPF LSM must work), except the
/// `-nolsm` boot, where LSM programs attach but never run.
fn lsm_expected() -> bool {
    let k = kernel_label();
    k != "host" && !k.ends_with("-nolsm")
}

/// A kernel booted without `bpf` in `lsm=`.
pub fn lsm_inert() -> bool {
    kernel_label().ends_with("-nolsm")
}

/// Load the BPF LSM backend, or, where this kernel cannot run BPF LSM, check that the failure is
/// exactly that (the LSM program's load/attach was refused), print the n/a line and return None.
pub fn lsm_or_na(test: &str) -> Option<LsmBackend> {
    crate::require_root();
    match LsmBackend::load(&LoadOptions::default()) {
        Ok(b) => Some(b),
        Err(e) if !lsm_expected() => {
            match &e {
                // Without `bpf` in lsm= the programs attach; the canary proves they never run.
                KernelError::Unsupported(why) if lsm_inert() => {
                    assert!(why.contains("attach but do not run"), "the canary must be what refuses BPF LSM here: {e}");
                }
                KernelError::Attach { program, reason } if !lsm_inert() => {
                    assert_eq!(program, "file_open", "the first LSM program should be the one refused: {e}");
                    assert!(!reason.is_empty(), "the refusal must carry the kernel's reason");
                }
                other => panic!("BPF LSM failed for a reason other than the kernel refusing LSM programs: {other}"),
            }
            crate::not_applicable(test, &format!("BPF LSM unusable on this kernel: {e}"));
            None
        }
        Err(e) => panic!("BPF LSM must load on kernel {}: {e}", kernel_label()),
    }
}

/// Load the fallback backend (cgroup socket hooks + tracepoints). It must load on every kernel of
/// the matrix (host, 6.1, 6.12): nothing here is n/a.
pub fn fallback(test: &str) -> enforcer::kernel::fallback::FallbackBackend {
    crate::require_root();
    match enforcer::kernel::fallback::FallbackBackend::load(&LoadOptions::default(), None) {
        Ok(b) => {
            // Every part must be there: a test that passes because a hook group silently failed
            // to attach would prove nothing.
            for (name, r) in b.features() {
                if let Err(why) = r {
                    assert!(
                        name == "bpf-lsm" || name == "optional-syscalls",
                        "{test}: fallback feature {name} is unavailable on kernel {}: {why}",
                        kernel_label()
                    );
                }
            }
            println!("{test}: fallback backend loaded on kernel {}", kernel_label());
            b
        }
        Err(e) => panic!("{test}: the fallback backend must load on kernel {}: {e}", kernel_label()),
    }
}
