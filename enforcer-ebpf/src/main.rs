//! enforcer's eBPF programs. See docs/kernel-maps.md for the matching algorithm and
//! enforcer-common for every type shared with user space.
#![no_std]
#![no_main]
// aya-ebpf's map methods take `impl Borrow<K>`/`impl Borrow<V>`, and clippy asks for values
// instead of `&key`. A value is moved into a copy on the 512-byte BPF stack; the reference is
// not. Measured on this object: dropping the `&`s changed the code of 28 programs and grew
// sched_process_fork by 70 instructions. Keeping the references keeps the object the kernels'
// verifiers accepted (verifier_budget, 6.1 being the tightest).
#![allow(clippy::needless_borrows_for_generic_args)]

#[macro_use]
mod macros;

mod chain;
mod decide;
mod dentry_path;
mod emit;
mod hooks;
mod identity;
mod kmem;
mod maps;
mod net_match;
mod offsets;
mod path_match;
mod pathless;
mod process;
mod scratch;

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo<'_>) -> ! {
    loop {}
}

#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 13] = *b"Dual MIT/GPL\0";
