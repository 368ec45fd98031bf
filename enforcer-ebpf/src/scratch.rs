//! Per-CPU working memory for one hook invocation.

use enforcer_common::{Event, NameKey, NetData, PATH_KEY_BYTES};

/// Wildcard-variant key. Twice the key size: the verifier bounds a copy by the largest offset plus
/// the largest size, not by their sum at run time.
#[repr(C)]
pub struct VariantLookup {
    pub prefix_len: u32,
    pub ruleset_be: [u8; 4],
    pub path: [u8; 2 * PATH_KEY_BYTES + 8],
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
    /// Slack after the target: a bounded copy from a masked offset may run this far past it.
    pub _slack: [u8; 320],
    pub variant: VariantLookup,
    pub name: NameKey,
    pub net: NetLookup,
    /// Unix socket path read from a sockaddr_un (108 bytes + NUL + slack), how many bytes of it
    /// count, and whether it is an abstract name (the copy loop's inputs, see hooks/net.rs).
    pub unix_path: [u8; 128],
    pub unix_n: u32,
    pub unix_abstract: u32,
    /// Positions of the first '/' characters of the path (component starts - 1).
    pub slashes: [u16; 20],
    /// Basename start and dot positions. Kept in map memory (volatile) rather than registers:
    /// the verifier then sees bounded unknowns instead of one state per combination.
    pub bstart: u32,
    pub dots: [u32; 4],
    pub ndots: u32,
    /// The last NAME_KEY_BYTES + 1 bytes of the path, right-aligned (TAIL - 1 is the byte before
    /// the NUL), so the basename scan uses constant indices.
    pub tail: [u8; 128],
    /// The wildcard scan met the path's NUL inside the key window.
    pub hit_nul: u32,
    /// Passes an offset through memory so LLVM cannot fold away the mask the verifier needs.
    pub offset: u32,
    /// Index of the path's NUL, re-read per wildcard depth (see lookup_wildcards).
    pub nulpos: u32,
    /// Slashes found so far and slashes needed (wildcard scan).
    pub nslash: u32,
    pub need: u32,
    /// The decision's inputs, parked here at the start of a path decision so that every way
    /// into it (identity paths, access kinds) reaches one verifier state.
    pub cur: crate::identity::Current,
    pub rec: crate::emit::Record,
    /// What the path candidates said (see path_match::Acc). In map memory for the same reason.
    pub acc: crate::path_match::Acc,
    /// What the chain's members said (chain.rs).
    pub chain: crate::chain::ChainAcc,
    /// A path string copied from user memory by the fallback's syscall tracepoint, with room for
    /// a copy of constant size from a masked offset.
    pub user_path: [u8; 2 * crate::hooks::observe_syscalls::USER_PATH_BYTES],
    /// Set by the unnormalized-path scan (observe_syscalls.rs), and where it starts.
    pub unnormal: u32,
    pub scan_skip: u32,
    /// The syscall path decision's inputs, parked (observe_syscalls.rs): the directory fd, the
    /// op, the built path's length (or error).
    pub path_dfd: i64,
    pub path_op: u32,
    pub path_len: i64,
    /// bpf_d_path's length after `decide::strip_deleted` (parked, so both of its outcomes reach
    /// the decision as one verifier state).
    pub cut_len: i64,
    /// The held-object scan's inputs and result (pathless.rs): the descriptor array, how many
    /// to look at, the one to skip, the inode looked for, whether it was found.
    pub held_fds: u64,
    pub held_n: u32,
    pub held_skip: u32,
    pub held_inode: u64,
    pub held_found: u32,
    pub _held_pad: u32,
    /// Which conditions (`CONDS`) of the decision's slot are open now, bit `c` for condition
    /// `c`, filled once per path decision (path_match::refresh_conds); the count of conditions
    /// and the boot-clock instant they were judged at.
    pub conds_open: [u32; 8],
    pub ncond: u32,
    /// Non-zero once something inside the program failed during this decision (`decide::fail`):
    /// the decision denies. Reset when the agent is parked (identity.rs).
    pub failed: u32,
    pub now_ns: u64,
    /// The sendmmsg scan's inputs and findings (observe_syscalls.rs).
    pub mmsg: crate::hooks::observe_syscalls::MmsgScan,
    /// The dentry walk's buffer and state (dentry_path.rs).
    pub walk: crate::dentry_path::Walk,
}

#[inline(always)]
pub fn get() -> Option<&'static mut Scratch> {
    let p = crate::maps::SCRATCH.get_ptr_mut(0)?;
    Some(unsafe { &mut *p })
}
