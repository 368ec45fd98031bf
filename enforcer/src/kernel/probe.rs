//! What this kernel supports, decided by trying (loading and attaching, never by reading the
//! LSM list): the facts `enforcer probe` prints and backend selection relies on.

use super::{
    canary::{canary, CanaryOp},
    cgroup2_mount, loaded, lsm, offsets, LoadOptions,
};
use crate::paths;

#[derive(Clone, Debug, serde::Serialize)]
pub struct Feature {
    pub name: &'static str,
    /// `None` when usable, else why not.
    pub problem: Option<String>,
}

impl Feature {
    fn from(name: &'static str, r: Result<(), String>) -> Feature {
        Feature {
            name,
            problem: r.err(),
        }
    }
}

#[derive(Clone, Debug, serde::Serialize)]
pub struct KernelReport {
    pub kernel: String,
    pub features: Vec<Feature>,
}

impl KernelReport {
    pub fn usable(&self, name: &str) -> bool {
        self.features
            .iter()
            .any(|f| f.name == name && f.problem.is_none())
    }
}

/// Probe the running kernel. Loading programs needs root (CAP_BPF/CAP_SYS_ADMIN).
pub fn probe() -> KernelReport {
    let mut features = vec![
        Feature::from(
            "btf",
            std::fs::metadata(paths::VMLINUX_BTF)
                .map(drop)
                .map_err(|e| format!("{}: {e}", paths::VMLINUX_BTF)),
        ),
        Feature::from(
            "struct-offsets",
            offsets::read().map(drop).map_err(|e| e.to_string()),
        ),
        Feature::from(
            "cgroup2",
            cgroup2_mount().map(drop).map_err(|e| e.to_string()),
        ),
    ];
    match loaded::load_object(&LoadOptions::default(), None) {
        Err(e) => {
            let why = e.to_string();
            features.push(Feature::from("identity-tracepoints", Err(why.clone())));
            features.push(Feature::from("bpf-lsm", Err(why)));
        }
        Ok(mut ebpf) => {
            features.push(Feature::from(
                "identity-tracepoints",
                loaded::attach_identity(&mut ebpf, None, &|_| true).map_err(|e| e.to_string()),
            ));
            // Attaching with no policy loaded affects nobody; dropping `ebpf` detaches again.
            let attached = lsm::attach_lsm(&mut ebpf, None, &|_| true).map_err(|e| e.to_string());
            let runs = attached.and_then(|()| canary(&mut ebpf, CanaryOp::Open));
            features.push(Feature::from("bpf-lsm", runs));
        }
    }
    // The fallback's own parts, tried the same way (its load runs the connect canary).
    drop_lsm_then_probe_fallback(&mut features);
    KernelReport {
        kernel: super::kernel_release(),
        features,
    }
}

fn drop_lsm_then_probe_fallback(features: &mut Vec<Feature>) {
    match super::fallback::FallbackBackend::load(&LoadOptions::default(), None) {
        Ok(fb) => {
            for (name, r) in fb.features() {
                if let Some(name) = [
                    "cgroup-sock-addr",
                    "file-exec-tracepoints",
                    "file-change-tracepoints",
                ]
                .into_iter()
                .find(|n| *n == name)
                {
                    features.push(Feature::from(name, r.clone()));
                }
            }
        }
        Err(e) => {
            features.push(Feature::from("cgroup-sock-addr", Err(e.to_string())));
            features.push(Feature::from(
                "file-exec-tracepoints",
                Err(format!("fallback backend did not load: {e}")),
            ));
            features.push(Feature::from(
                "file-change-tracepoints",
                Err(format!("fallback backend did not load: {e}")),
            ));
        }
    }
}
