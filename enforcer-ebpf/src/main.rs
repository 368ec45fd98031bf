//! enforcer's eBPF programs. See docs/kernel-maps.md for the matching algorithm and
//! enforcer-common for every type shared with user space.
#![no_std]
#![no_main]

#[macro_use]
mod macros;

mod chain;
mod decide;
mod dentry_path;
mod emit;
mod hooks;
mod identity;
mod maps;
mod net_match;
mod offsets;
mod path_match;
mod scratch;

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}

#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 13] = *b"Dual MIT/GPL\0";
