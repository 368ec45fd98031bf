//! Reads of kernel memory at offsets user space found in the running kernel's BTF
//! (offsets.rs). `None` when the read faults: every caller decides what that means (most fail
//! closed, docs/kernel-maps.md "Failure points").

use aya_ebpf::helpers::bpf_probe_read_kernel;

/// A `T` at `p` in kernel memory.
#[inline(always)]
pub fn read<T>(p: *const u8) -> Option<T> {
    unsafe { bpf_probe_read_kernel(p as *const T) }.ok()
}
