#![no_std]
#![no_main]

use aya_ebpf::{cty::c_int, macros::{lsm, map}, maps::HashMap, programs::LsmContext};
use enforcer_common::ProcState;

#[map(name = "PROCS")]
static PROCS: HashMap<u32, ProcState> = HashMap::with_max_entries(1024, 0);

#[lsm(hook = "file_open")]
pub fn file_open(ctx: LsmContext) -> i32 {
    match try_file_open(&ctx) {
        Ok(ret) | Err(ret) => ret,
    }
}

fn try_file_open(_ctx: &LsmContext) -> Result<i32, i32> {
    let tid = aya_ebpf::helpers::bpf_get_current_pid_tgid() as u32;
    if unsafe { PROCS.get(&tid) }.is_some() {
        return Err(-1 as c_int);
    }
    Ok(0)
}

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}

#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 13] = *b"Dual MIT/GPL\0";
