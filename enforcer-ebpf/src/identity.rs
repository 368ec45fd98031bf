//! Which agent is the current task? `PROCS` by thread id first (the fast path: one hash lookup
//! for every process), then by thread group id (kernel-created io threads of an agent), then
//! `CGROUP_MATCH` for members of matched cgroups that have not been seen.

use aya_ebpf::helpers::{
    bpf_get_current_pid_tgid,
    generated::{bpf_get_current_cgroup_id, bpf_get_prandom_u32, bpf_ktime_get_boot_ns},
};
use enforcer_common::*;

use crate::maps::{count, AGENTS, CGROUP_MATCH, CONFIG, DOOMED, DOOMED_ANY, PROCS};

/// The current task as an agent, with the rule slot and agent config the decision uses.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct Current {
    pub tid: u32,
    pub state: ProcState,
    pub slot: u32,
    pub policy_version: u32,
    pub agent: u32,
    /// The agent whose rule decided: `agent`, or for a chain the member that denied.
    pub rule_agent: u32,
    /// The acting agent's config; for a chain, `flags` combine every member's mode.
    pub cfg: AgentConfig,
    /// `EVENT_FLAG_*` that identification itself contributes (table full, doomed).
    pub flags: u32,
    /// Set when the process just joined (an OP_JOIN event is owed).
    pub joined: u32,
    /// Non-zero: recorded nowhere (table full), deny everything.
    pub doomed: u32,
}

#[inline(always)]
pub fn config() -> Config {
    match CONFIG.get(0) {
        Some(c) => *c,
        None => Config::default(),
    }
}

#[inline(always)]
pub fn new_session(tgid: u32) -> u64 {
    let r = unsafe { bpf_get_prandom_u32() } as u64;
    let t = unsafe { bpf_ktime_get_boot_ns() };
    (r << 32) ^ (t << 20) ^ tgid as u64
}

#[inline(always)]
pub fn agent_config(slot: u32, agent: u32) -> AgentConfig {
    if agent == NO_AGENT || agent >= MAX_AGENTS {
        return AgentConfig::default();
    }
    match AGENTS.get(slot * MAX_AGENTS + agent) {
        Some(c) => *c,
        // An agent removed from the policy keeps its members: no rules, enforce mode.
        None => AgentConfig::default(),
    }
}

#[inline(always)]
pub fn for_state(tid: u32, state: ProcState, cfg0: &Config) -> Current {
    let agent = state.agent();
    let slot = cfg0.active_slot & 1;
    let mut cfg = agent_config(slot, agent);
    if state.depth > 1 {
        cfg.flags = crate::chain::combined_flags(slot, &state, cfg.flags);
    }
    Current {
        tid,
        state,
        slot,
        policy_version: cfg0.policy_version,
        agent,
        rule_agent: agent,
        cfg,
        flags: 0,
        joined: 0,
        doomed: 0,
    }
}

/// Whether the current task is an agent (or a process we could not record), without
/// recording anything: for programs that log nothing. A cgroup member first seen by such a
/// program must stay unrecorded, or the decision that follows would find it in `PROCS` and never
/// send its OP_JOIN event.
#[inline(always)]
pub fn is_agent() -> bool {
    let pid_tgid = bpf_get_current_pid_tgid();
    let tid = pid_tgid as u32;
    let tgid = (pid_tgid >> 32) as u32;
    if unsafe { PROCS.get(&tid) }.is_some()
        || (tgid != tid && unsafe { PROCS.get(&tgid) }.is_some())
    {
        return true;
    }
    let cfg0 = config();
    if cfg0.flags & CONFIG_HAVE_CGROUP_MATCH != 0 {
        let key = CgroupKey {
            cgroup_id: unsafe { bpf_get_current_cgroup_id() },
            slot: cfg0.active_slot & 1,
            _pad: 0,
        };
        if unsafe { CGROUP_MATCH.get(&key) }.is_some() {
            return true;
        }
    }
    doomed_any() && unsafe { DOOMED.get(&tid) }.is_some()
}

/// Record `state` for thread `tid`. On a full table the caller still treats the task as the
/// agent for this operation (identity came from somewhere reliable) and flags the event.
#[inline(always)]
pub fn record(tid: u32, state: &ProcState) -> bool {
    if PROCS.insert(&tid, state, 0).is_err() {
        count(STAT_PROC_TABLE_FULL);
        return false;
    }
    true
}

/// The current task's agent, or None for the (common) non-agent case.
#[inline(always)]
pub fn current() -> Option<Current> {
    let pid_tgid = bpf_get_current_pid_tgid();
    let tid = pid_tgid as u32;
    let tgid = (pid_tgid >> 32) as u32;
    let cfg0 = config();
    // A thread that no fork tracepoint saw is judged as its process: io_uring's io-wq workers
    // and SQPOLL threads (create_io_thread does not fire sched_process_fork) perform an agent's
    // opens and connects in threads of the agent's own thread group. One lookup, taken only
    // when the thread is unknown, and one for_state below (the verifier walks it once).
    let state = match unsafe { PROCS.get(&tid) } {
        Some(state) => Some(state),
        None if tgid != tid => unsafe { PROCS.get(&tgid) },
        None => None,
    };
    if let Some(state) = state {
        return Some(for_state(tid, *state, &cfg0));
    }
    if cfg0.flags & CONFIG_HAVE_CGROUP_MATCH != 0 {
        let key = CgroupKey {
            cgroup_id: unsafe { bpf_get_current_cgroup_id() },
            slot: cfg0.active_slot & 1,
            _pad: 0,
        };
        if let Some(m) = unsafe { CGROUP_MATCH.get(&key) } {
            let state = ProcState {
                session: new_session(tgid),
                session_start_ns: unsafe { bpf_ktime_get_boot_ns() },
                chain: [m.agent, 0, 0, 0],
                depth: 1,
                joined_by: JOIN_CGROUP,
            };
            let mut cur = for_state(tid, state, &cfg0);
            if !record(tid, &state) {
                cur.flags |= EVENT_FLAG_PROC_TABLE_FULL;
            }
            cur.joined = JOIN_CGROUP;
            return Some(cur);
        }
    }
    if doomed_any() && unsafe { DOOMED.get(&tid) }.is_some() {
        let state = ProcState {
            session: 0,
            session_start_ns: 0,
            chain: [0; MAX_CHAIN],
            depth: 0,
            joined_by: 0,
        };
        let mut cur = for_state(tid, state, &cfg0);
        cur.doomed = 1;
        cur.flags |= EVENT_FLAG_PROC_TABLE_FULL;
        return Some(cur);
    }
    None
}

#[inline(always)]
pub fn doomed_any() -> bool {
    matches!(DOOMED_ANY.get(0), Some(v) if *v != 0)
}

/// Identify the current task and park the result in `s.cur` for the decision code (which reads
/// it from there, keeping the 512-byte stack free and the verifier's states merged).
#[inline(always)]
pub fn park_current(s: &mut crate::scratch::Scratch) -> bool {
    match current() {
        Some(c) => {
            unsafe { core::ptr::write_volatile(&mut s.cur, c) };
            vset!(s.failed, 0);
            true
        }
        None => false,
    }
}

/// A parked Current, for code that has just parked one (exec matching).
#[inline(always)]
pub fn park(s: &mut crate::scratch::Scratch, c: Current) {
    unsafe { core::ptr::write_volatile(&mut s.cur, c) };
    vset!(s.failed, 0);
}
