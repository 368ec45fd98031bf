//! Per-CPU working memory for one hook invocation.

use enforcer_common::{Event, NameKey, NetData, PATH_KEY_BYTES};

#[repr(C)]
pub struct VariantLookup {
    pub prefix_len: u32,
    pub ruleset_be: [u8; 4],
    pub path: [u8; PATH_KEY_BYTES + 4],
}

#[repr(C)]
pub struct NetLookup {
    pub prefix_len: u32,
    pub data: NetData,
}

#[repr(C)]
pub struct Scratch {
    /// The event being built. Its target doubles as the path LPM key: the last 8 header bytes
    /// (`target_len`, `_pad`) hold the key's prefix length and ruleset during lookups, so
    /// `bpf_d_path` writes the path once and it is both looked up and logged without a copy.
    pub event: Event,
    /// Slack after the target so masked indices and fixed-size reads stay inside the value.
    pub _slack: [u8; 64],
    pub variant: VariantLookup,
    pub name: NameKey,
    pub net: NetLookup,
    /// Unix socket path read from a sockaddr_un (108 bytes + NUL + slack).
    pub unix_path: [u8; 128],
    /// Positions of the first '/' characters of the path (component starts - 1).
    pub slashes: [u16; 20],
}

#[inline(always)]
pub fn get() -> Option<&'static mut Scratch> {
    let p = crate::maps::SCRATCH.get_ptr_mut(0)?;
    Some(unsafe { &mut *p })
}
