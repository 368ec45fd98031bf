//! The eBPF object, embedded at build time (enforcer/build.rs): one self-contained binary.

pub static EBPF_OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/enforcer"));

/// Empty when built with AYA_BUILD_SKIP=1 (pure user-space builds).
pub fn available() -> bool {
    !EBPF_OBJECT.is_empty()
}
