//! `bpf`: an agent may never call bpf(). With CAP_BPF it could otherwise get the pinned maps
//! (BPF_OBJ_GET opens no file, so file rules never see it) and edit its rules or remove itself
//! from the process table. No policy rule allows it; the event names the command in
//! `open_flags`.

use aya_ebpf::{macros::lsm, programs::LsmContext};
use enforcer_common::*;

use crate::{decide, identity, net_match::NetTarget, offsets::get as off, scratch};

#[lsm(hook = "bpf")]
pub fn bpf_call(ctx: LsmContext) -> i32 {
    match try_bpf_call(&ctx) {
        Ok(ret) | Err(ret) => ret,
    }
}

#[inline(always)]
fn try_bpf_call(ctx: &LsmContext) -> Result<i32, i32> {
    // The hook's argument count comes from this kernel's BTF (newer kernels added one).
    // (Context reads need constant offsets: one branch per known count.)
    let prior: i32 = if off::LSM_BPF_NARGS() == 4 { ctx.arg(4) } else { ctx.arg(3) };
    if prior != 0 {
        return Ok(decide::ret_code(true));
    }
    let s = scratch::get().ok_or_else(|| decide::ret_code(true))?;
    if !identity::park_current(s) {
        return Ok(0);
    }
    let cmd: i32 = ctx.arg(0);
    decide::begin(s, OP_BPF, 0, cmd as u32, 0, NetTarget::default());
    Ok(decide::finish(s, false, RULE_DEFAULT_DENY))
}
