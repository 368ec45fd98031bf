//! Sub-agent chains (`P>C`): an operation is allowed only if every agent of the chain allows
//! it. Each member is judged by its own rules, outermost first; the first member that denies
//! decides (its rule, or its default deny) and is named in the event as the rule's agent. If all
//! allow, the innermost member's allow rule is reported.
//!
//! The members are visited by one `bpf_loop` whose callback holds the whole path (or address)
//! evaluation, for plain agents too (a chain of one): the verifier checks that evaluation once,
//! instead of once for the plain case and once more for chains.

use enforcer_common::*;

use crate::{identity, net_match, path_match, scratch::Scratch};

/// What the member loop found. In the per-CPU scratch, like every other decision input.
#[repr(C)]
#[derive(Clone, Copy, Default)]
pub struct ChainAcc {
    /// Path length incl. NUL for path decisions; 0 for a network decision (target in `s.rec.net`).
    pub len: u32,
    /// Non-zero once a member denied; then `rule`/`agent` are that member's.
    pub denied: u32,
    pub rule: u32,
    pub agent: u32,
    /// Some member's wildcard scan could not delimit a component (fail closed, flagged).
    pub undecidable: u32,
}

/// Mode of a chain: audit only if every member audits (an enforcing member enforces), kill if
/// any member kills, file allows logged if any member logs them.
#[inline(always)]
pub fn combined_flags(slot: u32, state: &ProcState, innermost: u32) -> u32 {
    let mut audit = innermost & AGENT_AUDIT;
    let mut rest = innermost & !AGENT_AUDIT;
    for i in 0..MAX_CHAIN - 1 {
        if i as u32 + 1 >= state.depth {
            break;
        }
        let f = identity::agent_config(slot, state.chain[i]).flags;
        audit &= f;
        rest |= f & !AGENT_AUDIT;
    }
    audit | rest
}

/// Judge the path in `s.event.target` (`len` bytes incl. NUL) by every member. Returns
/// (allowed, rule); the deciding agent is left in `s.cur.rule_agent`.
#[inline(always)]
pub fn path(s: &mut Scratch, len: usize) -> (bool, u32) {
    run(s, len as u32)
}

/// Judge the network target in `s.rec.net` by every member.
#[inline(always)]
pub fn net(s: &mut Scratch) -> (bool, u32) {
    run(s, 0)
}

#[inline(always)]
fn run(s: &mut Scratch, len: u32) -> (bool, u32) {
    vset!(s.chain, ChainAcc { len, denied: 0, rule: RULE_DEFAULT_DENY, agent: NO_AGENT, undecidable: 0 });
    let depth = vget!(s.cur.state.depth);
    // A process without a chain (a doomed, unrecorded one) has no rules: default deny.
    if depth == 0 || depth as usize > MAX_CHAIN {
        return (false, RULE_DEFAULT_DENY);
    }
    unsafe {
        aya_ebpf::helpers::generated::bpf_loop(depth, member_step as *const () as *mut _, core::ptr::null_mut(), 0)
    };
    if vget!(s.chain.undecidable) != 0 {
        vset!(s.rec.flags, vget!(s.rec.flags) | EVENT_FLAG_PATH_UNRESOLVED);
    }
    let agent = vget!(s.chain.agent);
    if agent != NO_AGENT {
        vset!(s.cur.rule_agent, agent);
    }
    (vget!(s.chain.denied) == 0 && agent != NO_AGENT, vget!(s.chain.rule))
}

/// `bpf_loop` callback: member `i` of the chain (outermost first). 1 ends the loop.
extern "C" fn member_step(i: u64, _ctx: *mut core::ffi::c_void) -> i64 {
    let Some(s) = crate::scratch::get() else { return 1 };
    let i = i as usize;
    if i >= MAX_CHAIN {
        return 1;
    }
    let agent = vget!(s.cur.state.chain[i & (MAX_CHAIN - 1)]);
    let slot = vget!(s.cur.slot);
    let rs = ruleset(slot, agent);
    let len = vget!(s.chain.len) as usize;
    let (allow, rule) = if len == 0 {
        let t = vget!(s.rec.net);
        net_match::evaluate(s, rs, &t)
    } else {
        if len > PATH_BUF_BYTES {
            return 1;
        }
        let cfg = identity::agent_config(slot, agent);
        path_match::evaluate(s, rs, cfg.wildcard_need, cfg.wildcard_list, len);
        if path_match::undecidable(s) {
            vset!(s.chain.undecidable, 1);
        }
        path_match::decide(s, vget!(s.rec.access))
    };
    vset!(s.chain.rule, rule);
    vset!(s.chain.agent, agent);
    if !allow {
        vset!(s.chain.denied, 1);
        return 1;
    }
    0
}
