//! The decision record the kernel writes to the `EVENTS` ring buffer.
//!
//! The kernel builds an `Event` in a per-CPU scratch buffer and outputs `EVENT_HEADER_BYTES +
//! target_len` bytes of it (`bpf_ringbuf_output` takes a bounded, variable size), so a short path
//! costs a short record. User space decodes with [`EventHeader::parse`].

use crate::abi::*;

/// Bytes reserved for the target (path, or unix socket path) in the scratch event.
pub const EVENT_TARGET_BYTES: usize = PATH_BUF_BYTES;

#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct EventHeader {
    /// `bpf_ktime_get_boot_ns()`; user space converts it to wall-clock time.
    pub ts_boot_ns: u64,
    pub session: u64,
    /// Agent chain of the process (outermost first), `depth` entries valid.
    pub chain: [u32; MAX_CHAIN],
    pub depth: u32,
    /// Agent whose rule decided (for chains: the agent that denied).
    pub rule_agent: u32,
    pub policy_version: u32,
    /// Thread id and process id (kernel's pid and tgid).
    pub pid: u32,
    pub tgid: u32,
    pub ppid: u32,
    pub uid: u32,
    /// CPU the decision ran on (loss counters are per CPU).
    pub cpu: u32,
    /// `OP_*`.
    pub op: u32,
    /// `VERDICT_*`.
    pub verdict: u32,
    /// Deciding rule id (index into the compiled rule table; 0 = default deny).
    pub rule: u32,
    /// `EVENT_FLAG_*`.
    pub flags: u32,
    /// Requested access (`ACCESS_*` bits); for opens also the raw open flags below.
    pub access: u32,
    /// `file->f_flags` for opens, mode for chmod/mkdir, 0 otherwise.
    pub open_flags: u32,
    /// Network target: family (`AF_*`), port (host order), protocol (`PROTO_*`), address (IPv6
    /// or IPv4-mapped).
    pub net_family: u16,
    pub net_port: u16,
    pub net_proto: u32,
    pub net_addr: [u8; 16],
    pub comm: [u8; 16],
    /// Bytes of target that follow the header (no NUL). While the kernel looks a path up, this
    /// and `_pad` hold the LPM key's prefix length and ruleset (see enforcer-ebpf's scratch.rs):
    /// they must stay the last 8 bytes of the header.
    pub target_len: u32,
    pub _pad: u32,
}

pub const EVENT_HEADER_BYTES: usize = size_of::<EventHeader>();

/// The kernel-side scratch record. Only `EVENT_HEADER_BYTES + header.target_len` bytes are sent.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct Event {
    pub header: EventHeader,
    pub target: [u8; EVENT_TARGET_BYTES],
}

impl EventHeader {
    /// Decode a ring-buffer record: the header and the target bytes that follow it. Returns
    /// `None` for a record too short for its header or its declared target (never panics).
    pub fn parse(bytes: &[u8]) -> Option<(EventHeader, &[u8])> {
        if bytes.len() < EVENT_HEADER_BYTES {
            return None;
        }
        // SAFETY: EventHeader is repr(C), padding-free, valid for any bit pattern; the length was
        // checked and read_unaligned has no alignment requirement.
        let header: EventHeader =
            unsafe { core::ptr::read_unaligned(bytes.as_ptr() as *const EventHeader) };
        let len = header.target_len as usize;
        if len > EVENT_TARGET_BYTES {
            return None;
        }
        let target = bytes.get(EVENT_HEADER_BYTES..EVENT_HEADER_BYTES + len)?;
        Some((header, target))
    }
}

#[cfg(feature = "user")]
unsafe impl aya::Pod for EventHeader {}

// No implicit padding anywhere, and the lookup-key overlay needs target_len/_pad last.
const _: () = assert!(EVENT_HEADER_BYTES == 136);
const _: () = assert!(core::mem::offset_of!(EventHeader, target_len) == EVENT_HEADER_BYTES - 8);
const _: () = assert!(core::mem::offset_of!(Event, target) == EVENT_HEADER_BYTES);

// The layout both sides compile against: a changed size is a changed kernel/user contract
// (and the object's layout id, `enforcer::kernel::object::layout_id`, changes with it).
const _: () = assert!(size_of::<EventHeader>() == 136);
const _: () = assert!(size_of::<Event>() == 4232);
