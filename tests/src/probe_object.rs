//! The eBPF object with the test-only verifier probes (built by tests/build.rs): the shipped
//! programs plus `verifier_probe` and `verifier_probe_walk`. Only tests load it.

pub static PROBE_OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/enforcer"));
