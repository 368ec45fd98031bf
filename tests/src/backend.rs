//! Getting a kernel backend, or a loud, checked "not here".

use enforcer::kernel::{lsm::LsmBackend, LoadOptions};

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
        Err(e) => {
            check_lsm_refusal(&e.to_string());
            crate::not_applicable(test, &format!("BPF LSM unusable on this kernel: {e}"));
            None
        }
    }
}

/// `why` BPF LSM could not be used (a load's error, or the reason a daemon gives for choosing
/// the fallback) must be exactly this kernel's known limitation, not some other failure.
fn check_lsm_refusal(why: &str) {
    let kernel = kernel_label();
    assert!(
        !lsm_expected(),
        "BPF LSM must load on kernel {kernel}: {why}"
    );
    if lsm_inert() {
        // Without `bpf` in lsm= the programs attach; the canary proves they never run.
        assert!(
            why.contains("attach but do not run"),
            "the canary must be what refuses BPF LSM here: {why}"
        );
    } else {
        // `KernelError::Attach` of the first LSM program, with the kernel's reason after it.
        let reason = why.strip_prefix("attaching file_open: ");
        assert!(
            reason.is_some_and(|r| !r.is_empty()),
            "BPF LSM failed for a reason other than the kernel refusing the first LSM program (file_open): {why}"
        );
    }
}

/// The backend a daemon started with `--backend auto` chose.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DaemonBackend {
    Lsm,
    Fallback,
}

impl DaemonBackend {
    /// The `--backend` value.
    pub fn name(self) -> &'static str {
        match self {
            DaemonBackend::Lsm => "lsm",
            DaemonBackend::Fallback => "fallback",
        }
    }

    /// Check a daemon's choice: BPF LSM wherever it must work; elsewhere the fallback, for the
    /// reason `lsm_refusal` (the daemon's `bpf-lsm` feature), which must be this kernel's known
    /// limitation (the checks of [`lsm_or_na`], without loading BPF LSM a second time).
    pub fn checked(test: &str, backend: &str, lsm_refusal: Option<&str>) -> DaemonBackend {
        let chosen = match backend {
            "lsm" => DaemonBackend::Lsm,
            "fallback" => {
                check_lsm_refusal(lsm_refusal.unwrap_or_else(|| panic!("{test}: the daemon chose the fallback without saying why BPF LSM was not used")));
                DaemonBackend::Fallback
            }
            other => panic!("{test}: the daemon reports an unknown backend {other:?}"),
        };
        println!(
            "{test}: the daemon chose the {backend} backend on kernel {}",
            kernel_label()
        );
        chosen
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
                        name == "bpf-lsm"
                            || name == "optional-syscalls"
                            || name == "io-uring-ops"
                            || name == "process-ops"
                            // What the launcher's seccomp filter covers (said on every
                            // fallback; tests/tests/adversarial_abi.rs checks it).
                            || name == "compat-syscalls"
                            || name == "shared-descriptors"
                            // What the Landlock envelope can do here (a partial ABI on older
                            // kernels): said in status; tests/tests/fallback_landlock.rs checks it.
                            || name == "landlock-envelope",
                        "{test}: fallback feature {name} is unavailable on kernel {}: {why}",
                        kernel_label()
                    );
                }
            }
            println!(
                "{test}: fallback backend loaded on kernel {}",
                kernel_label()
            );
            b
        }
        Err(e) => panic!(
            "{test}: the fallback backend must load on kernel {}: {e}",
            kernel_label()
        ),
    }
}
