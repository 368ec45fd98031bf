//! Turning a policy answer into a verdict, an event and a return value, the same way for every
//! hook: audit-mode agents are never blocked, unresolvable inputs fail closed.

use enforcer_common::*;

use crate::{
    emit::{emit, should_log, Record},
    identity::Current,
    maps::count,
    net_match::NetTarget,
    path_match,
    scratch::Scratch,
};

pub const EPERM: i32 = 1;

/// Finish a decision: pick the verdict from the agent's mode, log it, return the hook's value.
#[inline(always)]
pub fn finish(s: &mut Scratch, cur: &Current, allow: bool, mut r: Record) -> i32 {
    let deny = !allow || cur.doomed;
    r.verdict = if !deny {
        VERDICT_ALLOW
    } else if cur.cfg.flags & AGENT_AUDIT != 0 && !cur.doomed {
        VERDICT_AUDIT_DENY
    } else {
        VERDICT_DENY
    };
    r.flags |= cur.flags;
    if deny {
        count(STAT_DENIED);
    }
    if cur.joined != 0 {
        let join = Record {
            op: OP_JOIN,
            verdict: VERDICT_ALLOW,
            rule: 0,
            flags: cur.flags,
            access: cur.joined,
            open_flags: 0,
            target_len: r.target_len,
            net: NetTarget::default(),
        };
        emit(s, cur, &join);
    }
    if should_log(cur, r.op, r.verdict) {
        emit(s, cur, &r);
    }
    if r.verdict == VERDICT_DENY { -EPERM } else { 0 }
}

/// Decide an operation on the path `bpf_d_path` wrote into `s.event.target` (`d_path_ret` is its
/// return value: length incl. NUL, or a negative error).
#[inline(always)]
pub fn path_op(
    s: &mut Scratch,
    cur: &Current,
    op: u32,
    access: u32,
    open_flags: u32,
    extra_flags: u32,
    d_path_ret: i64,
) -> i32 {
    path_decide(s, cur, op, access, open_flags, extra_flags, d_path_ret, NetTarget::default())
}

/// A unix socket path already in `s.event.target` (`len` bytes incl. NUL).
#[inline(always)]
pub fn path_op_net(s: &mut Scratch, cur: &Current, op: u32, len: usize, net: NetTarget) -> i32 {
    path_decide(s, cur, op, ACCESS_CONNECT, 0, 0, len as i64, net)
}

#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn path_decide(
    s: &mut Scratch,
    cur: &Current,
    op: u32,
    access: u32,
    open_flags: u32,
    extra_flags: u32,
    d_path_ret: i64,
    net: NetTarget,
) -> i32 {
    let mut r = Record {
        op,
        verdict: 0,
        rule: RULE_DEFAULT_DENY,
        flags: extra_flags,
        access,
        open_flags,
        target_len: 0,
        net,
    };
    if d_path_ret <= 0 || d_path_ret as usize > PATH_BUF_BYTES {
        // Fail closed: a path we cannot see cannot be allowed.
        r.flags |= EVENT_FLAG_PATH_UNRESOLVED;
        count(STAT_PATH_UNRESOLVED);
        return finish(s, cur, false, r);
    }
    let len = d_path_ret as usize;
    if len > PATH_KEY_BYTES {
        r.flags |= EVENT_FLAG_PATH_TRUNCATED;
    }
    let acc = path_match::evaluate(s, ruleset(cur.slot, cur.agent), &cur.cfg, len);
    let (allow, rule) = acc.decide(access);
    r.rule = rule;
    r.target_len = len - 1;
    finish(s, cur, allow, r)
}
