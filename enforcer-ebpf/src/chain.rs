//! Sub-agent chains (`P>C`): an operation is allowed only if every agent of the chain allows
//! it. Each member is judged by its own rules, outermost first; the first member that denies
//! decides (its rule, or its default deny) and is named in the event as the rule's agent. If all
//! allow, the innermost member's allow rule is reported.
//!
//! The members are visited by one `bpf_loop` whose callback holds the rule lookups, for plain
//! agents too (a chain of one): the verifier checks them once, instead of once for the plain
//! case and once more for chains. The path's byte scans (themselves `bpf_loop`s) run once
//! before the loop: callbacks nested in callbacks multiply the 6.1 verifier's work.

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
    // The byte scans do not depend on the rules: once, for the member that needs the most
    // slashes; each member then only looks its rules up.
    let slot = vget!(s.cur.slot);
    let depth = vget!(s.cur.state.depth) as usize;
    let mut need = 0;
    for i in 0..MAX_CHAIN {
        if i >= depth {
            break;
        }
        let n = member_config(slot, vget!(s.cur.state.chain[i])).0;
        if n > need {
            need = n;
        }
    }
    path_match::scan(s, need, len);
    run(s, len as u32, path_step as *const ())
}

/// `wildcard_need` and `wildcard_list` of `agent`, read in place (a copy of the whole config
/// would cost the callback's frame 32 bytes of the 512 it shares with the hook).
#[inline(always)]
fn member_config(slot: u32, agent: u32) -> (u32, [u8; 4]) {
    if agent >= MAX_AGENTS {
        return (0, [0; 4]);
    }
    match crate::maps::AGENTS.get(slot * MAX_AGENTS + agent) {
        Some(c) => (c.wildcard_need, c.wildcard_list),
        None => (0, [0; 4]),
    }
}

/// Judge the network target in `s.rec.net` by every member.
#[inline(always)]
pub fn net(s: &mut Scratch) -> (bool, u32) {
    run(s, 0, net_step as *const ())
}

/// One callback per kind of target: a program that only decides paths never has the address
/// evaluation verified, and the reverse.
#[inline(always)]
fn run(s: &mut Scratch, len: u32, step: *const ()) -> (bool, u32) {
    vset!(s.chain, ChainAcc { len, denied: 0, rule: RULE_DEFAULT_DENY, agent: NO_AGENT, undecidable: 0 });
    let depth = vget!(s.cur.state.depth);
    // A process without a chain (a doomed, unrecorded one) has no rules: default deny.
    if depth == 0 || depth as usize > MAX_CHAIN {
        return (false, RULE_DEFAULT_DENY);
    }
    unsafe { aya_ebpf::helpers::generated::bpf_loop(depth, step as *mut _, core::ptr::null_mut(), 0) };
    if vget!(s.chain.undecidable) != 0 {
        vset!(s.rec.flags, vget!(s.rec.flags) | EVENT_FLAG_PATH_UNRESOLVED);
    }
    let agent = vget!(s.chain.agent);
    if agent != NO_AGENT {
        vset!(s.cur.rule_agent, agent);
    }
    (vget!(s.chain.denied) == 0 && agent != NO_AGENT, vget!(s.chain.rule))
}

/// The agent id of member `i` (outermost first), or None past the chain.
#[inline(always)]
fn member(s: &Scratch, i: u64) -> Option<u32> {
    let i = i as usize;
    if i >= MAX_CHAIN {
        return None;
    }
    Some(vget!(s.cur.state.chain[i & (MAX_CHAIN - 1)]))
}

/// Record member `agent`'s answer; 1 (stop) once a member denied.
#[inline(always)]
fn answer(s: &mut Scratch, agent: u32, allow: bool, rule: u32) -> i64 {
    vset!(s.chain.rule, rule);
    vset!(s.chain.agent, agent);
    if !allow {
        vset!(s.chain.denied, 1);
        return 1;
    }
    0
}

/// `bpf_loop` callback: member `i` judges the path. 1 ends the loop.
extern "C" fn path_step(i: u64, _ctx: *mut core::ffi::c_void) -> i64 {
    let Some(s) = crate::scratch::get() else { return 1 };
    let Some(agent) = member(s, i) else { return 1 };
    let len = vget!(s.chain.len) as usize;
    if len == 0 || len > PATH_BUF_BYTES {
        return 1;
    }
    let slot = vget!(s.cur.slot);
    let list = member_config(slot, agent).1;
    path_match::lookups(s, ruleset(slot, agent), list, len);
    if path_match::undecidable(s) {
        vset!(s.chain.undecidable, 1);
    }
    let (allow, rule) = path_match::decide(s, vget!(s.rec.access));
    answer(s, agent, allow, rule)
}

/// `bpf_loop` callback: member `i` judges the address in `s.rec.net`. 1 ends the loop.
extern "C" fn net_step(i: u64, _ctx: *mut core::ffi::c_void) -> i64 {
    let Some(s) = crate::scratch::get() else { return 1 };
    let Some(agent) = member(s, i) else { return 1 };
    let t = vget!(s.rec.net);
    let (allow, rule) = net_match::evaluate(s, ruleset(vget!(s.cur.slot), agent), &t);
    answer(s, agent, allow, rule)
}
