//! Process identity across fork, exec and exit (tracepoints: these work on every kernel, so both
//! backends share them). Entries are per thread; the exit tracepoint removes them before the pid
//! can be reused.

use aya_ebpf::{
    helpers::bpf_get_current_pid_tgid, macros::tracepoint, programs::TracePointContext,
};
use enforcer_common::*;

use crate::{
    decide, emit, identity,
    maps::{count, DOOMED, DOOMED_ANY, PROCS},
    net_match::NetTarget,
    offsets::get as off,
    scratch,
};

#[tracepoint(category = "sched", name = "sched_process_fork")]
pub fn sched_process_fork(ctx: TracePointContext) -> u32 {
    match try_sched_process_fork(&ctx) {
        Ok(ret) | Err(ret) => ret,
    }
}

/// Runs in the parent. The child inherits the parent's agent chain and session.
#[inline(always)]
fn try_sched_process_fork(ctx: &TracePointContext) -> Result<u32, u32> {
    let child = unsafe { ctx.read_at::<i32>(off::TP_FORK_CHILD_PID()) }.map_err(|_| 0u32)? as u32;
    let parent = bpf_get_current_pid_tgid() as u32;
    // `current()` also records a parent that so far was only known by its cgroup, so the child
    // stays the agent even if it leaves that cgroup.
    let Some(cur) = identity::current() else {
        return Ok(0);
    };
    if cur.doomed != 0 {
        doom(child);
        return Ok(0);
    }
    if cur.joined != 0 {
        // The parent just became an agent (its cgroup matched) at this fork, not at a decision:
        // log the join here, or no event would ever say how it joined.
        if let Some(s) = scratch::get() {
            identity::park(s, cur);
            decide::begin(s, OP_JOIN, 0, 0, 0, NetTarget::default());
            emit::emit(s, OP_JOIN, VERDICT_ALLOW, 0, cur.joined);
        }
    }
    if PROCS.insert(&child, &cur.state, 0).is_err() {
        // Fail closed: a child we cannot record is denied everything until it exits.
        count(STAT_PROC_TABLE_FULL);
        doom(child);
    }
    let _ = parent;
    Ok(0)
}

#[inline(always)]
fn doom(tid: u32) {
    let _ = DOOMED.insert(&tid, &1, 0);
    if let Some(p) = DOOMED_ANY.get_ptr_mut(0) {
        unsafe { *p = 1 };
    }
}

#[tracepoint(category = "sched", name = "sched_process_exit")]
pub fn sched_process_exit(_ctx: TracePointContext) -> u32 {
    let tid = bpf_get_current_pid_tgid() as u32;
    let _ = PROCS.remove(&tid);
    if identity::doomed_any() {
        let _ = DOOMED.remove(&tid);
    }
    0
}

#[tracepoint(category = "sched", name = "sched_process_exec")]
pub fn sched_process_exec(ctx: TracePointContext) -> u32 {
    match try_sched_process_exec(&ctx) {
        Ok(ret) | Err(ret) => ret,
    }
}

/// A non-leader thread that execs takes over the thread-group leader's pid: move its entry.
#[inline(always)]
fn try_sched_process_exec(ctx: &TracePointContext) -> Result<u32, u32> {
    let tid = bpf_get_current_pid_tgid() as u32;
    let old = unsafe { ctx.read_at::<i32>(off::TP_EXEC_OLD_PID()) }.map_err(|_| 0u32)? as u32;
    if old == tid {
        return Ok(0);
    }
    if let Some(state) = unsafe { PROCS.get(&old) } {
        let state = *state;
        if PROCS.insert(&tid, &state, 0).is_err() {
            count(STAT_PROC_TABLE_FULL);
            doom(tid);
        }
        let _ = PROCS.remove(&old);
    }
    Ok(0)
}
