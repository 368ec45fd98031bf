//! Sub-agent chains (`P>C`): an operation is allowed only if every agent of the chain allows
//! it. Each member is judged by its own rules, outermost first; the first member that denies
//! decides (its rule, or its default deny) and is named in the event as the rule's agent. If all
//! allow, the innermost member's allow rule is reported.
//!
//! Each member's rule lookups are a global function (`enforcer_member_path`/`_net`), called once
//! per member, for plain agents too (a chain of one). The verifier checks a global function once
//! per program, with unknown arguments, whatever state its callers are in: the lookups cost the
//! same to verify as before chains existed. (As a `bpf_loop` callback they cost 2-3x on 6.1,
//! whose precision tracking gives up at frame boundaries.) The path's byte scans do not depend
//! on the rules and run once, before the members are asked.

use enforcer_common::*;

const _: () = assert!(
    MAX_CHAIN == 4,
    "members() asks exactly four members at most"
);

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
    /// The member being judged: the index passes through memory so LLVM cannot drop the mask
    /// the verifier needs (a global function's argument is an unknown scalar).
    pub next: u32,
    pub _pad: u32,
}

/// Mode of a chain: audit only if every member audits (an enforcing member enforces), kill if
/// any member kills, file allows logged if any member logs them; an `AGENT_ALLOW_*` permission
/// (`[process]`) only if every member has it.
#[inline(always)]
pub fn combined_flags(slot: u32, state: &ProcState, innermost: u32) -> u32 {
    let all = AGENT_AUDIT | AGENT_ALLOW_MASK;
    let mut every = innermost & all;
    let mut rest = innermost & !all;
    for i in 0..MAX_CHAIN - 1 {
        if i as u32 + 1 >= state.depth {
            break;
        }
        let f = identity::agent_config(slot, state.chain[i]).flags;
        every &= f;
        rest |= f & !all;
    }
    every | rest
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
    path_match::refresh_conds(s);
    members(s, len as u32, enforcer_member_path)
}

/// Judge the network target in `s.rec.net` by every member.
#[inline(always)]
pub fn net(s: &mut Scratch) -> (bool, u32) {
    members(s, 0, enforcer_member_net)
}

/// Ask each member in turn (`judge(i)` is non-zero once member `i` denied), then the verdict.
#[inline(always)]
fn members(s: &mut Scratch, len: u32, judge: extern "C" fn(u32) -> u32) -> (bool, u32) {
    vset!(
        s.chain,
        ChainAcc {
            len,
            denied: 0,
            rule: RULE_DEFAULT_DENY,
            agent: NO_AGENT,
            undecidable: 0,
            next: 0,
            _pad: 0
        }
    );
    let depth = vget!(s.cur.state.depth);
    // A process without a chain (a doomed, unrecorded one) has no rules: default deny.
    if depth == 0 || depth as usize > MAX_CHAIN {
        return (false, RULE_DEFAULT_DENY);
    }
    // Written out (MAX_CHAIN = 4): as a loop, LLVM keeps a counter the verifier cannot bound.
    let _ = judge(0) == 0
        && depth > 1
        && judge(1) == 0
        && depth > 2
        && judge(2) == 0
        && depth > 3
        && judge(3) == 0;
    if vget!(s.chain.undecidable) != 0 {
        vset!(s.rec.flags, vget!(s.rec.flags) | EVENT_FLAG_PATH_UNRESOLVED);
    }
    let agent = vget!(s.chain.agent);
    if agent != NO_AGENT {
        vset!(s.cur.rule_agent, agent);
    }
    (
        vget!(s.chain.denied) == 0 && agent != NO_AGENT,
        vget!(s.chain.rule),
    )
}

/// `wildcard_need` and `wildcard_list` of `agent`, read in place.
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

/// The agent id of member `i` of the parked chain (`i` < MAX_CHAIN, checked by the caller).
#[inline(always)]
fn member(s: &mut Scratch, i: u32) -> u32 {
    // Through memory, so LLVM cannot drop the mask the verifier needs for the array index.
    vset!(s.chain.next, i);
    let i = vget!(s.chain.next) as usize & (MAX_CHAIN - 1);
    vget!(s.cur.state.chain[i])
}

/// Record member `agent`'s answer; non-zero once a member denied.
#[inline(always)]
fn answer(s: &mut Scratch, agent: u32, allow: bool, rule: u32) -> u32 {
    vset!(s.chain.rule, rule);
    vset!(s.chain.agent, agent);
    if !allow {
        vset!(s.chain.denied, 1);
        return 1;
    }
    0
}

/// Member `i` of the parked chain judges the path (after [`path_match::scan`]). Global (not
/// inlined, exported): verified once per program. Non-zero when the member denied.
#[no_mangle]
#[inline(never)]
pub extern "C" fn enforcer_member_path(i: u32) -> u32 {
    let Some(s) = crate::scratch::get() else {
        return 1;
    };
    if i as usize >= MAX_CHAIN {
        return 1;
    }
    let agent = member(s, i);
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

/// Member `i` of the parked chain judges the address in `s.rec.net` (see
/// [`enforcer_member_path`]).
#[no_mangle]
#[inline(never)]
pub extern "C" fn enforcer_member_net(i: u32) -> u32 {
    let Some(s) = crate::scratch::get() else {
        return 1;
    };
    if i as usize >= MAX_CHAIN {
        return 1;
    }
    let agent = member(s, i);
    let t = vget!(s.rec.net);
    let (allow, rule) = net_match::evaluate(s, ruleset(vget!(s.cur.slot), agent), &t);
    answer(s, agent, allow, rule)
}
