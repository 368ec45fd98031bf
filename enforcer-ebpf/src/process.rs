//! Which processes an agent may control (ptrace attach, `/proc/<pid>/mem`, process_vm_readv and
//! writev, pidfd_getfd, PTRACE_TRACEME), shared by the LSM hooks (hooks/process_access.rs) and
//! the fallback's syscall tracepoint (hooks/observe_process.rs).
//!
//! The rule (docs/policy.md, "Processes"): a tracer may control a tracee only if the tracee is
//! confined at least as tightly as the tracer, so the access gains the tracer nothing: the
//! tracee's agent chain starts with the tracer's whole chain, and it is the same `enforcer run`
//! session or a sub-agent deeper in the chain. An agent's own children (same session) and the
//! sub-agents it started qualify; its launching shell, the user's editor, another session's agent
//! and the daemon do not. A tracer that is not an agent is not decided here.

use enforcer_common::*;

use crate::{maps::PROCS, scratch::Scratch};

/// The agent state of the task with thread id `tid` in thread group `tgid` (threads the fork
/// tracepoint never saw are known by their group, like identity.rs does).
#[inline(always)]
pub fn state_of(tid: u32, tgid: u32) -> Option<ProcState> {
    if let Some(s) = unsafe { PROCS.get(&tid) } {
        return Some(*s);
    }
    unsafe { PROCS.get(&tgid) }.copied()
}

/// May `tracer` control `tracee`? (See the module comment.)
#[inline(always)]
pub fn may_control(tracer: &ProcState, tracee: &ProcState) -> bool {
    let depth = tracer.depth;
    if depth == 0 || depth as usize > MAX_CHAIN || tracee.depth < depth {
        return false;
    }
    // Constant indices (the verifier keeps their bounds).
    for i in 0..MAX_CHAIN {
        if (i as u32) < depth && tracer.chain[i] != tracee.chain[i] {
            return false;
        }
    }
    tracee.session == tracer.session || tracee.depth > depth
}

/// Write `<tgid> (<comm>)` (or `<tgid>` when `comm` is empty) into `s.event.target`; returns its length (no NUL). The target
/// process as `ps` names it: the event says which process the agent reached for.
#[inline(always)]
pub fn target_text(s: &mut Scratch, tgid: u32, comm: &[u8; 16]) -> usize {
    let mut digits = 1usize;
    let mut v = tgid;
    while v >= 10 && digits < 10 {
        v /= 10;
        digits += 1;
    }
    let t = &mut s.event.target;
    let mut v = tgid;
    for i in 0..10usize {
        if i < digits {
            t[(digits - 1 - i) & 15] = b'0' + (v % 10) as u8;
            v /= 10;
        }
    }
    let mut n = digits & 15;
    if comm[0] == 0 {
        return n; // the fallback knows only the pid
    }
    t[n] = b' ';
    t[n + 1] = b'(';
    n += 2;
    for (i, c) in comm.iter().enumerate() {
        if *c == 0 {
            break;
        }
        t[(n + i) & 31] = *c;
        if i == 15 {
            break;
        }
    }
    let mut len = n;
    for c in comm.iter() {
        if *c == 0 {
            break;
        }
        len += 1;
    }
    t[len & 31] = b')';
    len + 1
}
