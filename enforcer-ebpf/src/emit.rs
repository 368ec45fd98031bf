//! Writing decision records to the `EVENTS` ring buffer. A failed output is counted per agent in
//! `LOSSES` (per CPU): user space writes those counts into the audit log, so nothing is lost
//! silently.

use aya_ebpf::helpers::{
    bpf_get_current_comm, bpf_get_current_pid_tgid, bpf_get_current_uid_gid, bpf_probe_read_kernel,
    generated::{bpf_get_current_task, bpf_get_smp_processor_id, bpf_ktime_get_boot_ns},
};
use enforcer_common::*;

use crate::{
    maps::{count, EVENTS, LOSSES},
    net_match::NetTarget,
    offsets::get as off,
    scratch::Scratch,
};

/// Parent's tgid, walked from the current task with offsets taken from this kernel's BTF.
#[inline(always)]
fn ppid() -> u32 {
    unsafe {
        let task = bpf_get_current_task() as *const u8;
        let parent: *const u8 = match bpf_probe_read_kernel(
            task.add(off::OFF_TASK_REAL_PARENT()) as *const *const u8
        ) {
            Ok(p) => p,
            Err(_) => return 0,
        };
        bpf_probe_read_kernel(parent.add(off::OFF_TASK_TGID()) as *const u32).unwrap_or(0)
    }
}

#[repr(C)]
#[derive(Clone, Copy)]
pub struct Record {
    pub op: u32,
    pub verdict: u32,
    pub rule: u32,
    pub flags: u32,
    pub access: u32,
    pub open_flags: u32,
    /// Bytes of `s.event.target` to send (no NUL).
    pub target_len: usize,
    pub net: NetTarget,
}

/// Send one record built from `s.cur` (the agent), `s.rec` (target length, flags, open flags,
/// network target) and the arguments. The target bytes must already be in `s.event.target`.
/// Overwrites the header, including the LPM key overlay: do all lookups first.
#[inline(always)]
pub fn emit(s: &mut Scratch, op: u32, verdict: u32, rule: u32, access: u32) {
    let pid_tgid = bpf_get_current_pid_tgid();
    let agent = unsafe { core::ptr::read_volatile(&s.cur.agent) };
    let len = unsafe { core::ptr::read_volatile(&s.rec.target_len) };
    // A target longer than the record is cut, and says so (never silently dropped).
    let (len, cut) = if len > EVENT_TARGET_BYTES {
        (EVENT_TARGET_BYTES, EVENT_FLAG_TARGET_CUT)
    } else {
        (len, 0)
    };
    let h = &mut s.event.header;
    h.ts_boot_ns = unsafe { bpf_ktime_get_boot_ns() };
    h.session = s.cur.state.session;
    h.chain = s.cur.state.chain;
    h.depth = s.cur.state.depth;
    h.rule_agent = unsafe { core::ptr::read_volatile(&s.cur.rule_agent) };
    h.policy_version = s.cur.policy_version;
    h.pid = pid_tgid as u32;
    h.tgid = (pid_tgid >> 32) as u32;
    h.ppid = ppid();
    h.uid = bpf_get_current_uid_gid() as u32;
    h.cpu = unsafe { bpf_get_smp_processor_id() };
    h.op = op;
    h.verdict = verdict;
    h.rule = rule;
    h.flags = s.rec.flags | cut;
    h.access = access;
    h.open_flags = s.rec.open_flags;
    h.net_family = s.rec.net.family;
    h.net_port = s.rec.net.port;
    h.net_proto = s.rec.net.proto;
    h.net_addr = s.rec.net.addr;
    h.comm = bpf_get_current_comm().unwrap_or([0; 16]);
    h.target_len = len as u32;
    h._pad = 0;
    // black_box + mask: LLVM knows `len <= EVENT_TARGET_BYTES` and would drop the check below,
    // and older verifiers (6.1) then see an unbounded size at some call sites.
    let size = core::hint::black_box(EVENT_HEADER_BYTES + len) & 0x1fff;
    if size > size_of::<Event>() {
        // Cannot happen (the target was cut to EVENT_TARGET_BYTES above), but never silently:
        // counted as a failure and as a loss.
        crate::maps::count_fail(FAIL_EVENT_SIZE);
        lost(agent);
        return;
    }
    let bytes = unsafe { core::slice::from_raw_parts(&s.event as *const Event as *const u8, size) };
    if EVENTS.output::<[u8]>(bytes, 0).is_err() {
        lost(agent);
    } else {
        count(STAT_EVENTS);
    }
}

/// One more event of `agent` that could not be sent (`LOSSES`, logged by user space).
#[inline(always)]
fn lost(agent: u32) {
    let agent = if agent < MAX_AGENTS { agent } else { 0 };
    if let Some(p) = LOSSES.get_ptr_mut(agent) {
        unsafe { *p += 1 };
    }
}

/// The policy says which decisions are logged: every deny and would-deny, every exec, connect
/// and join, and file allows only for agents that ask for them.
#[inline(always)]
pub fn should_log(agent_flags: u32, op: u32, verdict: u32) -> bool {
    if verdict != VERDICT_ALLOW {
        return true;
    }
    match op {
        OP_EXEC | OP_CONNECT | OP_JOIN => true,
        OP_SENDMSG => false,
        _ => agent_flags & AGENT_LOG_FILE_ALLOW != 0,
    }
}
