//! `bpf`: an agent may never call bpf(). With CAP_BPF it could otherwise get the pinned maps
//! (BPF_OBJ_GET opens no file, so file rules never see it) and edit its rules or remove itself
//! from the process table. No policy rule allows it; the event names the command in
//! `open_flags`.
//!
//! Two programs, for the hook's two shapes: `bpf(cmd, attr, size)` and, on newer kernels, a
//! fourth argument. The previous program's verdict follows the arguments, and context reads
//! need a constant offset: user space attaches the one matching this kernel's BTF.

use aya_ebpf::{macros::lsm, programs::LsmContext};
use enforcer_common::*;

use crate::{decide, identity, net_match::NetTarget, scratch};

#[lsm(hook = "bpf")]
pub fn bpf_call3(ctx: LsmContext) -> i32 {
    match try_bpf_call(&ctx, 3) {
        Ok(ret) | Err(ret) => ret,
    }
}

#[lsm(hook = "bpf")]
pub fn bpf_call4(ctx: LsmContext) -> i32 {
    match try_bpf_call(&ctx, 4) {
        Ok(ret) | Err(ret) => ret,
    }
}

#[inline(always)]
fn try_bpf_call(ctx: &LsmContext, nargs: usize) -> Result<i32, i32> {
    if super::prior_denied(ctx, nargs) {
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
