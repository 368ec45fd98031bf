//! The eBPF object, embedded at build time (enforcer/build.rs): one self-contained binary.

pub static EBPF_OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/enforcer"));

/// Empty when built with AYA_BUILD_SKIP=1 (pure user-space builds).
pub fn available() -> bool {
    !EBPF_OBJECT.is_empty()
}

/// Identity of the embedded object (FNV-1a 64 of its bytes): pinned kernel state is adopted only
/// by a binary carrying exactly the object that installed it (see `pin.rs`).
pub fn layout_id() -> u64 {
    EBPF_OBJECT.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, &b| (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)).max(1)
}
